"""Cost ledger: tokens and dollars per stage and role from a real run against a fake API server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakeserver import FakeOpenAI, Reply
from hydra import compose, initialize_config_dir

from xlexp.__main__ import run
from xlexp.config import register
from xlexp.store import Store

ROOT = Path(__file__).resolve().parents[1]
register()

# role -> (served model name, USD per 1M prompt tokens, per 1M completion tokens)
CARDS = {
    "model": ("fake-sys", 1.0, 2.0),
    "reference": ("fake-ref", 0.15, 0.6),
    "judge": ("fake-judge", 2.5, 10.0),
}


def answer(body: dict) -> str | Reply:
    if body["model"] == "fake-judge":
        return Reply(text="B", logprobs=[{"B": -0.3, "A": -1.4}])
    if body["model"] == "fake-ref":
        return "Eine etwas längere Antwort der Referenz auf Deutsch."
    return "Eine Antwort auf Deutsch."


def compose_cfg(base_url: str, store: Path):
    # The fake judge answers a pairwise label with logprobs: the both-orders protocol.
    args = [
        "stages=[evaluate,report]",
        f"store_dir={store}",
        "eval.limit=3",
        "eval.bootstrap=20",
        "eval.judge_protocol=both_orders",
    ]
    for role, (name, price_in, price_out) in CARDS.items():
        args += [
            f"{role}.backend=openai",
            f"{role}.model={name}",
            f"{role}.base_url={base_url}",
            f"{role}.gguf_file=null",
            f"{role}.max_retries=0",
            f"{role}.price_in_per_mtok={price_in}",
            f"{role}.price_out_per_mtok={price_out}",
        ]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=args)


def expected(requests: list[dict], model: str, price_in: float, price_out: float) -> dict:
    """What the fake server charged: whitespace tokens of the messages in, of the answer out."""
    mine = [r for r in requests if r["model"] == model]
    tokens_in = sum(len(m["content"].split()) for r in mine for m in r["messages"])
    tokens_out = sum(1 if model == "fake-judge" else len(answer(r).split()) for r in mine)
    return {"calls": len(mine), "prompt_tokens": tokens_in, "completion_tokens": tokens_out,
            "usd": (tokens_in * price_in + tokens_out * price_out) / 1e6}


@pytest.mark.slow
def test_dollars_per_stage_are_exact_and_a_rerun_costs_nothing(tmp_path: Path) -> None:
    with FakeOpenAI(answer) as srv:
        cfg = compose_cfg(srv.base_url, tmp_path / "store")
        summary = run(cfg, tmp_path / "run1")
        cost = summary["cost"]
        # metrics and agreement are artifacts too, computed from the verdicts without a model
        # call (no extra judge here): $0.
        assert set(cost["stages"]) == {"respond", "reference", "judge", "metrics", "agreement"}
        for free in ("metrics", "agreement"):
            assert cost["stages"][free]["total"]["calls"] == 0
            assert cost["stages"][free]["total"]["usd"] == 0
        for stage, role in (("respond", "model"), ("reference", "reference"), ("judge", "judge")):
            want = expected(srv.requests, *CARDS[role])
            got = cost["stages"][stage]["roles"][role]
            assert want["calls"] > 0
            assert {k: got[k] for k in ("calls", "prompt_tokens", "completion_tokens")} == {
                k: want[k] for k in ("calls", "prompt_tokens", "completion_tokens")
            }
            assert got["usd"] == pytest.approx(want["usd"], abs=1e-9)
            assert cost["stages"][stage]["total"]["usd"] == pytest.approx(want["usd"], abs=1e-9)
            assert set(cost["stages"][stage]["roles"]) == {
                role
            }  # no stage is charged for another's calls
            # The artifact that stage built carries the same cost in its meta.
            (art,) = cost["stages"][stage]["artifacts"]
            meta = (
                Store(tmp_path / "store")
                .get("judge" if stage == "judge" else "respond", art["key"])
                .meta
            )
            assert meta["cost"]["total"]["usd"] == pytest.approx(want["usd"], abs=1e-9)
        grand = sum(expected(srv.requests, *c)["usd"] for c in CARDS.values())
        assert cost["total"]["usd"] == pytest.approx(grand, abs=1e-9) and grand > 0
        assert cost["total"]["calls"] == srv.calls
        assert json.loads((tmp_path / "run1" / "results.json").read_text())["cost"] == json.loads(
            json.dumps(cost)
        )
        markdown = (tmp_path / "run1" / "results.md").read_text()
        assert (
            f"| judge | judge | {cost['stages']['judge']['roles']['judge']['calls']} | 0 | 0 |"
            in markdown
        )
        assert f"| **total** |  | {srv.calls} |" in markdown

        # Same config again: every artifact is reused, nothing reaches the server, $0.
        calls = srv.calls
        again = run(cfg, tmp_path / "run2")["cost"]
        assert srv.calls == calls
        assert again["total"]["usd"] == 0 and again["total"]["calls"] == 0
        assert all(not a["built"] for s in again["stages"].values() for a in s["artifacts"])


@pytest.mark.slow
def test_cache_hits_cost_nothing_and_are_counted(tmp_path: Path) -> None:
    with FakeOpenAI(answer) as srv:
        run(compose_cfg(srv.base_url, tmp_path / "store"), tmp_path / "run1")
        first = len(srv.requests)
        # One more prompt per language: every artifact is rebuilt (new keys), but the requests
        # of the first 3 prompts come from the response cache.
        cfg = compose_cfg(srv.base_url, tmp_path / "store")
        cfg.eval.limit = 4
        cost = run(cfg, tmp_path / "run2")["cost"]
        fresh = srv.requests[first:]
        n_langs = len(cfg.langs.codes)
        for stage, role in (("respond", "model"), ("reference", "reference"), ("judge", "judge")):
            got = cost["stages"][stage]["roles"][role]
            want = expected(fresh, *CARDS[role])
            per_prompt = 2 if role == "judge" else 1  # the judge sees both orders
            assert got["calls"] == want["calls"] == n_langs * per_prompt
            assert got["cache_hits"] == 3 * n_langs * per_prompt
            assert got["usd"] == pytest.approx(want["usd"], abs=1e-9)
        assert cost["total"]["usd"] == pytest.approx(
            sum(expected(fresh, *c)["usd"] for c in CARDS.values()), abs=1e-9
        )


def test_nested_build_is_charged_to_the_inner_stage_only(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from xlexp.config import LLMConfig
    from xlexp.ledger import LedgerStore
    from xlexp.roles import Models

    with FakeOpenAI(answer) as srv:
        store = LedgerStore(tmp_path / "store")
        models = Models(store)
        store.ledger.models = models
        card = OmegaConf.structured(
            LLMConfig(
                name="sys",
                backend="openai",
                model="fake-sys",
                base_url=srv.base_url,
                price_in_per_mtok=1.0,
                price_out_per_mtok=2.0,
            )
        )
        model = models.role("model", card)

        def inner(work: Path, parts) -> dict:
            model.chat(
                [
                    [{"role": "user", "content": "two words"}],
                    [{"role": "user", "content": "three more words"}],
                ]
            )
            return {}

        def outer(work: Path, parts) -> dict:
            model.chat([[{"role": "user", "content": "one"}]])
            store.build("inner", "k2", inner)
            return {}

        store.build("outer", "k1", outer)
        cost = store.ledger.summary()
        assert cost["stages"]["inner"]["roles"]["model"]["calls"] == 2
        assert cost["stages"]["inner"]["roles"]["model"]["prompt_tokens"] == 5
        assert cost["stages"]["outer"]["roles"]["model"]["calls"] == 1
        assert cost["stages"]["outer"]["roles"]["model"]["prompt_tokens"] == 1
        assert cost["total"]["calls"] == 3 == srv.calls
        # Entries in finishing order (inner, then outer): the stage log line sums those since a
        # mark.
        assert (
            store.ledger.total_since(0)["calls"] == 3 and store.ledger.total_since(1)["calls"] == 1
        )
        assert store.ledger.total_since(2) == dict.fromkeys(
            ("calls", "cache_hits", "errors", "prompt_tokens", "completion_tokens"), 0
        ) | {"usd": 0.0}
        assert cost["total"]["usd"] == pytest.approx((6 * 1.0 + 3 * 4 * 2.0) / 1e6)
        models.close()

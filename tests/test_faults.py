"""A failed call is not an answer: against a fault server on 127.0.0.1 (refused, 503 throughout,
a burst of 503s, wrong key, unknown model, `content: null`) no artifact is finished with a
backend failure, the error names role, endpoint and count, a breaker stops a dead endpoint, and
a rerun against a healthy server asks only for what failed and yields byte-identical artifacts
to a run that never saw the fault. Content rejects (HTTP 400) stay data.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakeserver import FakeOpenAI, Reply, dead_url, failing_first
from omegaconf import OmegaConf
from test_chain import Teacher, compose_cfg, overrides

from xlexp.failures import BackendFailure
from xlexp.generate.stage import run_refine, run_reverse, run_seed
from xlexp.roles import Models
from xlexp.store import Store

N_SEEDS = 8


def artifact_bytes(root: Path) -> dict[str, bytes]:
    """Every file of every finished artifact (DONE aside: it holds timings), by path."""
    out = {}
    for done in sorted(root.glob("*/*/DONE")):
        for f in sorted(done.parent.rglob("*")):
            if f.is_file() and f.name != "DONE":
                out[str(f.relative_to(root))] = f.read_bytes()
    return out


def gen_cfg(url: str, store: Path, **teacher: str):
    cfg = compose_cfg(overrides(url, store / "unused-tiny", store, **{"seed_data.n": str(N_SEEDS)}))
    cfg.teacher.max_retries = 1
    for k, v in teacher.items():
        OmegaConf.update(cfg, f"teacher.{k}", v)
    return cfg


def generate(cfg) -> dict:
    store = Store(cfg.store_dir)
    models = Models(store)
    try:
        seeds = run_seed(cfg, store)
        pairs = run_reverse(cfg, store, models, seeds)
        refined = run_refine(cfg, store, models, pairs)
        return {"seed": seeds, "reverse": pairs, "refine": refined, "models": models}
    finally:
        models.close()


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> dict[str, bytes]:
    """The artifacts of a run that never saw a fault."""
    root = tmp_path_factory.mktemp("clean")
    with FakeOpenAI(Teacher()) as srv:
        generate(gen_cfg(srv.base_url, root / "store"))
    return artifact_bytes(root / "store")


def finished(store: Path, stage: str) -> list[Path]:
    return [d.parent for d in (store / stage).glob("*/DONE")]


@pytest.mark.parametrize(
    "fault",
    ["refused", "503", "wrong_key", "unknown_model", "content_null"],
)
def test_a_fault_finishes_nothing_and_a_healthy_rerun_matches_a_clean_run(tmp_path, clean, fault):
    store = tmp_path / "store"
    with FakeOpenAI(Teacher(), api_key="right-key", served=["fake-teacher"]) as srv:
        healthy = {"api_key_env": "XLEXP_TEST_KEY", "breaker_after": 3}
        faulty: dict[str, str] = dict(healthy)
        if fault == "refused":
            faulty["base_url"] = dead_url()
        elif fault == "503":
            srv.outage = Reply(503, text="service unavailable")
            # A window smaller than the stage: the calls in flight when the endpoint died get
            # their retries, the breaker spares the rest (a window as large as the stage has
            # every call in flight at once, before any has failed).
            faulty["max_concurrency"] = "2"
        elif fault == "wrong_key":
            faulty["api_key_env"] = "XLEXP_TEST_WRONG_KEY"
        elif fault == "unknown_model":
            faulty["model"] = "no-such-model"
        elif fault == "content_null":
            srv.outage = Reply(text=None)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("XLEXP_TEST_KEY", "right-key")
            mp.setenv("XLEXP_TEST_WRONG_KEY", "wrong-key")
            with pytest.raises(BackendFailure) as failure:
                generate(gen_cfg(srv.base_url, store, **faulty))
            line = failure.value.lines()[0]
            assert srv.base_url.split("/v1")[0] in line or fault == "refused", line
            assert line.startswith("teacher (") and "failed calls" in line, line
            want = {"refused": "APIConnectionError", "503": "503", "wrong_key": "401",
                    "unknown_model": "does not exist", "content_null": "content is null"}[fault]
            assert want in str(failure.value), str(failure.value)
            # The seed artifact needs no model; nothing after it is finished with a failure.
            assert (
                finished(store, "seed")
                and not finished(store, "reverse")
                and not finished(store, "refine")
            )
            if fault == "503":
                # The breaker: a dead endpoint does not get every item's retries.
                assert srv.calls < N_SEEDS * 2, srv.calls
                assert "breaker open" in str(failure.value)
            srv.outage = None
            calls = srv.calls
            arts = generate(gen_cfg(srv.base_url, store, **healthy))
        assert arts["refine"].meta["counts"]["out"] == N_SEEDS
        assert srv.calls - calls == 2 * N_SEEDS  # reverse and refine, every item once
    assert artifact_bytes(store) == clean


def test_a_burst_of_503s_costs_a_rerun_only_the_failed_calls(tmp_path, clean):
    store = tmp_path / "store"
    burst = 3  # the first 3 calls fail (max_retries=1: the first item fails twice, the next once)
    with FakeOpenAI(failing_first(burst, Reply(503, text="overloaded"), Teacher())) as srv:
        cfg = gen_cfg(srv.base_url, store)
        cfg.generate.batch_size = 2
        cfg.teacher.max_concurrency = 1
        with pytest.raises(BackendFailure, match="503 overloaded") as failure:
            generate(cfg)
        failed = sum(f.errors.total() for f in failure.value.failures)
        assert failed >= 1 and not finished(store, "reverse")
        # Finished batches are kept as parts; answered calls of the failed batch are cached.
        parts = list((store / "reverse").glob(".partial-*/parts/*.jsonl"))
        assert len(parts) == N_SEEDS // 2 - 1, parts
        calls = srv.calls
        arts = generate(gen_cfg(srv.base_url, store))
        assert srv.calls - calls == failed + N_SEEDS  # the failed reverse calls, then refine
    assert arts["reverse"].meta["counts"]["out"] == N_SEEDS
    assert artifact_bytes(store) == clean


def test_content_rejects_are_data_and_finish_the_artifact(tmp_path):
    """HTTP 400 (this prompt cannot be answered) is a counted reject, not a failure."""
    def teacher(body: dict) -> str | Reply:
        if "Write the question" in body["messages"][-1]["content"]:
            return Reply(400, text="context length exceeded")
        return Teacher()(body)

    with FakeOpenAI(teacher) as srv:
        arts = generate(gen_cfg(srv.base_url, tmp_path / "store"))
    counts = arts["reverse"].meta["counts"]
    assert counts["out"] == 0 and counts["rejects"] == N_SEEDS


def test_content_null_is_never_cached(tmp_path):
    from xlexp.llm import load

    with FakeOpenAI(failing_first(1, Reply(text=None))) as srv:
        card = gen_cfg(srv.base_url, tmp_path).teacher
        model = load(card, tmp_path)
        with pytest.raises(BackendFailure, match="content is null"):
            model.chat([[{"role": "user", "content": "hi"}]])
        assert len(model.cache) == 0
        (answer,) = model.chat([[{"role": "user", "content": "hi"}]])
        assert answer.ok and answer.text == "hi" and not answer.cached and srv.calls == 2


def test_an_outage_during_evaluation_leaves_no_judge_artifact_and_a_rerun_matches(tmp_path):
    from test_ledger import answer
    from test_ledger import compose_cfg as eval_cfg

    from xlexp.__main__ import run

    with FakeOpenAI(answer) as srv:
        clean_summary = run(eval_cfg(srv.base_url, tmp_path / "clean"), tmp_path / "run-clean")

    def judge_down(body: dict) -> str | Reply:
        return (
            Reply(503, text="judge overloaded") if body["model"] == "fake-judge" else answer(body)
        )

    with FakeOpenAI(judge_down) as srv:
        # Both languages' judge calls are in one window: 3 prompts x 2 orders x 2 languages.
        with pytest.raises(
            BackendFailure,
            match=(
                r"judge \(http://127.0.0.1:\d+/v1 model fake-judge\): 12 failed calls: "
                r"12x .*503 judge overloaded"
            ),
        ):
            run(eval_cfg(srv.base_url, tmp_path / "faulty"), tmp_path / "run-faulty")
        assert not finished(tmp_path / "faulty", "judge")
        assert not (tmp_path / "run-faulty" / "results.md").exists()
        srv.handler = answer
        summary = run(eval_cfg(srv.base_url, tmp_path / "faulty"), tmp_path / "run-healed")
    assert summary["metrics"] == clean_summary["metrics"]
    assert artifact_bytes(tmp_path / "faulty") == artifact_bytes(tmp_path / "clean")
    assert (
        json.loads((tmp_path / "run-healed" / "results.json").read_text())["metrics"]
        == clean_summary["metrics"]
    )

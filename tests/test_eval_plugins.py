"""Judge protocols and benchmarks are registry entries: one declared in this file alone is
validated, planned and used by the evaluate stage; an unknown one is refused naming its key.
The judge key of the built-in protocols is pinned."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir

from xlexp import plan
from xlexp.config import ConfigError, register, validate
from xlexp.evaluate import judge
from xlexp.evaluate.benchmarks import BENCHMARKS, Benchmark
from xlexp.evaluate.config import eval_codes
from xlexp.evaluate.declaration import STAGE
from xlexp.evaluate.prompt_sets import eval_rows, run_prompt_set
from xlexp.llm import BACKENDS, Backend, Completion
from xlexp.roles import Models
from xlexp.stage import Measured
from xlexp.store import Store, digest, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
register()


def make(*overrides: str) -> Any:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=["stages=[evaluate]", *overrides])


# ---------------------------------------------------------------- a judge protocol


class Thrice(judge.JudgeProtocol):
    """Asks three times per prompt ("sr", "rs", "sr"); the answer "1" means the system wins."""

    name = "thrice"
    calls_per_prompt = 3

    def prompt_text(self) -> str:
        return "Which is better? Answer 1 or 0."

    def sampling(self) -> dict:
        return {"temperature": 0.0, "max_tokens": 1}

    def requests(
        self, rows: Sequence[dict], systems: Sequence[str], references: Sequence[str]
    ) -> list[list[dict]]:
        return [[{"order": order, "conversation": [{"role": "user", "content": f"{s} | {r}"}]}
                 for order in ("sr", "rs", "sr")] for s, r in zip(systems, references, strict=True)]

    def verdict(self, request: dict, text: str, logprobs: Any) -> tuple[dict | None, str | None]:
        if text not in ("0", "1"):
            return None, "not 0 or 1"
        return {"preference": float(text), "source": "text"}, None


@pytest.fixture
def thrice():
    judge.JUDGE_PROTOCOLS.register("thrice", Thrice())
    yield
    judge.JUDGE_PROTOCOLS.unregister("thrice")


def _judge_calls(cfg: Any, tmp_path: Path) -> tuple[float, bool]:
    """The cost plan's judge calls for one job (the store is not probed)."""
    job = plan.plan_job(cfg, [], Measured(tmp_path), probe_store=False)
    (row,) = [r for r in job.counts if (r.artifact, r.role) == ("judge", "judge")]
    return row.calls, row.exact


def test_a_registered_protocol_is_validated_planned_and_used(thrice, tmp_path: Path) -> None:
    cfg = make("eval.judge_protocol=thrice")
    validate(cfg, cuda=False)
    prompts = len(eval_codes(cfg)) * cfg.eval.limit  # the demo prompts are local: exact
    assert _judge_calls(cfg, tmp_path) == (3 * prompts, True)
    assert _judge_calls(make("eval.judge_protocol=both_orders"), tmp_path) == (2 * prompts, True)
    assert _judge_calls(make("eval.judge_protocol=alpaca_eval"), tmp_path) == (prompts, True)

    rows = [{"id": i, "lang": "deu", "instruction": f"Q{i}"} for i in (1, 2, 3)]
    entries = judge.plan("thrice", rows, ["a", "same", None], ["b", "same", "c"])
    assert len(judge.conversations(entries)) == 3  # one prompt judged, three calls
    out = judge.combine("thrice", entries, [Completion(text=t) for t in ("1", "1", "0")])
    got = [(r["status"], r["preference"]) for r in out]
    assert got == [("judged", 2 / 3), ("identical", 0.5), ("failed", None)]
    assert judge.key_info("thrice")["prompt"] == digest(Thrice().prompt_text())


def test_a_protocol_must_make_the_calls_it_declares(thrice) -> None:
    class Liar(Thrice):
        calls_per_prompt = 2

    judge.JUDGE_PROTOCOLS.register("liar", Liar())
    try:
        with pytest.raises(ValueError, match="made 3 requests for a prompt, declares 2"):
            judge.plan("liar", [{"id": 1, "lang": "deu", "instruction": "Q"}], ["a"], ["b"])
    finally:
        judge.JUDGE_PROTOCOLS.unregister("liar")


def test_an_unknown_protocol_is_refused_naming_its_key(thrice) -> None:
    for check in (lambda: validate(make("eval.judge_protocol=once"), cuda=False),
                  lambda: judge.plan("once", [], [], [])):
        with pytest.raises(ConfigError) as err:
            check()
        assert err.value.key == "eval.judge_protocol"
        assert "unknown judge protocol 'once'" in str(err.value)
        assert "(known: alpaca_eval, both_orders, thrice)" in str(err.value)


def test_the_judge_key_of_the_built_in_protocols_is_pinned(tmp_path: Path) -> None:
    """What the judge artifact's key is made of, beside the judge card: a change here recomputes
    every stored judgement, so it must be deliberate."""
    # alpaca_eval's parser 3: the listed top_logprobs only, a multi-token answer has no verdict.
    pinned = {
        "alpaca_eval": ("b0cc72eae75e981b", {"max_tokens": 1, "temperature": 1.0, "logprobs": 5},
                        3),
        "both_orders": ("0aa83c3c17a28450", {"temperature": 0.0, "max_tokens": 4, "logprobs": 20},
                        2),
    }
    for name, (prompt, sampling, parser) in pinned.items():
        want = {"protocol": name, "prompt": prompt, "sampling": sampling, "parser": parser}
        assert judge.key_info(name) == want
    assert [judge.judge_protocol(n).calls_per_prompt for n in pinned] == [1, 2]
    # The key as run_judge makes it, for a stand-in card and input keys (store version 3).
    store = Store(tmp_path, read_only=True)
    keys = {n: store.key("judge", {"judge": "card", **judge.key_info(n)}, ["s", "r"], version=3)
            for n in pinned}
    assert keys == {"alpaca_eval": "0928fcc6cc6f9f26", "both_orders": "d28313bb9619cf0a"}


# ---------------------------------------------------------------- a benchmark


class Pocket(Benchmark):
    """Two prompts per language, stored as a prompt set."""

    name = "pocket"
    stored = True

    def prompts_per_lang(self, cfg: Any) -> tuple[int, bool]:
        return 2, True

    def build(self, cfg: Any, store: Any, models: Any) -> Any:
        codes = self.codes(cfg)
        key = store.key("prompt_set", {"kind": "pocket", "langs": codes})

        def produce(work: Path, parts: Any) -> dict:
            for code in codes:
                rows = [{"id": i, "lang": code, "instruction": f"Pocket question {i} ({code})?",
                         "dataset": "pocket"} for i in (1, 2)]
                write_jsonl(work / f"{code}.jsonl", rows)
            return {"langs": {code: 2 for code in codes}}

        return store.build("prompt_set", key, produce)[0]


class EchoBackend(Backend):
    """Answers each chat with its last message, reversed."""

    def __init__(self, card: Any):
        self.card = card

    def generate(self, conversations, sampling, sample_index=0, adapter=None):
        return [Completion(text=c[-1]["content"][::-1], prompt_tokens=1, completion_tokens=1)
                for c in conversations]


@pytest.fixture
def pocket():
    BENCHMARKS.register("pocket", Pocket())
    BACKENDS.register("echo", EchoBackend)
    yield
    BENCHMARKS.unregister("pocket")
    BACKENDS.unregister("echo")


def test_a_registered_benchmark_builds_the_prompt_set_that_is_answered(pocket, tmp_path) -> None:
    from xlexp.evaluate.stage import run_respond

    cfg = make("eval.benchmark=pocket", "eval.langs=[deu,hin]", "reference.backend=echo",
               "reference.model=echo")
    validate(cfg, cuda=False)
    assert STAGE.spec("prompt_set").built_by(cfg)  # the run loop builds it first
    assert _judge_calls(cfg, tmp_path) == (1 * 2 * 2, True)  # alpaca_eval: one call per prompt

    store = Store(tmp_path / "store")
    prompt_set = run_prompt_set(cfg, store, None)  # no model: the set is built alone
    assert prompt_set is not None and prompt_set.meta["counts"]["langs"] == {"deu": 2, "hin": 2}
    rows = eval_rows(cfg, prompt_set)
    assert list(rows) == ["deu", "hin"]
    assert rows["hin"][1]["instruction"] == "Pocket question 2 (hin)?"

    # The reference answers the set's prompts (echoed back), its key an input of theirs.
    answers = run_respond(cfg, store, Models(store), "reference", cfg.reference, None, prompt_set)
    assert answers.meta["made_of"]["inputs"] == [prompt_set.key]
    hin = json.loads(answers.file("hin.json").read_text())
    assert [r["output"] for r in hin] == ["?)nih( 1 noitseuq tekcoP", "?)nih( 2 noitseuq tekcoP"]


def test_an_unknown_benchmark_is_refused_naming_its_key() -> None:
    with pytest.raises(ConfigError) as err:
        validate(make("eval.benchmark=pocket"), cuda=False)
    assert err.value.key == "eval.benchmark" and "m_alpacaeval" in str(err.value)

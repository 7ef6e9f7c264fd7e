"""A teacher (and LLM QE judge) that answers some items with garbage or an HTTP error: those items
become rejects with reasons, counted in the stage metadata and in the generation stats; the
stages complete.

Teacher and QE are the fake OpenAI-compatible server; translators the tiny random Llama.
"""

from __future__ import annotations

import re

import pytest
from fakeserver import FakeOpenAI, Reply
from test_chain import Teacher, compose_cfg, overrides

from xlexp.__main__ import run
from xlexp.store import Store, digest

pytestmark = pytest.mark.slow  # whole runs: the slow lane


def bad(text: str, modulo: int) -> bool:
    """A stable, content-based choice of the items that get a bad answer."""
    return int(digest(text), 16) % modulo == 0


class SometimesGarbage(Teacher):
    def __call__(self, body: dict) -> str | Reply:
        text = body["messages"][-1]["content"]
        if "Write the question" in text:
            passage = text.split("passage of text:\n\n", 1)[1].rsplit("\n\nWrite the question", 1)[
                0
            ]
            if bad(passage, 4):
                return "   "  # empty instruction
            if bad(passage, 5):
                return Reply(
                    status=400, text="context length exceeded"
                )  # not retried: a backend error
        elif "Improve the question" in text:
            question = re.search(r"\nQuestion: (.*)\nResponse: ", text).group(1)
            if bad(question, 3):
                return "I'm sorry, but I can't help with rewriting this."
        elif "Rate the translation" in text and bad(text, 3):
            return "This translation is quite good overall."  # no 1-5 rating, no logprobs
        return super().__call__(body)


def test_garbage_answers_become_counted_rejects(tmp_path, tiny_model_dir):
    teacher = SometimesGarbage()
    with FakeOpenAI(teacher) as srv:
        cfg = compose_cfg(
            overrides(srv.base_url, tiny_model_dir, tmp_path / "store", stages="[generate]")
        )
        summary = run(cfg, tmp_path / "run")

    gen, stats = summary["stages"]["generate"], summary["generation_stats"]["stages"]
    store = Store(tmp_path / "store")
    seeds = store.get("seed", gen["seed"]["key"]).rows()
    empty = [p for p in seeds if bad(p["text"], 4)]
    errors = [p for p in seeds if not bad(p["text"], 4) and bad(p["text"], 5)]
    assert empty and errors, "the demo seeds must hit both kinds of bad answer"

    reverse = store.get("reverse", gen["reverse"]["key"])
    rejects = reverse.rows("rejects.jsonl")
    assert {r["id"] for r in rejects} == {p["id"] for p in empty + errors}, rejects
    assert reverse.meta["counts"]["reject_reasons"]["empty instruction"] == len(empty)
    assert sum(
        v
        for k, v in reverse.meta["counts"]["reject_reasons"].items()
        if k.startswith("backend error")
    ) == len(errors)
    assert gen["reverse"]["out"] == len(seeds) - len(empty) - len(errors)
    assert stats["reverse"]["rejects"] == len(empty) + len(errors)

    pairs = reverse.rows()
    garbled = [p for p in pairs if bad(p["question"], 3)]
    refine = store.get("refine", gen["refine"]["key"])
    assert {r["id"] for r in refine.rows("rejects.jsonl")} == {p["id"] for p in garbled}
    assert all(r["raw"].startswith("I'm sorry") for r in refine.rows("rejects.jsonl"))
    assert stats["refine"]["reject_reasons"] == (
        {"no 'Question:' / 'Response:' fields": len(garbled)} if garbled else {}
    )
    assert gen["refine"]["out"] == len(pairs) - len(garbled) > 0

    # QE answers without a rating are failed scores, not crashes; select still writes a dataset.
    assert (
        stats["qe"]["reject_reasons"] == {"no 1-5 rating in QE answer": gen["qe"]["failed"]}
        and gen["qe"]["failed"] > 0
    )
    assert gen["select"]["rows"] > 0
    dataset = store.get("select", gen["select"]["key"]).rows("dataset.jsonl")
    assert {r["seed_id"] for r in dataset} <= {p["id"] for p in refine.rows()}

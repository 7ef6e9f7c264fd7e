"""Pairing as an invariant: where the evaluation combines the system's outputs, the reference's
outputs and the judge's verdicts, rows are matched by prompt id, never by file order. Shuffling
one side gives the same numbers (metrics) or is refused before any call (the judge, which sends
system and reference to one prompt and must have both for the same instruction)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from test_config import make

from xlexp.evaluate import pairing
from xlexp.evaluate.stage import run_judge, run_metrics
from xlexp.store import Artifact, Store, write_json, write_jsonl

CODE = "deu"
N = 24
GERMAN = "Das ist ein kurzer Satz auf Deutsch. "


def _cfg(store: Path) -> Any:
    return make(
        f"store_dir={store}", f"langs.codes=[{CODE}]", "eval.bootstrap=50", "eval.lc_bootstrap=5"
    )


def _respond(store: Store, name: str, rows: list[dict]) -> Artifact:
    def produce(work: Path, parts: Any) -> dict:
        write_json(work / f"{CODE}.json", rows)
        return {"rows": len(rows)}

    return store.build("respond", store.key("respond", {"name": name, "rows": rows}), produce)[0]


def _verdicts(store: Store, rows: list[dict]) -> Artifact:
    def produce(work: Path, parts: Any) -> dict:
        write_jsonl(work / f"{CODE}.jsonl", rows)
        return {"rows": len(rows)}

    return store.build("judge", store.key("judge", {"rows": rows}), produce)[0]


def _sides() -> tuple[list[dict], list[dict], list[dict]]:
    rng = random.Random(0)
    system, reference, verdicts = [], [], []
    for i in range(N):
        pid = f"p{i:02d}"
        # the system's answer length tracks its preference, the reference's does not: pairing
        # a reference answer with another prompt changes the length-controlled win rate
        pref = (i % 3) / 2  # 0: the reference wins, 1: the system wins
        system.append(
            {
                "id": pid,
                "instruction": f"q{i}",
                "output": GERMAN * (1 + 3 * (i % 3)),
                "generator": "sys",
                "dataset": "demo",
            }
        )
        reference.append(
            {
                "id": pid,
                "instruction": f"q{i}",
                "output": GERMAN * rng.randint(1, 8),
                "generator": "ref",
                "dataset": "demo",
            }
        )
        verdicts.append({"id": pid, "lang": CODE, "status": "judged", "preference": pref})
    return system, reference, verdicts


def _metrics(tmp_path: Path, name: str, system, reference, verdicts) -> dict:
    store = Store(tmp_path / name)
    cfg = _cfg(tmp_path / name)
    art = run_metrics(
        cfg,
        store,
        _verdicts(store, verdicts),
        _respond(store, "sys", system),
        _respond(store, "ref", reference),
    )
    return json.loads(art.file("metrics.json").read_text())


@pytest.mark.parametrize("side", ["reference", "verdicts", "system"])
def test_metrics_do_not_depend_on_the_order_of_any_side(tmp_path, side):
    system, reference, verdicts = _sides()
    want = _metrics(tmp_path, "ordered", system, reference, verdicts)
    shuffled = {"system": system, "reference": reference, "verdicts": verdicts}
    rows = list(shuffled[side])
    random.Random(1).shuffle(rows)
    shuffled[side] = rows
    got = _metrics(tmp_path, "shuffled", **shuffled)
    if side == "system":
        # The system's file order is the order the bootstrap resamples prompts in: a seeded
        # resample of another order draws other prompts, so CIs and bootstrap s.e. move; the
        # numbers computed on pairs do not (the LC fit's to rounding).
        resampled = {"ci_low", "ci_high", "lc_se_boot"}
        for lang, cols in want.items():
            kept = {k: v for k, v in cols.items() if k not in resampled}
            assert {k: got[lang][k] for k in kept} == pytest.approx(kept, rel=1e-12)
        return
    assert got == want


def test_metrics_refuse_a_reference_without_one_of_the_prompts(tmp_path):
    system, reference, verdicts = _sides()
    with pytest.raises(ValueError, match="p03"):
        _metrics(tmp_path, "short", system, reference[:3] + reference[4:], verdicts)


class _NoCalls:
    """A judge role that must not be called: the pairing check comes first."""

    def role(self, role: str, card: Any) -> _NoCalls:
        return self

    def sampling(self, **kwargs: Any) -> None:
        return None

    def chat(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the judge was called on misaligned outputs")


def test_the_judge_refuses_system_and_reference_outputs_for_other_prompts(tmp_path):
    system, reference, _ = _sides()
    store = Store(tmp_path / "store")
    shuffled = list(reference)
    random.Random(2).shuffle(shuffled)
    with pytest.raises(ValueError, match="different prompts"):
        run_judge(
            _cfg(tmp_path / "store"),
            store,
            _NoCalls(),
            _respond(store, "sys", system),
            _respond(store, "ref", shuffled),
        )


# The pairing itself (xlexp.evaluate.pairing), on tiny sides: what each stage gets, and what
# it refuses.

NAMES = ("the judge artifact J", "the reference artifact R")


def _rows(ids: list[str], tag: str) -> list[dict]:
    return [{"id": i, "output": f"{tag}-{i}"} for i in ids]


def _verdict_rows(ids: list[str]) -> list[dict]:
    return [{"id": i, "preference": int(i[1:]) / 10} for i in ids]


def test_the_judge_gets_each_prompts_two_answers_slot_by_slot():
    system = _rows(["p1", "p2", "p3"], "sys") + [{"id": "p4", "output": None}]
    reference = _rows(["p1", "p2", "p3", "p4"], "ref")
    assert pairing.for_judge(system, reference, CODE) == (
        ["sys-p1", "sys-p2", "sys-p3", None],
        ["ref-p1", "ref-p2", "ref-p3", "ref-p4"],
    )
    assert pairing.for_judge([], [], CODE) == ([], [])


@pytest.mark.parametrize(
    "ref_ids",
    [
        ["p2", "p1", "p3"],  # shuffled
        ["p1", "p2"],  # one prompt short
        ["p1", "p2", "p3", "p4"],  # one prompt more
        ["p1", "p2", "p9"],  # another prompt
    ],
)
def test_the_judge_refuses_a_reference_of_other_prompts(ref_ids):
    with pytest.raises(ValueError, match=f"reference's {CODE} outputs hold different prompts"):
        pairing.for_judge(_rows(["p1", "p2", "p3"], "sys"), _rows(ref_ids, "ref"), CODE)


def test_the_judge_refuses_a_prompt_named_twice():
    twice = _rows(["p1", "p2", "p1"], "x")
    with pytest.raises(ValueError, match=f"the system's {CODE} outputs holds prompt 'p1' twice"):
        pairing.for_judge(twice, twice, CODE)


def test_metrics_take_verdicts_and_reference_answers_by_id_in_the_system_order():
    system = _rows(["p3", "p1", "p2"], "sys")
    # the other sides in other orders, with rows of prompts the system does not have
    reference = _rows(["p2", "p9", "p3", "p1"], "ref")
    verdicts = _verdict_rows(["p1", "p2", "p8", "p3"])
    got = pairing.for_metrics(system, reference, verdicts, CODE, NAMES)
    assert got == (
        [{"id": "p3", "preference": 0.3}, {"id": "p1", "preference": 0.1},
         {"id": "p2", "preference": 0.2}],
        ["sys-p3", "sys-p1", "sys-p2"],
        ["ref-p3", "ref-p1", "ref-p2"],
    )
    assert pairing.for_metrics([], [], [], CODE, NAMES) == ([], [], [])


@pytest.mark.parametrize(
    ("ref_ids", "verdict_ids", "error"),
    [
        (["p1", "p2", "p3"], ["p1", "p3"],
         f"metrics: the judge artifact J has no {CODE} verdict for prompts \\['p2'\\]"),
        (["p3", "p1"], ["p1", "p2", "p3"],
         f"metrics: the reference artifact R has no {CODE} answer for prompts \\['p2'\\]"),
        (["p1", "p2", "p3"], [],
         f"the judge artifact J has no {CODE} verdict for prompts \\['p1', 'p2', 'p3'\\]"),
    ],
)
def test_metrics_refuse_a_side_without_one_of_the_systems_prompts(ref_ids, verdict_ids, error):
    with pytest.raises(ValueError, match=error):
        pairing.for_metrics(
            _rows(["p1", "p2", "p3"], "sys"), _rows(ref_ids, "ref"), _verdict_rows(verdict_ids),
            CODE, NAMES,
        )


@pytest.mark.parametrize(
    ("side", "error"),
    [
        ("system", f"the system's {CODE} outputs holds prompt 'p2' twice"),
        ("reference", f"the reference artifact R's {CODE} outputs holds prompt 'p2' twice"),
        ("verdicts", f"the judge artifact J's {CODE} verdicts holds prompt 'p2' twice"),
    ],
)
def test_metrics_refuse_a_side_that_names_a_prompt_twice(side, error):
    sides = {
        "system": _rows(["p1", "p2"], "sys"),
        "reference": _rows(["p1", "p2"], "ref"),
        "verdicts": _verdict_rows(["p1", "p2"]),
    }
    sides[side] = sides[side] + [dict(sides[side][1])]
    with pytest.raises(ValueError, match=error):
        pairing.for_metrics(sides["system"], sides["reference"], sides["verdicts"], CODE, NAMES)


def test_an_extra_judges_verdicts_are_taken_by_id_for_the_agreement_table(tmp_path):
    from xlexp.evaluate.trust import _aligned
    from xlexp.store import Store, write_jsonl

    store = Store(tmp_path)
    rows = [{"id": i, "preference": p} for i, p in ((1, 1.0), (2, 0.0), (3, 0.5))]

    def artifact(key, written):
        def produce(work, parts):
            write_jsonl(work / "deu.jsonl", written)
            return {}

        return store.build("judge", key, produce)[0]

    ordered = _aligned(artifact("a", rows), "deu.jsonl", ["1", "2", "3", "4"])
    shuffled = _aligned(artifact("b", rows[::-1]), "deu.jsonl", ["1", "2", "3", "4"])
    assert [r["preference"] for r in ordered] == [1.0, 0.0, 0.5, None]  # 4: no verdict
    assert shuffled == ordered
    with pytest.raises(ValueError, match="prompt '2' twice"):
        _aligned(artifact("c", [*rows, rows[1]]), "deu.jsonl", ["1", "2", "3"])

"""The evaluation's pairing of a system's answers with the reference's answers and the judge's
verdicts. Every number is computed on rows matched by prompt id, never by file order; a side
that lacks a prompt, or names one twice, is refused where the sides are combined.

- The judge (`for_judge`) shows both answers to one prompt in one request: the system's and the
  reference's outputs must hold the same prompts in the same order, or nothing is sent.
- The metrics (`for_metrics`) take the judge's verdict and the reference's answer of each of
  the system's prompts by id, in the system's order (the order its bootstrap resamples in).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def ids(rows: Sequence[dict]) -> list[str]:
    """The prompt ids of a side's rows, in its order."""
    return [r["id"] for r in rows]


def by_id(rows: Sequence[dict], side: str) -> dict[str, dict]:
    """A side's rows by prompt id; a ValueError naming `side` when an id is there twice (a row
    looked up by id would silently be one of them)."""
    out: dict[str, dict] = {}
    for r in rows:
        if r["id"] in out:
            raise ValueError(f"{side} holds prompt {r['id']!r} twice")
        out[r["id"]] = r
    return out


def for_judge(
    system: Sequence[dict], reference: Sequence[dict], code: str
) -> tuple[list[Any], list[Any]]:
    """(system outputs, reference outputs) of the same prompts, slot by slot, for `judge.plan`
    with the system's rows. A ValueError when the two sides do not hold the same prompts in the
    same order (a shuffled or another prompt set's reference): no judge call is made then."""
    if ids(system) != ids(reference):
        raise ValueError(
            f"judge: the system's and the reference's {code} outputs hold different prompts"
        )
    by_id(system, f"the system's {code} outputs")
    return [r["output"] for r in system], [r["output"] for r in reference]


def for_metrics(
    system: Sequence[dict],
    reference: Sequence[dict],
    verdicts: Sequence[dict],
    code: str,
    names: tuple[str, str],
) -> tuple[list[dict], list[Any], list[Any]]:
    """(verdict rows, system outputs, reference outputs), one of each per system row and in the
    system's order, the verdict and the reference's answer taken by prompt id. `names`: the
    verdicts' and the reference's artifacts, for the errors. A ValueError naming the prompts
    when the verdicts or the reference lack one of the system's prompts, or when a side holds a
    prompt twice. Verdicts and reference answers of other prompts are not used."""
    by_id(system, f"the system's {code} outputs")
    judged = by_id(verdicts, f"{names[0]}'s {code} verdicts")
    answers = by_id(reference, f"{names[1]}'s {code} outputs")
    for found, what, name in ((judged, "verdict", names[0]), (answers, "answer", names[1])):
        missing = [i for i in ids(system) if i not in found]
        if missing:
            raise ValueError(f"metrics: {name} has no {code} {what} for prompts {missing[:5]}")
    return (
        [judged[r["id"]] for r in system],
        [r["output"] for r in system],
        [answers[r["id"]]["output"] for r in system],
    )

"""Pairwise judge: requests per order, verdict parsing (logprobs, text, malformed), order
flipping."""

from __future__ import annotations

import math

import pytest

from xlexp.evaluate import judge
from xlexp.evaluate.judge import PROMPT, pairwise_conversation, parse_verdict
from xlexp.llm import Completion

ROWS = [
    {"id": i, "lang": lang, "instruction": f"Question {i}?\n\nAnswer in German.", "dataset": "demo"}
    for lang in ("deu", "fra")
    for i in (1, 2, 3)
]
SYS = [f"system answer {r['lang']} {r['id']}" for r in ROWS]
REF = [f"reference answer {r['lang']} {r['id']}" for r in ROWS]


def lp(p: float) -> float:
    return math.log(p)


def plan(rows, sys_outs, ref_outs, protocol: str = "both_orders") -> list[dict]:
    return judge.plan(protocol, rows, sys_outs, ref_outs)


def requests(entries: list[dict]) -> list[dict]:
    return [{"id": e["id"], "lang": e["lang"], **r} for e in entries for r in e["requests"]]


def combine(entries: list[dict], comps: list, protocol: str = "both_orders") -> list[dict]:
    return judge.combine(protocol, entries, comps)


def test_conversation_has_both_outputs_in_slots() -> None:
    conv = pairwise_conversation("Say hi {in code}", "first {x}", "second")
    assert [m["role"] for m in conv] == ["system", "user"]
    user = conv[1]["content"]
    assert "Say hi {in code}" in user
    assert user.index("first {x}") < user.index("second")
    assert "requested language" in user and "A or B" in user
    assert conv[0]["content"] in PROMPT and "{output_b}" in PROMPT


def test_plan_both_orders_puts_system_in_the_named_slot() -> None:
    reqs = requests(plan(ROWS, SYS, REF))
    assert len(reqs) == 2 * len(ROWS)
    assert [(r["lang"], r["id"], r["order"]) for r in reqs[:2]] == [
        ("deu", 1, "sr"),
        ("deu", 1, "rs"),
    ]
    sr, rs = reqs[0]["conversation"][1]["content"], reqs[1]["conversation"][1]["content"]
    assert sr.index("system answer deu 1") < sr.index("reference answer deu 1")
    assert rs.index("reference answer deu 1") < rs.index("system answer deu 1")


@pytest.mark.parametrize("protocol", judge.JUDGE_PROTOCOLS.names())
def test_identical_and_missing_outputs_never_reach_the_judge(protocol: str) -> None:
    rows = ROWS[:4]
    sys_outs = ["same", None, "sys", float("nan")]  # None / NaN: failed responses
    ref_outs = ["same", "ref", None, "ref"]
    entries = plan(rows, sys_outs, ref_outs, protocol)
    assert [e["status"] for e in entries] == ["identical", "failed", "failed", "failed"]
    assert [e.get("reason") for e in entries[1:]] == [
        "missing system output",
        "missing reference output",
        "missing system output",
    ]
    assert judge.conversations(entries) == []
    out = combine(entries, [], protocol)
    assert [(r["status"], r["preference"]) for r in out] == [
        ("identical", 0.5),
        ("failed", None),
        ("failed", None),
        ("failed", None),
    ]
    with pytest.raises(ValueError, match="unknown judge protocol"):
        judge.plan("one_order", rows, sys_outs, ref_outs)


def test_parse_logprobs_renormalised_over_label_variants() -> None:
    top = [{"B": lp(0.5), " B": lp(0.1), "A": lp(0.2), "The": lp(0.2)}]
    p, reason = parse_verdict("B", top)
    assert reason is None and p == pytest.approx(0.6 / 0.8)
    # Leading blank token, SentencePiece marker, lowercase: still the label at the next token.
    p, _ = parse_verdict("\na", [{"\n": lp(0.9)}, {"▁a": lp(0.6), "B": lp(0.2)}])
    assert p == pytest.approx(0.25)
    # Only one label in the top-k: certain.
    assert parse_verdict("A", [{"A": lp(0.9), "Output": lp(0.05)}]) == (0.0, None)


def test_parse_text_only() -> None:
    assert parse_verdict("B", None) == (1.0, None)
    assert parse_verdict(" a ", None) == (0.0, None)
    assert parse_verdict("**B**", None) == (1.0, None)
    assert parse_verdict("B. It answers in German.", None) == (1.0, None)
    assert parse_verdict("A is better.", None) == (0.0, None)
    assert parse_verdict("The better output is (A) because...", None) == (0.0, None)
    assert parse_verdict("I prefer Output B because it is in German.", None) == (1.0, None)
    assert parse_verdict("Answer: **b**", None) == (1.0, None)
    assert parse_verdict("<think>A or B? B is in German.</think>\nOutput B", None) == (1.0, None)
    # Logprobs whose top token is not a label defer to the text.
    assert parse_verdict("Output A", [{"Output": lp(0.9), "B": lp(0.05)}, {" A": lp(0.99)}]) == (
        0.0,
        None,
    )


@pytest.mark.parametrize(
    "text,reason",
    [
        ("", "empty verdict"),
        ("Both are equally good.", "no verdict in text"),
        ("A better answer would mention the bees.", "no verdict in text"),
        ("The answer is a bit long in both.", "no verdict in text"),
        # A mention of a label is no verdict (both parsed as A before).
        ("Output A is worse than Output B", "no verdict in text"),
        ("Output A is better. Verdict: B", "conflicting verdicts"),
    ],
)
def test_parse_malformed(text: str, reason: str) -> None:
    assert parse_verdict(text, None) == (None, reason)


def test_parse_reads_the_verdict_not_the_first_mention() -> None:
    assert parse_verdict("Response A is vague; verdict: B", None) == (1.0, None)
    assert parse_verdict("Output A lists facts, but Output B is better.", None) == (1.0, None)
    assert parse_verdict("Final answer: (A)", None) == (0.0, None)


def test_bad_logprobs_give_no_nan_and_no_crash() -> None:
    # A NaN as the top candidate is no candidate: the finite ones decide.
    p, reason = parse_verdict("B", [{"B": float("nan"), "A": lp(0.25), " B": lp(0.75)}])
    assert reason is None and p == pytest.approx(0.75)
    # Every label -inf (or NaN): no logprob verdict, the text decides; without text, malformed.
    assert parse_verdict("B", [{"A": float("-inf"), "B": float("-inf")}]) == (1.0, None)
    assert parse_verdict("", [{"A": float("nan"), "B": float("-inf")}]) == (None, "empty verdict")


def test_combine_flips_orders() -> None:
    entries = plan(ROWS, SYS, REF)
    reqs = requests(entries)
    # A judge that always says "A" (pure position bias) gives every row a 0.5 preference.
    always_a = combine(entries, [Completion(text="A") for _ in reqs])
    assert len(always_a) == len(ROWS)
    assert all(
        r["preference"] == 0.5 and not r["malformed"] and r["status"] == "judged" for r in always_a
    )
    # A judge that always picks the system output, whatever its slot.
    prefers_system = [Completion(text="A" if r["order"] == "sr" else "B") for r in reqs]
    assert all(r["preference"] == 1.0 for r in combine(entries, prefers_system))
    # Logprob-based soft verdicts, flipped per order and averaged: (1 - 0.2 + 0.6) / 2 = 0.7.
    soft = [
        Completion(
            text="B",
            logprobs=[
                {"B": lp(0.2), "A": lp(0.8)} if r["order"] == "sr" else {"B": lp(0.6), "A": lp(0.4)}
            ],
        )
        for r in reqs
    ]
    row = combine(entries, soft)[0]
    assert row["preference"] == pytest.approx(0.7) and row["protocol"] == "both_orders"
    assert [v["source"] for v in row["verdicts"]] == ["logprobs", "logprobs"]


def test_combine_records_malformed_and_never_guesses() -> None:
    entries = plan(ROWS[:2], SYS[:2], REF[:2])
    comps = [
        Completion(text="B"),  # row 1, sr: reference better -> 0.0
        Completion(text="I cannot decide."),  # row 1, rs: malformed
        Completion(error="HTTP 500"),  # row 2, sr
        {"text": "", "logprobs": None, "error": None},  # row 2, rs: dicts work too
    ]
    first, second = combine(entries, comps)
    assert first["preference"] == 0.0 and first["status"] == "judged"
    assert first["malformed"] == [
        {"order": "rs", "reason": "no verdict in text", "text": "I cannot decide."}
    ]
    assert second["preference"] is None and second["status"] == "malformed"
    assert [m["reason"] for m in second["malformed"]] == [
        "backend error: HTTP 500",
        "empty verdict",
    ]
    with pytest.raises(ValueError):
        combine(entries, comps[:3])

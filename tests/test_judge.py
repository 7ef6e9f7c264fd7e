"""Pairwise judge: requests per order, verdict parsing (logprobs, text, malformed), order flipping."""

from __future__ import annotations

import math

import pytest

from xlexp.evaluate.judge import PROMPT, combine, pairwise_conversation, parse_verdict, plan
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


def test_conversation_has_both_outputs_in_slots() -> None:
    conv = pairwise_conversation("Say hi {in code}", "first {x}", "second")
    assert [m["role"] for m in conv] == ["system", "user"]
    user = conv[1]["content"]
    assert "Say hi {in code}" in user
    assert user.index("first {x}") < user.index("second")
    assert "requested language" in user and "A or B" in user
    assert conv[0]["content"] in PROMPT and "{output_b}" in PROMPT


def test_plan_both_orders_puts_system_in_the_named_slot() -> None:
    reqs = plan(ROWS, SYS, REF, both_orders=True, seed=1)
    assert len(reqs) == 2 * len(ROWS)
    assert [(r["lang"], r["id"], r["order"]) for r in reqs[:2]] == [("deu", 1, "sr"), ("deu", 1, "rs")]
    sr, rs = reqs[0]["conversation"][1]["content"], reqs[1]["conversation"][1]["content"]
    assert sr.index("system answer deu 1") < sr.index("reference answer deu 1")
    assert rs.index("reference answer deu 1") < rs.index("system answer deu 1")


def test_plan_one_order_is_seeded() -> None:
    rows = [{"id": i, "lang": "deu", "instruction": "q"} for i in range(40)]
    outs = ["o"] * 40

    def orders(seed: int) -> list[str]:
        return [r["order"] for r in plan(rows, outs, outs, both_orders=False, seed=seed)]

    assert len(orders(1)) == 40
    assert orders(1) == orders(1)
    assert set(orders(1)) == {"sr", "rs"}
    assert orders(1) != orders(2)


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
    assert parse_verdict("Output A", [{"Output": lp(0.9), "B": lp(0.05)}, {" A": lp(0.99)}]) == (0.0, None)


@pytest.mark.parametrize(
    "text,reason",
    [
        ("", "empty verdict"),
        ("Both are equally good.", "no label in verdict"),
        ("A better answer would mention the bees.", "no label in verdict"),
        ("The answer is a bit long in both.", "no label in verdict"),
    ],
)
def test_parse_malformed(text: str, reason: str) -> None:
    assert parse_verdict(text, None) == (None, reason)


def test_combine_flips_orders() -> None:
    reqs = plan(ROWS, SYS, REF, both_orders=True, seed=1)
    # A judge that always says "A" (pure position bias) gives every row a 0.5 preference.
    always_a = combine(reqs, [Completion(text="A") for _ in reqs])
    assert len(always_a) == len(ROWS)
    assert all(r["preference"] == 0.5 and not r["malformed"] for r in always_a)
    # A judge that always picks the system output, whatever its slot.
    prefers_system = [Completion(text="A" if r["order"] == "sr" else "B") for r in reqs]
    assert all(r["preference"] == 1.0 for r in combine(reqs, prefers_system))
    # Logprob-based soft verdicts, flipped per order and averaged: (1 - 0.2 + 0.6) / 2 = 0.7.
    soft = [
        Completion(text="B", logprobs=[{"B": lp(0.2), "A": lp(0.8)} if r["order"] == "sr" else {"B": lp(0.6), "A": lp(0.4)}])
        for r in reqs
    ]
    row = combine(reqs, soft)[0]
    assert row["preference"] == pytest.approx(0.7)
    assert [v["source"] for v in row["verdicts"]] == ["logprobs", "logprobs"]


def test_combine_records_malformed_and_never_guesses() -> None:
    reqs = plan(ROWS[:2], SYS[:2], REF[:2], both_orders=True, seed=1)
    comps = [
        Completion(text="B"),  # row 1, sr: reference better -> 0.0
        Completion(text="I cannot decide."),  # row 1, rs: malformed
        Completion(error="HTTP 500"),  # row 2, sr
        {"text": "", "logprobs": None, "error": None},  # row 2, rs: dicts work too
    ]
    first, second = combine(reqs, comps)
    assert first["preference"] == 0.0
    assert first["malformed"] == [{"order": "rs", "reason": "no label in verdict", "text": "I cannot decide."}]
    assert second["preference"] is None
    assert [m["reason"] for m in second["malformed"]] == ["backend error: HTTP 500", "empty verdict"]
    with pytest.raises(ValueError):
        combine(reqs, comps[:3])

"""What the judge protocols and the rubric store, pinned row by row: the verdict row of each
status, each verdict's source, the judge artifact's key material, and the properties of the
logprob readings (P(B) and the expected score depend only on logprob differences; label and
digit variants add up; a NaN or a non-verdict token is no candidate). The alpaca_eval rows are
checked against alpaca_eval's own parser and configs."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest

from xlexp.errors import ConfigError
from xlexp.evaluate import alpaca_judge, judge, prompt, rubric
from xlexp.llm import Completion
from xlexp.store import digest

ROWS = [
    {"id": i, "lang": "deu", "instruction": f"Frage {i}?", "dataset": "demo"} for i in range(1, 7)
]
SYS = ["s1", "same", None, "s4", "s5", "s6"]
REF = ["r1", "same", "r3", "r4", "r5", "r6"]


# ---- both_orders: the stored verdict rows ----


def test_both_orders_stores_one_exact_row_per_prompt() -> None:
    entries = judge.plan("both_orders", ROWS, SYS, REF)
    # Each judged prompt's two requests show its instruction with the outputs in the named slots.
    for entry, sys_out, ref_out in zip(entries, SYS, REF, strict=True):
        q = ROWS[entry["id"] - 1]["instruction"]
        want = [] if entry["status"] else [
            {"order": "sr", "conversation": judge.pairwise_conversation(q, sys_out, ref_out)},
            {"order": "rs", "conversation": judge.pairwise_conversation(q, ref_out, sys_out)},
        ]
        assert entry["requests"] == want
    completions: list[Any] = [
        # 1 sr: an empty position and a markdown token before the label; B and its variants
        # hold 3 of the 4 equal label candidates, "The" is no label -> P(B) = 0.75
        {"text": "**B", "logprobs": [{}, {"**": -0.1, "B": -3.0},
                                     {"B": -0.5, " B": -0.5, "**B": -0.5, "A": -0.5, "The": -2.0}]},
        # 1 rs: no logprobs, a verdict in the text
        {"text": "Verdict: A"},
        # 4 sr: the backend failed; 4 rs: a bare label in the text
        Completion(text="partial", error="HTTP 500"),
        Completion(text="B"),
        # 5 sr: no verdict (an object without error/logprobs fields); 5 rs: a label
        SimpleNamespace(text="I cannot tell."),
        SimpleNamespace(text="**A**"),
        # 6: no verdict in either order
        Completion(text=""),
        Completion(text="A and B"),
    ]
    rows = judge.combine("both_orders", entries, completions)
    base = {"lang": "deu", "protocol": "both_orders"}
    assert rows == [
        {**base, "id": 1, "status": "judged", "preference": 0.125, "malformed": [], "verdicts": [
            {"order": "sr", "p_b": 0.75, "preference": 0.25, "source": "logprobs", "text": "**B"},
            {"order": "rs", "p_b": 0.0, "preference": 0.0, "source": "text",
             "text": "Verdict: A"},
        ]},
        {**base, "id": 2, "status": "identical", "preference": 0.5, "verdicts": [],
         "malformed": []},
        {**base, "id": 3, "status": "failed", "preference": None, "verdicts": [], "malformed": [],
         "reason": "missing system output"},
        {**base, "id": 4, "status": "judged", "preference": 1.0,
         "malformed": [{"order": "sr", "reason": "backend error: HTTP 500", "text": "partial"}],
         "verdicts": [{"order": "rs", "p_b": 1.0, "preference": 1.0, "source": "text",
                       "text": "B"}]},
        {**base, "id": 5, "status": "judged", "preference": 0.0,
         "malformed": [{"order": "sr", "reason": "no verdict in text", "text": "I cannot tell."}],
         "verdicts": [{"order": "rs", "p_b": 0.0, "preference": 0.0, "source": "text",
                       "text": "**A**"}]},
        {**base, "id": 6, "status": "malformed", "preference": None, "verdicts": [],
         "malformed": [{"order": "sr", "reason": "empty verdict", "text": ""},
                       {"order": "rs", "reason": "no verdict in text", "text": "A and B"}]},
    ]


def test_a_failed_reference_output_is_named_in_the_row() -> None:
    entries = judge.plan("both_orders", ROWS[:1], ["s1"], [None])
    assert judge.combine("both_orders", entries, []) == [
        {"id": 1, "lang": "deu", "protocol": "both_orders", "status": "failed",
         "preference": None, "verdicts": [], "malformed": [], "reason": "missing reference output"}
    ]


@pytest.mark.parametrize("shift", [0.0, -50.0, -800.0])
def test_p_b_depends_only_on_logprob_differences(shift: float) -> None:
    # P(B) = 3/4 whatever the common offset, even one far below exp's range
    p_b, _ = judge.parse_verdict("", [{"A": shift, "B": shift + math.log(3.0)}])
    assert p_b == pytest.approx(0.75)


def test_an_unknown_protocol_names_the_config_field() -> None:
    with pytest.raises(ConfigError, match=r"^eval\.judge_protocol: unknown judge protocol"):
        judge.judge_protocol("nope")


class _Short(judge.BothOrders):
    """A protocol that answers for one prompt fewer than it was given."""

    name = "short"

    def requests(self, rows, systems, references):  # type: ignore[no-untyped-def]
        return super().requests(rows, systems, references)[:-1]


def test_a_protocol_that_drops_a_prompt_is_refused() -> None:
    judge.JUDGE_PROTOCOLS.register("short", _Short())
    try:
        with pytest.raises(ValueError, match="zip"):
            judge.plan("short", ROWS[:2], ["a", "b"], ["c", "d"])
    finally:
        judge.JUDGE_PROTOCOLS.unregister("short")


def test_both_orders_requests_refuse_unaligned_inputs() -> None:
    with pytest.raises(ValueError, match="zip"):
        judge.BothOrders().requests(ROWS[:2], ["a", "b"], ["c"])


# ---- the judge artifact's key material ----


def test_key_info_is_the_text_shown_the_sampling_and_the_parser() -> None:
    # both_orders: our two prompt files, greedy, a label's worth of tokens, the top-20 read
    assert judge.key_info("both_orders") == {
        "protocol": "both_orders",
        "prompt": digest(prompt("pairwise_system") + "\n" + prompt("pairwise")),
        "sampling": {"temperature": 0.0, "max_tokens": 4, "logprobs": 20},
        "parser": 2,
    }
    # alpaca_eval: the annotator's name and its template, its sampling, as its configs hold them
    from alpaca_eval import constants, utils

    name = "weighted_alpaca_eval_gpt4_turbo"
    config = utils.load_configs(constants.EVALUATORS_CONFIG_DIR / name / "configs.yaml")[name]
    template = (constants.EVALUATORS_CONFIG_DIR / config["prompt_template"]).read_text()
    kw = config["completions_kwargs"]
    assert judge.key_info("alpaca_eval") == {
        "protocol": "alpaca_eval",
        "prompt": digest(name + "\n" + template),
        "sampling": {"max_tokens": kw["max_tokens"], "temperature": float(kw["temperature"]),
                     "logprobs": kw["top_logprobs"]},
        "parser": 3,
    }


# ---- alpaca_eval: the stored verdict rows, against alpaca_eval's own parser ----


def test_alpaca_eval_rows_carry_alpaca_evals_preference() -> None:
    from alpaca_eval.completion_parsers import logprob_parser

    rows, sys_out, ref_out = ROWS[:4], ["s1", "s2", "s3", "s4"], ["r1", "r2", "r3", "r4"]
    entries = judge.plan("alpaca_eval", rows, sys_out, ref_out)
    listed = [[["m", math.log(0.7)], ["M", math.log(0.3)], ["The", -4.0]]]
    comps = [Completion(text="m", top_logprobs=listed) for _ in entries]
    comps[-1] = Completion(text="The", top_logprobs=[[["The", -0.1]]])
    got = judge.combine("alpaca_eval", entries, comps)
    # alpaca_eval's preference is in [1, 2] (2: output_2, the system, better) in its slots
    (theirs,) = logprob_parser(alpaca_judge.openai_shape(listed), "m", ["m", "M"], False)
    want = []
    for entry in entries[:-1]:
        (req,) = entry["requests"]
        pref = (3.0 - theirs if req["switched"] else theirs) - 1.0
        want.append({"id": entry["id"], "lang": "deu", "protocol": "alpaca_eval",
                     "status": "judged", "preference": pref, "malformed": [],
                     "verdicts": [{"order": req["order"], "preference": pref,
                                   "source": "logprobs", "text": "m"}]})
    (last,) = entries[-1]["requests"]
    want.append({"id": 4, "lang": "deu", "protocol": "alpaca_eval", "status": "malformed",
                 "preference": None, "verdicts": [],
                 "malformed": [{"order": last["order"], "reason": "no m/M in the top logprobs",
                                "text": "The"}]})
    assert got == want
    assert {e["requests"][0]["switched"] for e in entries} == {True, False}  # both slot orders


@pytest.mark.parametrize("value", [0.5, 2.5])
def test_an_alpaca_eval_preference_off_its_scale_is_no_verdict(
    monkeypatch: pytest.MonkeyPatch, value: float
) -> None:
    # alpaca_eval's scale is [1, 2]: anything else would become a P(system better) outside [0, 1]
    annotator = alpaca_judge.annotator()
    monkeypatch.setattr(annotator, "_parse_completions", lambda comps: ([value], comps))
    assert alpaca_judge.parse([[["m", -0.1]]], switched=False) == (
        None, f"preference out of range: {value}"
    )


# ---- rubric ----


def test_rubric_key_text_is_every_file_the_judge_is_shown() -> None:
    names = ["rubric_system", "rubric", "rubric_naturalness", "rubric_precision"]
    want = "\n".join(prompt(n) for n in names)
    assert rubric.prompt_text(["naturalness", "precision"]) == want


def test_rubric_plan_asks_in_the_rows_language_about_its_instruction_and_output() -> None:
    rows = [
        {"id": 1, "lang": "deu", "instruction": "Nenne eine Frucht.", "output": "Apfel."},
        {"id": 2, "lang": "deu", "instruction": "Nenne ein Tier.", "output": None},
    ]
    (req,) = rubric.plan(rows, ["naturalness"])
    crit = prompt("rubric_naturalness").strip().replace("{language}", "German")
    user = prompt("rubric").format(
        language="German", criterion=crit, instruction="Nenne eine Frucht.", output="Apfel."
    )
    assert "German" in user and "{language}" in prompt("rubric")
    assert req == {
        "id": 1, "lang": "deu", "criterion": "naturalness",
        "conversation": [
            {"role": "system", "content": prompt("rubric_system").strip()},
            {"role": "user", "content": user},
        ],
    }


@pytest.mark.parametrize(
    ("logprobs", "text", "want"),
    [
        # an empty position, then 4 and 5 equally likely
        ([{}, {"4": 0.0, "5": 0.0}], "", (4.5, "logprobs")),
        # a markdown token first; then "4" in two spellings and "**2**" count as digits
        ([{"**": -0.1, "3": -2.0}, {"4": 0.0, " 4": 0.0, "**2**": 0.0}], "",
         (10 / 3, "logprobs")),
        # the most likely token is a wrapped digit
        ([{"**4**": -0.1, "5": -0.1 - math.log(3.0)}], "", (4.25, "logprobs")),
        # a NaN logprob and a two-digit token are no candidates
        ([{"4": 0.0, "2": float("nan"), "45": -0.1}], "", (4.0, "logprobs")),
        # the most likely token is a digit off the scale: the text decides, and has none
        ([{"6": -0.1, "4": -1.0}], "6", (None, "no 1-5 score in answer")),
    ],
)
def test_rubric_score_from_logprobs(logprobs: list, text: str, want: tuple) -> None:
    score, how = rubric.parse_score(text, logprobs)
    assert (score, how) == (pytest.approx(want[0]) if want[0] else None, want[1])


@pytest.mark.parametrize("shift", [0.0, -800.0])
def test_rubric_score_depends_only_on_logprob_differences(shift: float) -> None:
    score, _ = rubric.parse_score("", [{"4": shift, "5": shift - math.log(3.0)}])
    assert score == pytest.approx(4.25)


def test_rubric_stores_one_exact_row_per_request() -> None:
    plan = [{"id": i, "lang": "deu", "criterion": "precision", "conversation": []}
            for i in range(1, 6)]
    comps: list[Any] = [
        Completion(text="4", logprobs=[{"4": 0.0, "5": 0.0}]),
        {"text": "2"},
        {"text": None},
        SimpleNamespace(text="3"),
        Completion(text="5", error="HTTP 500"),
    ]
    base = {"lang": "deu", "criterion": "precision"}
    assert rubric.combine(plan, comps) == [
        {**base, "id": 1, "score": 4.5, "source": "logprobs", "text": "4"},
        {**base, "id": 2, "score": 2.0, "source": "text", "text": "2"},
        {**base, "id": 3, "score": None, "reason": "empty answer", "text": ""},
        {**base, "id": 4, "score": 3.0, "source": "text", "text": "3"},
        {**base, "id": 5, "score": None, "reason": "backend error: HTTP 500", "text": "5"},
    ]


def test_rubric_summary_counts_per_language() -> None:
    def row(lang: str, c: str, score: float | None) -> dict:
        return {"lang": lang, "criterion": c, "score": score}

    rows = [
        row("deu", "precision", 4.0), row("deu", "precision", 2.0), row("deu", "objectivity", 5.0),
        row("deu", "objectivity", None),
        row("fra", "precision", 1.0), row("fra", "objectivity", None),
        row("fra", "objectivity", None),
    ]
    table = rubric.summarize(rows, ["precision", "objectivity"])
    nan = table["fra"]["objectivity"]
    assert math.isnan(nan)
    table["fra"]["objectivity"] = "nan"
    assert table == {
        "deu": {"precision": 3.0, "objectivity": 5.0, "average": 4.0, "n": 3, "n_malformed": 1},
        "fra": {"precision": 1.0, "objectivity": "nan", "average": 1.0, "n": 1,
                "n_malformed": 2},
        "avg": {"precision": 2.0, "objectivity": 5.0, "average": 2.5, "n": 4, "n_malformed": 3},
    }

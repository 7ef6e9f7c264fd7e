"""Fine-grained rubric (Table 8) and Reason-then-Translate (Table 2) cores on hand-made data."""

from __future__ import annotations

import math

import pytest

from xlexp.evaluate import rtt, rubric
from xlexp.llm import Completion


def test_rubric_files_one_per_criterion_and_prompt_shape() -> None:
    conv = rubric.conversation("naturalness", "Explain tides. Answer in Irish.", "Is é ...", "gle")
    user = conv[1]["content"]
    assert conv[0]["role"] == "system" and "1 to 5" in conv[0]["content"]
    assert "NATURALNESS" in user and "fluent, idiomatic Irish" in user and "{language}" not in user
    assert "Explain tides. Answer in Irish." in user and "Is é ..." in user
    for c in rubric.CRITERIA:
        assert c.upper() in rubric.conversation(c, "q", "a", "deu")[1]["content"]
    with pytest.raises(ValueError):
        rubric.conversation("fluency", "q", "a", "deu")


def test_rubric_score_from_logprobs_text_and_malformed() -> None:
    # P(4)=e^-0.1, P(5)=e^-2.4 renormalised over the digits -> expectation between 4 and 5.
    score, how = rubric.parse_score("4", [{"4": -0.1, "5": -2.4, "Score": -3.0}])
    p4, p5 = math.exp(-0.1), math.exp(-2.4)
    assert how == "logprobs" and score == pytest.approx((4 * p4 + 5 * p5) / (p4 + p5))
    # A leading blank token is skipped; a non-digit first token falls back to the text.
    assert rubric.parse_score("3", [{" ": -0.01}, {"3": -0.2, "2": -1.8}])[1] == "logprobs"
    assert rubric.parse_score("Score: 2/5", [{"Score": -0.1, "2": -3.0}]) == (2.0, "text")
    assert rubric.parse_score("**5**", None) == (5.0, "text")
    assert rubric.parse_score("", None) == (None, "empty answer")
    assert rubric.parse_score("excellent answer", None) == (None, "no 1-5 score in answer")
    assert rubric.parse_score("9", None)[0] is None  # out of scale: not a 1-5 score
    assert rubric.parse_score("10", [{"10": -0.1, "1": -3.0}]) == (None, "no 1-5 score in answer")
    assert rubric.parse_score("4.5", None) == (None, "no 1-5 score in answer")
    assert rubric.parse_score("I give it 3.", None) == (3.0, "text")


def test_rubric_combine_records_malformed_and_summarizes() -> None:
    rows = [
        {"id": 1, "lang": "deu", "instruction": "q1", "output": "a1"},
        {"id": 2, "lang": "deu", "instruction": "q2", "output": "a2"},
    ]
    plan = rubric.plan(rows, ["precision", "objectivity"])
    assert [(p["id"], p["criterion"]) for p in plan] == [
        (1, "precision"),
        (1, "objectivity"),
        (2, "precision"),
        (2, "objectivity"),
    ]
    comps = [
        Completion(text="4"),
        Completion(text="no idea"),
        Completion(text="2"),
        Completion(error="HTTP 500"),
    ]
    out = rubric.combine(plan, comps)
    assert [r["score"] for r in out] == [4.0, None, 2.0, None]
    assert (
        out[1]["reason"] == "no 1-5 score in answer"
        and out[3]["reason"] == "backend error: HTTP 500"
    )
    hand = out + [
        {"id": 1, "lang": "hin", "criterion": "precision", "score": 5.0},
        {"id": 1, "lang": "hin", "criterion": "objectivity", "score": 3.0},
    ]
    table = rubric.summarize(hand, ["precision", "objectivity"])
    assert table["deu"]["precision"] == 3.0 and math.isnan(table["deu"]["objectivity"])
    assert (
        table["deu"]["average"] == 3.0
        and table["deu"]["n_malformed"] == 2
        and table["deu"]["n"] == 2
    )
    assert table["hin"]["average"] == 4.0
    assert (
        table["avg"]["precision"] == 4.0
        and table["avg"]["objectivity"] == 3.0
        and table["avg"]["average"] == 3.5
    )
    assert table["avg"]["n_malformed"] == 2


ROW = {
    "id": 7,
    "lang": "deu",
    "instruction": "Name a fruit.\n\nAnswer in German.",
    "english": "Name a fruit.",
}


def test_rtt_prompts_use_the_english_prompt() -> None:
    one = rtt.one_prompt(ROW)[0]["content"]
    assert one.startswith("Name a fruit.\n\n") and "Answer in German" not in one
    assert "German translation:" in one and "English answer:" in one
    assert rtt.answer_prompt(ROW) == [{"role": "user", "content": "Name a fruit."}]
    tr = rtt.translate_prompt("An apple.", "deu")[0]["content"]
    assert "into German" in tr and "An apple." in tr
    assert rtt.english_of({"lang": "deu", "instruction": "only this"}) == "only this"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("English answer:\nAn apple.\n\nGerman translation:\nEin Apfel.", "Ein Apfel."),
        (
            "**English answer:** An apple.\n\n**German translation:** Ein Apfel.\nSehr lecker.",
            "Ein Apfel.\nSehr lecker.",
        ),
        ("English answer: x\n### Translation into German\nEin Apfel.", "Ein Apfel."),
        # The model repeats the format line first: the last marker holds the answer.
        (
            "German translation: <...>\nEnglish answer: An apple.\nGerman translation:\nEin Apfel.",
            "Ein Apfel.",
        ),
    ],
)
def test_rtt_extracts_the_translation(text: str, expected: str) -> None:
    assert rtt.extract(text, "deu") == (expected, None)


def test_rtt_malformed_one_prompt_answers_are_rejects() -> None:
    assert rtt.extract("An apple is a fruit.", "deu") == (None, "no translation section")
    assert rtt.extract("English answer: An apple.\nGerman translation:\n  ", "deu") == (
        None,
        "empty translation",
    )
    assert rtt.from_completion(Completion(error="timeout"), "deu") == (
        None,
        "backend error: timeout",
    )
    assert rtt.from_completion(Completion(text="  "), None) == (None, "empty answer")
    assert rtt.from_completion(Completion(text=" Ein Apfel. "), None) == ("Ein Apfel.", None)


def test_rubric_never_scores_a_failed_response() -> None:
    rows = [
        {"id": 1, "lang": "deu", "instruction": "q", "output": "Eine Antwort."},
        {"id": 2, "lang": "deu", "instruction": "q", "output": None},
    ]
    reqs = rubric.plan(rows, ["precision", "naturalness"])
    assert [(r["id"], r["criterion"]) for r in reqs] == [(1, "precision"), (1, "naturalness")]

"""Properties of generation's cores that a mutation run found unguarded: the exact SFT row a
passage becomes, the passage QE mean over scored sentences only, the tie-break between
translators, the reject reasons (counted by reason in the tables), and the QE rating parser."""

from __future__ import annotations

import math

import pytest

from xlexp.generate import qe, select
from xlexp.generate.qe import triple_key
from xlexp.generate.segment import reassemble, segment
from xlexp.llm import Completion

NAMES = ["A", "B", "C"]


def _item(cands: list[list[str | None]], sentences=("S1.", "S2.")) -> dict:
    return {
        "id": "p1",
        "seed_id": "seed-7",
        "lang": "deu",
        "instruction": "Q? Respond in German.",
        "question": "Q?",
        "response": "S1. S2.",
        "segments": [
            {"text": "S1.", "translate": True},
            {"text": " ", "translate": False},
            {"text": "S2.", "translate": True},
        ][: 2 * len(sentences) - 1],
        "sentences": list(sentences),
        "candidates": cands,
    }


def _scores(table: dict[tuple[str, str], float]) -> dict[str, float]:
    return {triple_key(src, mt, "deu"): s for (src, mt), s in table.items()}


def test_a_chosen_passage_is_exactly_this_sft_row():
    scores = _scores({("S1.", "a1"): 0.2, ("S1.", "b1"): 0.9, ("S2.", "a2"): 0.6})
    row = select.choose(_item([["a1", "b1"], ["a2", "b2"]]), scores, NAMES, "best_of_k")
    assert row == {
        "id": "p1",
        "seed_id": "seed-7",
        "lang": "deu",
        "messages": [
            {"role": "user", "content": "Q? Respond in German."},
            {"role": "assistant", "content": "b1 a2"},
        ],
        # S2's b2 has no score: a2 (scored) wins, and the mean is over the two scored choices
        "qe_score": pytest.approx((0.9 + 0.6) / 2),
        "translators": ["B", "A"],
        "source_question": "Q?",
        "source_response": "S1. S2.",
    }


def test_unscored_sentences_do_not_count_as_zero_in_the_passage_mean():
    # S2 has no score for any candidate: its first candidate is kept, and the mean is S1's.
    scores = _scores({("S1.", "a1"): 0.4, ("S1.", "b1"): 0.8})
    row = select.choose(_item([["a1", "b1"], ["a2", "b2"]]), scores, NAMES, "best_of_k")
    assert row["messages"][1]["content"] == "b1 a2"
    assert row["translators"] == ["B", "A"]
    assert row["qe_score"] == pytest.approx(0.8)


def test_a_missing_candidate_is_skipped_not_the_end_of_the_sentence():
    # Translator A gave nothing for S1; B and C did and C scores best.
    scores = _scores({("S1.", "b1"): 0.3, ("S1.", "c1"): 0.7, ("S2.", "a2"): 0.5})
    row = select.choose(_item([[None, "b1", "c1"], ["a2", None, None]]), scores, NAMES, "best_of_k")
    assert row["translators"] == ["C", "A"]
    assert row["qe_score"] == pytest.approx(0.6)


def test_equal_scores_go_to_the_earlier_translator():
    scores = _scores(
        {("S1.", "a1"): 0.5, ("S1.", "b1"): 0.5, ("S2.", "a2"): 0.1, ("S2.", "b2"): 0.9}
    )
    row = select.choose(_item([["a1", "b1"], ["a2", "b2"]]), scores, NAMES, "best_of_k")
    assert row["translators"] == ["A", "B"]
    # only A's candidates count for naive: B's better S2 is ignored
    naive = select.choose(_item([["a1", "b1"], ["a2", "b2"]]), scores, NAMES, "naive")
    assert naive["translators"] == ["A", "A"] and naive["qe_score"] == pytest.approx(0.3)


def test_no_score_at_all_is_a_reject_with_its_reason():
    row = select.choose(_item([["a1", "b1"], ["a2", "b2"]]), {}, NAMES, "best_of_k")
    assert row == {"id": "p1", "reject": "no QE score for any sentence"}
    row = select.choose(_item([["a1"], [None]]), {}, NAMES, "best_of_k")
    assert row == {"id": "p1", "reject": "no valid translation for sentence 1"}


def test_candidates_not_aligned_with_sentences_are_an_error_not_a_shorter_passage():
    with pytest.raises(ValueError):
        select.choose(_item([["a1", "b1"]]), {}, NAMES, "best_of_k")


def test_a_passage_without_sentences_scores_zero_and_keeps_its_text():
    item = _item([], sentences=())
    item["segments"] = [{"text": "```code```", "translate": False}]
    row = select.choose(item, {}, NAMES, "best_of_k")
    assert row["qe_score"] == 0.0 and row["messages"][1]["content"] == "```code```"


def test_kept_rows_are_ranked_from_zero_best_first():
    rows = [{"id": f"r{i}", "qe_score": s} for i, s in enumerate([0.1, 0.9, 0.5, 0.9])]
    kept = select.filter_rows(rows, 0.75, "best_of_k", seed=1)
    assert [(r["id"], r["rank"]) for r in kept] == [("r1", 0), ("r3", 1), ("r2", 2)]
    # half of 5 rounds half up: 3 rows
    assert len(select.filter_rows(rows + [{"id": "r4", "qe_score": 0}], 0.5, "x", 1)) == 3


def test_qe_rating_is_the_probability_weighted_mean_of_the_digits():
    # P(3) = 0.5, P(5) = 0.5 (split over " 5" and "5"); "x" and "12" are not ratings
    lp = {"3": math.log(0.5), " 5": math.log(0.25), "5": math.log(0.25), "x": 0.0, "12": 0.0}
    score, reason = qe.parse_score(Completion(text="3", logprobs=[lp]))
    assert reason is None and score == pytest.approx(((3 * 0.5 + 5 * 0.5) - 1) / 4)
    # no digit among the logprobs: the text's digit
    assert qe.parse_score(Completion(text="Rating 2", logprobs=[{"x": 0.0}])) == (0.25, None)
    assert qe.parse_score(Completion(text="none")) == (None, "no 1-5 rating in QE answer")
    failed = Completion(error="timeout", failure="connection")
    assert qe.parse_score(failed) == (None, "backend error: timeout")


def test_qe_triples_are_unique_per_language_and_keyed_by_all_three():
    item = _item([["a1", "a1"], ["a2", None]])
    other = {**_item([["a1", "b1"], ["a2", "b2"]]), "lang": "fra"}
    assert qe.unique_triples([item, other]) == [
        ("S1.", "a1", "deu"),
        ("S2.", "a2", "deu"),
        ("S1.", "a1", "fra"),
        ("S1.", "b1", "fra"),
        ("S2.", "a2", "fra"),
        ("S2.", "b2", "fra"),
    ]
    with pytest.raises(ValueError):  # candidates not aligned with sentences: no silent cut
        qe.unique_triples([_item([["a1"]])])
    keys = {triple_key(*t) for t in [("s", "m", "deu"), ("s", "m", "fra"), ("m", "s", "deu")]}
    assert len(keys) == 3 and all(len(k) == 24 for k in keys)


class _Rater:
    """A judge role that rates 4 with certainty and records the prompts it got."""

    def __init__(self):
        self.prompts, self.kwargs, self.sent = [], None, []

    def sampling(self, **kwargs):
        self.kwargs = kwargs
        return kwargs

    def chat(self, convs, sampling):
        self.prompts += convs
        self.sent.append(sampling)
        return [Completion(text="4", logprobs=[{"4": 0.0}]) for _ in convs]


def test_llm_qe_asks_one_greedy_token_per_pair_in_the_target_language():
    rater = _Rater()
    scorer = qe.LLMQE(rater)
    out = scorer.score([("Hello.", "Hallo.", "deu"), ("Bye.", "Tschüss.", "deu")])
    assert out == [{"score": 0.75, "reject": None}, {"score": 0.75, "reject": None}]
    assert rater.kwargs == {"temperature": 0.0, "max_tokens": 1, "logprobs": qe.TOP_LOGPROBS}
    assert rater.sent == [rater.kwargs]  # the chat got that sampling, not the card's
    (turn,) = rater.prompts[0]
    assert turn["role"] == "user"
    assert "German" in turn["content"] and "Hello." in turn["content"]
    assert "Hallo." in turn["content"]


@pytest.mark.parametrize(
    "text",
    [
        "Plain line. Another one 123",  # a trailing piece with no letter stays literal
        "| a | b |\n|---|---|\n| one. | two |\n",
        "x" * 2000 + " tail.",  # one char past the limit is cut in pieces
    ],
)
def test_segments_join_back_and_digits_alone_are_not_translated(text):
    class Split:
        def split(self, t):
            return [t]

    segs = segment(text, Split())
    assert "".join(s["text"] for s in segs) == text
    assert all(any(c.isalpha() for c in s["text"]) for s in segs if s["translate"])
    same = reassemble(segs, [s["text"] for s in segs if s["translate"]])
    assert same == text

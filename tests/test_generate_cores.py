"""Pure cores of generation: parsing with rejects, language assignment, QE parsing, selection."""

import math

from xlexp.generate import qe, refine, reverse, select, translate
from xlexp.generate.qe import triple_key
from xlexp.generate.segment import PysbdSplitter
from xlexp.llm import Completion

PASSAGE = {"id": "p1", "text": "Honey is made by bees. It keeps for years."}


def test_reverse_parses_and_rejects_with_reasons():
    good = reverse.parse_one(PASSAGE, Completion(text='Question: "How do bees make honey?"'))
    assert good["question"] == "How do bees make honey?" and good["response"] == PASSAGE["text"]
    assert reverse.parse_one(PASSAGE, Completion(text="  ")) ["reject"] == "empty instruction"
    assert "copies" in reverse.parse_one(PASSAGE, Completion(text=PASSAGE["text"]))["reject"]
    assert "backend error" in reverse.parse_one(PASSAGE, Completion(error="429"))["reject"]
    prompts = reverse.build_prompts([PASSAGE])
    assert PASSAGE["text"] in prompts[0][0]["content"]


def test_refine_parses_fields_and_records_garbage():
    pair = {"id": "p1", "seed_id": "p1", "question": "Bees?", "response": PASSAGE["text"]}
    out = refine.parse_one(
        pair,
        Completion(
            text="**Question:** How is honey made?\n**Response:** Bees make honey. It keeps."
        ),
    )
    assert (
        out["question"] == "How is honey made?" and out["response"] == "Bees make honey. It keeps."
    )
    assert out["original_question"] == "Bees?"
    bad = refine.parse_one(pair, Completion(text="I cannot help with that."))
    assert bad["reject"] == "no 'Question:' / 'Response:' fields" and bad["raw"]
    short = refine.parse_one(pair, Completion(text="Question: Q?\nResponse: Hi."))
    assert "lost" in short["reject"]
    for criterion in (
        "self-sufficiency",
        "naturalness",
        "precision",
        "informativeness",
        "do not add knowledge",
    ):
        assert criterion in refine.build_prompts([pair])[0][0]["content"]


def test_language_assignment_is_balanced_seeded_and_suffixed():
    pairs = [{"id": f"p{i}", "question": f"Q{i}?", "response": "R."} for i in range(10)]
    items = translate.assign_languages(
        pairs, ["deu", "fra"], "one", ["Respond in {language}."], seed=1
    )
    assert [i["lang"] for i in items].count("deu") == 5
    assert items == translate.assign_languages(
        pairs, ["deu", "fra"], "one", ["Respond in {language}."], seed=1
    )
    assert items[0]["instruction"].endswith("Respond in German.") or items[0][
        "instruction"
    ].endswith("Respond in French.")
    every = translate.assign_languages(
        pairs, ["deu", "fra"], "all", ["Respond in {language}."], seed=1
    )
    assert len(every) == 20 and {i["id"] for i in every} >= {"p0-deu", "p0-fra"}


def test_translation_jobs_are_unique_and_parse_strips_labels():
    items = translate.assign_languages(
        [
            {"id": "a", "question": "Q", "response": "Same one. Same two."},
            {"id": "b", "question": "Q", "response": "Same one."},
        ],
        ["deu"],
        "one",
        ["Respond in {language}."],
        seed=1,
    )
    translate.add_segments(items, PysbdSplitter())
    assert translate.jobs(items) == [("Same one.", "deu"), ("Same two.", "deu")]
    assert translate.parse_one("Hello.", Completion(text='German: "Hallo."')) == ("Hallo.", None)
    assert translate.parse_one("Hello.", Completion(text="   ")) == (None, "empty translation")


def test_qe_score_from_logprobs_and_text():
    probs = {"1": math.log(0.1), "5": math.log(0.3), "I": math.log(0.6)}
    score, err = qe.parse_score(Completion(text="I", logprobs=[probs]))
    assert err is None and abs(score - ((0.1 * 1 + 0.3 * 5) / 0.4 - 1) / 4) < 1e-9
    assert qe.parse_score(Completion(text="Rating: 4")) == (0.75, None)
    assert qe.parse_score(Completion(text="good"))[0] is None


def _item(cands: list[list[str | None]], sentences=("S1.", "S2.")) -> dict:
    """A translated passage for `select.choose`: its sentences and each one's candidates."""
    return {
        "id": "x-deu",
        "seed_id": "x",
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


def test_best_of_k_picks_highest_qe_per_sentence():
    item = _item([["a1", "b1"], ["a2", "b2"]])
    scores = {triple_key("S1.", "a1", "deu"): 0.2, triple_key("S1.", "b1", "deu"): 0.9,
              triple_key("S2.", "a2", "deu"): 0.8, triple_key("S2.", "b2", "deu"): 0.1}
    row = select.choose(item, scores, ["A", "B"], "best_of_k")
    assert row["messages"][1]["content"] == "b1 a2"
    assert row["translators"] == ["B", "A"] and abs(row["qe_score"] - 0.85) < 1e-9
    naive = select.choose(item, scores, ["A", "B"], "naive")
    assert naive["messages"][1]["content"] == "a1 a2" and abs(naive["qe_score"] - 0.5) < 1e-9
    missing = select.choose(_item([[None, None], ["a2", "b2"]]), scores, ["A", "B"], "best_of_k")
    assert missing["reject"] == "no valid translation for sentence 0"


def test_filter_keeps_exactly_top_share_and_random_ignores_qe():
    rows = [{"id": f"r{i:02d}", "qe_score": i / 10} for i in range(10)]
    kept = select.filter_rows(rows, 0.8, "best_of_k", seed=1)
    assert [r["id"] for r in kept] == [f"r{i:02d}" for i in range(9, 1, -1)]
    rand = select.filter_rows(rows, 0.8, "random", seed=1)
    assert len(rand) == 8 and [r["id"] for r in rand] != [r["id"] for r in kept]
    assert rand == select.filter_rows(rows, 0.8, "random", seed=1)
    assert select.filter_rows(rows, 0.8, "random", seed=2) != rand


def test_unique_triples_dedup():
    items = [_item([["a1", "a1"], ["a2", None]]), _item([["a1", "b1"], ["a2", "b2"]])]
    triples = qe.unique_triples(items)
    assert sorted(triples) == sorted(
        [("S1.", "a1", "deu"), ("S2.", "a2", "deu"), ("S1.", "b1", "deu"), ("S2.", "b2", "deu")]
    )


def test_streamed_jobs_equal_the_job_list_and_are_yielded_before_all_items_are_split():
    pairs = [
        {"id": f"p{i}", "question": "Q", "response": f"First {i % 3}. Second {i}. Third."}
        for i in range(8)
    ]
    items = translate.assign_languages(
        pairs, ["deu", "fra"], "all", ["Respond in {language}."], seed=1
    )

    class CountingSplitter(PysbdSplitter):
        calls = 0

        def split(self, text: str) -> list[str]:
            CountingSplitter.calls += 1
            return super().split(text)

    splitter = CountingSplitter()
    stream = translate.stream_jobs(items, splitter)
    first = next(stream)
    assert CountingSplitter.calls == 1  # the first job came out after one passage was split
    streamed = [first, *stream]
    expected = translate.add_segments([dict(i, segments=None) for i in items], PysbdSplitter())
    assert streamed == translate.jobs(expected)
    assert [i["segments"] for i in items] == [i["segments"] for i in expected]

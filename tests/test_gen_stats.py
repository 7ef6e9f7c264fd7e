"""Generation stats on hand-made rows whose answers are worked out by hand."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from xlexp import track
from xlexp.config import Config, LLMConfig
from xlexp.generate import select
from xlexp.generate.qe import triple_key
from xlexp.generate.stats import flatten, generation_stats

NAMES = ["A", "B"]

STAGE_COUNTS = {
    "seed": {"read": 10, "too_short": 2, "too_long": 1, "duplicate": 1, "out": 6},
    "reverse": {"in": 6, "out": 5, "rejects": 1, "reject_reasons": {"empty instruction": 1}},
    "refine": {
        "in": 5,
        "out": 3,
        "rejects": 2,
        "reject_reasons": {"no 'Question:' / 'Response:' fields": 2},
    },
    "translate": {
        "items": 3,
        "sentence_jobs": 4,
        "translations": 8,
        "rejected_translations": {"B: empty translation": 2},
    },
    "qe": {"scored_pairs": 6, "failed": 1, "reject_reasons": {"no 1-5 rating in QE answer": 1}},
}


def item(item_id: str, lang: str, sentences: list[str], candidates: list[list[str | None]]) -> dict:
    segs = []
    for i, s in enumerate(sentences):
        segs += ([{"text": " ", "translate": False}] if i else []) + [
            {"text": s, "translate": True}
        ]
    return {
        "id": item_id,
        "seed_id": item_id,
        "lang": lang,
        "instruction": "Q? Respond in X.",
        "question": "Q?",
        "response": " ".join(sentences),
        "segments": segs,
        "sentences": sentences,
        "candidates": candidates,
    }


@pytest.fixture
def case():
    translations = [
        item("one", "deu", ["S1.", "S2."], [["a1", "b1"], ["a2", "b2"]]),
        item("two", "fra", ["T1."], [["c1", None]]),
        item("three", "deu", ["U1."], [[None, None]]),  # no translation at all: a select reject
    ]
    scores = {
        triple_key("S1.", "a1", "deu"): 0.2, triple_key("S1.", "b1", "deu"): 0.9,
        triple_key("S2.", "a2", "deu"): 0.8, triple_key("S2.", "b2", "deu"): 0.3,
        triple_key("T1.", "c1", "fra"): 0.5,
    }
    chosen = [select.choose(t, scores, NAMES, "best_of_k") for t in translations]
    ok = [r for r in chosen if "reject" not in r]
    kept = select.filter_rows(ok, 0.5, "best_of_k", seed=1)
    return translations, scores, chosen, kept


def test_stats_on_hand_made_rows(case):
    translations, scores, chosen, kept = case
    stats = generation_stats(STAGE_COUNTS, translations, scores, chosen, kept, NAMES)
    # "one" picks b1 (0.9) and a2 (0.8): 0.85; "two" has only c1: 0.5; keep 0.5 of 2 rows -> "one".
    assert [r["id"] for r in kept] == ["one"]
    assert stats["rows"] == 1 and stats["rows_by_lang"] == {"deu": 1}
    assert stats["mean_qe_by_lang"] == {"deu": pytest.approx(0.85)}
    assert stats["mean_qe_by_lang_before_filter"] == {
        "deu": pytest.approx(0.85),
        "fra": pytest.approx(0.5),
    }
    # Every scored candidate counts: A = (0.2 + 0.8 + 0.5) / 3, B = (0.9 + 0.3) / 2.
    assert stats["mean_qe_by_translator"] == {"A": pytest.approx(0.5), "B": pytest.approx(0.6)}
    assert stats["mean_qe_by_translator_lang"] == {
        "A": {"deu": pytest.approx(0.5), "fra": pytest.approx(0.5)},
        "B": {"deu": pytest.approx(0.6)},
    }
    assert stats["translator_wins"] == {"A": 2, "B": 1}  # a2 and c1; b1
    assert stats["translator_win_share"] == {"A": pytest.approx(2 / 3), "B": pytest.approx(1 / 3)}
    assert stats["translator_wins_kept"] == {"A": 1, "B": 1}

    stages = stats["stages"]
    assert list(stages) == ["seed", "reverse", "refine", "translate", "qe", "select"]
    assert stages["seed"] == {
        "in": 10,
        "out": 6,
        "rejects": 4,
        "reject_reasons": {"too_short": 2, "too_long": 1, "duplicate": 1},
    }
    assert stages["reverse"] == {
        "in": 6,
        "out": 5,
        "rejects": 1,
        "reject_reasons": {"empty instruction": 1},
    }
    assert stages["refine"]["rejects"] == 2 and stages["refine"]["out"] == 3
    assert (
        stages["translate"]["reject_reasons"] == {"B: empty translation": 2}
        and stages["translate"]["rejects"] == 2
    )
    assert stages["qe"] == {
        "in": 6,
        "out": 5,
        "rejects": 1,
        "reject_reasons": {"no 1-5 rating in QE answer": 1},
    }
    assert stages["select"] == {
        "in": 3,
        "out": 1,
        "before_filter": 2,
        "dropped_by_qe_filter": 1,
        "rejects": 1,
        "reject_reasons": {"no valid translation": 1},
    }


def test_naive_selection_credits_only_the_first_translator(case):
    translations, scores, _, _ = case
    chosen = [select.choose(t, scores, NAMES, "naive") for t in translations]
    stats = generation_stats(
        {}, translations, scores, chosen, [r for r in chosen if "reject" not in r], NAMES
    )
    assert stats["translator_wins"] == {"A": 3, "B": 0}
    assert stats["mean_qe_by_lang"] == {
        "deu": pytest.approx(0.5),
        "fra": pytest.approx(0.5),
    }  # (0.2 + 0.8) / 2
    assert list(stats["stages"]) == ["select"]  # no upstream counts given: only what select saw


def test_flatten_keeps_numbers_only(case):
    stats = generation_stats(STAGE_COUNTS, *case, NAMES)
    flat = flatten(stats)
    assert flat["generate/stats/stages/seed/out"] == 6
    assert flat["generate/stats/stages/reverse/reject_reasons/empty instruction"] == 1
    assert flat["generate/stats/translator_wins/A"] == 2
    assert all(isinstance(v, int | float) for v in flat.values())


def test_stats_reach_an_offline_wandb_run(case, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_DISABLED", raising=False)
    card = LLMConfig(name="m", backend="hf", model="x")
    cfg = OmegaConf.structured(Config(teacher=card, model=card, judge=card, reference=card))
    cfg.logger.kind = "wandb"
    tracker = track.start(cfg, tmp_path)
    tracker.log_values(flatten(generation_stats(STAGE_COUNTS, *case, NAMES)))
    tracker.finish({"seconds": 1.0, "backend_calls": 0})
    wanted = (b"generate/stats/mean_qe_by_translator/B", b"generate/stats/stages/qe/rejects")
    # wandb-core may still be flushing the .wandb file when finish() returns: wait for it a little.
    deadline = time.time() + 20
    while True:
        blob = b"".join(p.read_bytes() for p in Path(tmp_path, "wandb").rglob("*.wandb"))
        if all(w in blob for w in wanted) or time.time() > deadline:
            break
        time.sleep(0.2)
    assert all(w in blob for w in wanted)

"""CometKiwi QE offline: a tiny UnifiedMetric checkpoint in COMET's on-disk layout (comet_tiny)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from comet_tiny import PAIRS as ALL_PAIRS
from comet_tiny import build_tiny_kiwi

from xlexp.generate import qe


@pytest.fixture(scope="module")
def kiwi_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_kiwi(tmp_path_factory.mktemp("kiwi"))


PAIRS = ALL_PAIRS[:3]


def test_comet_qe_scores_each_pair_deterministically(kiwi_dir: Path) -> None:
    scorer = qe.CometQE(str(kiwi_dir), batch_size=2)
    first = scorer.score_pairs(PAIRS)
    assert len(first) == len(PAIRS)
    assert all(isinstance(s, float) and math.isfinite(s) for s in first)
    assert len(set(first)) > 1  # the pairs are scored individually, not one shared value
    assert scorer.score_pairs(PAIRS) == pytest.approx(first, abs=1e-6)
    assert scorer.score_pairs(PAIRS[1:2]) == pytest.approx(first[1:2], abs=1e-5)  # no batch effects
    # The checkpoint file path works too.
    assert qe.CometQE(str(kiwi_dir / "checkpoints" / "model.ckpt")).score_pairs(
        PAIRS[:1]
    ) == pytest.approx(first[:1], abs=1e-5)


def test_offline_hub_name_says_how_to_fix() -> None:
    with pytest.raises(RuntimeError, match=r"qe\.model") as err:
        qe.CometQE("Unbabel/no-such-cometkiwi-model")
    assert "HF_TOKEN" in str(err.value)


def test_qe_stage_scores_each_unique_pair_once(kiwi_dir, tmp_path, monkeypatch) -> None:
    from comet.models.base import CometModel
    from omegaconf import OmegaConf

    from xlexp.config import Config
    from xlexp.generate.stage import run_qe
    from xlexp.roles import Models
    from xlexp.store import Store, write_jsonl

    seen: list[list[tuple[str, str]]] = []  # what reaches the COMET model, per predict() call
    real_predict = CometModel.predict

    def counting_predict(self: CometModel, samples: list[dict], *args, **kwargs):
        seen.append([(x["src"], x["mt"]) for x in samples])
        return real_predict(self, samples, *args, **kwargs)

    monkeypatch.setattr(CometModel, "predict", counting_predict)
    cfg = OmegaConf.structured(Config)
    cfg.qe.kind, cfg.qe.model, cfg.qe.batch_size = "comet", str(kiwi_dir), 2
    cfg.generate.batch_size = 1  # 4 triples per part: the 6 unique triples take two calls
    items = [  # two translators per sentence; repeats and a failed (None) candidate
        {
            "lang": "deu",
            "sentences": [PAIRS[0][0], PAIRS[2][0]],
            "candidates": [[PAIRS[0][1], PAIRS[0][1]], [PAIRS[2][1], None]],
        },
        {"lang": "deu", "sentences": [PAIRS[0][0]], "candidates": [[PAIRS[0][1], "Der Fuchs."]]},
        {
            "lang": "fra",
            "sentences": [PAIRS[0][0], PAIRS[1][0]],
            "candidates": [[PAIRS[0][1], PAIRS[0][1]], [PAIRS[1][1], "Écris un poème."]],
        },
    ]
    store = Store(tmp_path / "store")
    translations = store.build(
        "translate", "t" * 16, lambda work, parts: write_jsonl(work / "rows.jsonl", items)
    )[0]

    scores = run_qe(cfg, store, Models(store), translations)
    scored = [p for call in seen for p in call]
    assert len(seen) == 2 and len(scored) == len(set(scored)) == 5
    rows = scores.rows()
    assert [(r["source"], r["translation"], r["lang"]) for r in rows] == qe.unique_triples(items)
    assert len(rows) == 6 and {(r["source"], r["translation"]) for r in rows} == set(scored)
    assert all(isinstance(r["score"], float) and r["reject"] is None for r in rows)
    # The same (src, mt) in two languages: two triples, one COMET input (same part), one score.
    by_lang = {r["lang"]: r["score"] for r in rows if (r["source"], r["translation"]) == PAIRS[0]}
    assert by_lang["deu"] == by_lang["fra"]

    assert run_qe(cfg, store, Models(store), translations).key == scores.key
    assert len(seen) == 2  # stored: a rerun scores nothing

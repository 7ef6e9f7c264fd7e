"""COMET on this stack scores like it did on transformers 4.57 (scores stored from that stack).

The checkpoints (tests/comet_tiny.py) are built from fixed vocabularies and seeded weights, so they
are byte-for-byte the same files on both stacks; the scores below were computed from them with
transformers 4.57.6, torch 2.13.0, unbabel-comet 2.2.7 as released.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from comet_tiny import PAIRS, build_tiny_kiwi

from xlexp.generate import qe
from xlexp.generate.comet_compat import patch_comet

# CometQE(...).score(PAIRS) (now score_pairs) on transformers 4.57.6 (no compatibility patch needed
# there).
EXPECTED_KIWI = [
    0.22468411922454834,
    0.220179945230484,
    0.23614439368247986,
    0.22103628516197205,
    0.23337861895561218,
    0.2176544964313507,
]
EXPECTED_KIWI_XL = [
    0.16796547174453735,
    0.1786099076271057,
    0.17841899394989014,
    0.1801154613494873,
    0.16966217756271362,
    0.1716478168964386,
]
# The tokenizer's pair encoding of PAIRS[1] on 4.57: <s> src </s></s> mt </s>.
EXPECTED_PAIR_IDS = [0, 20, 4, 96, 61, 52, 21, 65, 60, 80, 2, 2, 76, 68, 32, 53, 64, 45, 49, 80, 2]


@pytest.mark.parametrize(("xl", "expected"), [(False, EXPECTED_KIWI), (True, EXPECTED_KIWI_XL)])
def test_cometkiwi_scores_equal_the_transformers4_scores(
    tmp_path: Path, xl: bool, expected: list[float]
) -> None:
    root = build_tiny_kiwi(tmp_path / "kiwi", xl=xl)
    scorer = qe.CometQE(str(root), batch_size=4)
    # The hparams pick the encoder class (the XL one inherits the patched forward).
    assert type(scorer.model.encoder).__name__ == ("XLMRXLEncoder" if xl else "XLMREncoder")
    assert scorer.score_pairs(PAIRS) == pytest.approx(expected, abs=1e-6)


def test_pair_layout_is_xlmr(tmp_path: Path) -> None:
    """What comet builds from a (src, mt) pair is what the tokenizer's own pair template gives."""
    from comet.encoders.xlmr import XLMREncoder
    from transformers import AutoTokenizer

    patch_comet()
    root = build_tiny_kiwi(tmp_path / "kiwi")
    tok = AutoTokenizer.from_pretrained(root / "encoder")
    src, mt = PAIRS[1]
    assert tok(src, mt)["input_ids"] == EXPECTED_PAIR_IDS
    encoder = XLMREncoder(str(root / "encoder"), load_pretrained_weights=False)
    src_ids, mt_ids = tok(src)["input_ids"], tok(mt)["input_ids"]
    assert encoder.tokenizer.build_inputs_with_special_tokens(src_ids[1:-1], mt_ids[1:-1]) == (
        EXPECTED_PAIR_IDS
    )


def test_patch_is_applied_once() -> None:
    patch_comet()
    assert patch_comet() is False

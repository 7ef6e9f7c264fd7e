"""SaT (wtpsplit) splitter, offline: a tiny random SubwordXLM model and tokenizer built here."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from xlexp.config import SplitterConfig
from xlexp.generate.segment import make_splitter, reassemble, segment, sentences

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Le renard brun rapide saute par-dessus le chien paresseux.",
    "Write a short poem about the sea, then explain its meter.",
    "Dr. Smith arrived at 5 p.m. and left, e.g. before dinner!",
    "Is this a question? Yes. It is: a list, a code block and a URL.",
    "1. First item\n2. Second item\n- bullet\n# Heading",
]


def build_xlmr_tokenizer(out_dir: Path, vocab_size: int = 300) -> Path:
    """An XLM-R style fast tokenizer (sentencepiece unigram; <s> </s> <pad> <unk> <mask>)."""
    from tokenizers import SentencePieceUnigramTokenizer
    from transformers import XLMRobertaTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    sp = SentencePieceUnigramTokenizer()
    sp.train_from_iterator(
        CORPUS * 20, vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>"
    )
    tok = XLMRobertaTokenizerFast(
        tokenizer_object=sp,
        bos_token="<s>",
        eos_token="</s>",
        cls_token="<s>",
        sep_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
    )
    tok.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def sat_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from wtpsplit.configs import SubwordXLMConfig
    from wtpsplit.models import SubwordXLMForTokenClassification

    out = build_xlmr_tokenizer(tmp_path_factory.mktemp("sat"))
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    torch.manual_seed(0)
    config = SubwordXLMConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=514,
        num_labels=1,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    SubwordXLMForTokenClassification(config).save_pretrained(out)
    return out


def _cfg(model: str, tokenizer: str | None, threshold: float | None):
    return OmegaConf.structured(
        SplitterConfig(kind="sat", model=model, tokenizer=tokenizer, threshold=threshold)
    )


TEXTS = [
    "# Title\n\nThe sea is wide. It is deep, e.g. very deep!\n\n- one point. Two points?\n"
    "  * nested bullet here\n1. First step. Then more.\n\n```python\nprint('x. y.')\n```\n"
    "See https://example.com/a.b for more.\nLast line without newline",
    "> Quoted  text. Another\u00a0sentence.  Two  spaces.\r\n\r\n"
    "## Ünïcödé heading\n\tIndented line. Done.\n\n\n",
]


@pytest.mark.parametrize("threshold", [0.0, 0.5, 1.0])
def test_sat_splits_and_round_trips(sat_dir: Path, threshold: float) -> None:
    splitter = make_splitter(_cfg(str(sat_dir), str(sat_dir), threshold))
    parts = splitter.split("The sea is wide. It is deep. Come back soon!")
    assert isinstance(parts, list) and parts and all(isinstance(p, str) for p in parts)
    # Boundaries are arbitrary with random weights, but no text may get lost.
    assert "".join(parts).replace(" ", "") == "Theseaiswide.Itisdeep.Comebacksoon!"
    if threshold == 0.0:  # every position over the threshold: many pieces
        assert len(parts) > 1
    for text in TEXTS:
        segs = segment(text, splitter)
        assert "".join(s["text"] for s in segs) == text
        ident = sentences(segs)
        assert reassemble(segs, ident) == text
        assert "print('x. y.')" not in sentences(segs)  # code stays literal


def test_tokenizer_defaults_to_model_dir(sat_dir: Path) -> None:
    """A local model dir that holds its tokenizer needs no splitter.tokenizer (offline)."""
    splitter = make_splitter(_cfg(str(sat_dir), None, 0.5))
    assert "".join(splitter.split("One. Two.")).replace(" ", "") == "One.Two."


def test_offline_hub_name_names_the_config_key() -> None:
    with pytest.raises(RuntimeError, match=r"splitter\.model"):
        make_splitter(_cfg("sat-3l-sm", None, None))

"""Tiny CometKiwi checkpoints built like the real ones, identical on every transformers version.

The real `Unbabel/wmt22-cometkiwi-da` (XLM-R encoder) and `wmt23-cometkiwi-da-xl` (XLM-R XL
encoder) ship a `hparams.yaml`, `checkpoints/model.ckpt` and name a hub encoder whose tokenizer is
a sentencepiece unigram `tokenizer.json` with XLM-R's `<s> A </s></s> B </s>` template. Here the
tokenizer has a fixed hand-written vocabulary (no training, so no tokenizers-version drift) and
every weight is drawn from a seeded generator by parameter name (not by transformers' init code,
which changes between releases): the same files, and so the same scores, on transformers 4 and 5.
That is what lets a test compare COMET scores on today's stack with scores stored from the old one.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

# wmt22-cometkiwi-da's hparams.yaml, shrunk: the encoder (a local dir instead of
# microsoft/infoxlm-large) and the estimator's hidden sizes are tiny.
KIWI_HPARAMS = {
    "activations": "Tanh",
    "batch_size": 16,
    "class_identifier": "unified_metric",
    "dropout": 0.1,
    "encoder_learning_rate": 1.0e-06,
    "encoder_model": "XLM-RoBERTa",
    "final_activation": None,
    "hidden_sizes": [16, 8],
    "input_segments": ["mt", "src"],
    "keep_embeddings_frozen": True,
    "layer_transformation": "sparsemax",
    "layerwise_decay": 0.95,
    "learning_rate": 1.5e-05,
    "loss": "mse",
    "nr_frozen_epochs": 0.3,
    "optimizer": "AdamW",
    "sent_layer": "mix",
    "warmup_steps": 0,
    "word_layer": 1,
    "word_level_training": False,
}

# Source/translation pairs the expected scores were computed on (German, French, Chinese, a
# wrong-language and an off-topic translation, one long enough to be cut by nothing).
PAIRS = [
    (
        "The quick brown fox jumps over the lazy dog.",
        "Der schnelle braune Fuchs springt über den faulen Hund.",
    ),
    ("Write a short poem about the sea.", "Écris un court poème sur la mer."),
    ("Is this a question?", "Ist das eine Frage?"),
    ("Write a short poem about the sea.", "Le renard brun rapide saute."),
    ("Explain why the sky is blue.", "解释为什么天空是蓝色的。"),
    (
        "Dr. Smith arrived at 5 p.m. and left before dinner, because the meeting was over.",
        "Dr. Smith kam um 17 Uhr an und ging vor dem Abendessen, weil das Treffen vorbei war.",
    ),
]

_WORDS = sorted(
    {w.strip(".,?!:;。") for pair in PAIRS for text in pair for w in text.split()} - {""}
)
_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]


def _vocab() -> list[tuple[str, float]]:
    """Specials, whole words (likelier), then single characters: a fixed unigram vocabulary."""
    chars = sorted({c for pair in PAIRS for text in pair for c in text if not c.isspace()})
    words = [(f"\u2581{w}", -5.0 - 0.01 * i) for i, w in enumerate(_WORDS) if len(w) > 1]
    singles = [(c, -9.0 - 0.01 * i) for i, c in enumerate(chars)]
    return [(s, 0.0) for s in _SPECIALS] + [("\u2581", -3.0)] + words + singles + [("<mask>", 0.0)]


def write_xlmr_tokenizer(out: Path) -> None:
    """`tokenizer.json` + config files as on the hub's xlm-roberta repos (unigram, Metaspace)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = _vocab()
    tok = Tokenizer(models.Unigram(vocab, unk_id=3, byte_fallback=False))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    mask_id = len(vocab) - 1
    tok.add_special_tokens(_SPECIALS + ["<mask>"])
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "XLMRobertaTokenizer",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "cls_token": "<s>",
                "sep_token": "</s>",
                "pad_token": "<pad>",
                "unk_token": "<unk>",
                "mask_token": "<mask>",
                "model_max_length": 512,
            }
        )
    )
    assert tok.token_to_id("<mask>") == mask_id


def _fill_weights(model, seed: int) -> None:
    """Every float parameter from a generator seeded per name: layer norms near 1, rest small."""
    import torch

    with torch.no_grad():
        for i, (name, param) in enumerate(sorted(model.named_parameters())):
            gen = torch.Generator().manual_seed(seed * 100_003 + i)
            noise = torch.randn(param.shape, generator=gen, dtype=torch.float64)
            if "LayerNorm" in name or "layer_norm" in name or name.endswith("norm.weight"):
                value = 1.0 + 0.1 * noise if name.endswith("weight") else 0.02 * noise
            else:
                value = 0.2 * noise
            param.copy_(value.to(param.dtype))


def build_tiny_kiwi(root: Path, xl: bool = False, seed: int = 0) -> Path:
    """`root/hparams.yaml` + `root/checkpoints/model.ckpt`, as download_model leaves them."""
    import torch
    from comet.models import UnifiedMetric

    enc = root / "encoder"
    write_xlmr_tokenizer(enc)
    vocab_size = len(_vocab())
    common = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=514,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        type_vocab_size=1,
    )
    if xl:
        from transformers import XLMRobertaXLConfig

        XLMRobertaXLConfig(**common).save_pretrained(enc)
    else:
        from transformers import XLMRobertaConfig

        XLMRobertaConfig(**common).save_pretrained(enc)
    hparams = {
        **KIWI_HPARAMS,
        "encoder_model": "XLM-RoBERTa-XL" if xl else "XLM-RoBERTa",
        "pretrained_model": str(enc),
    }
    init = {k: v for k, v in hparams.items() if k != "class_identifier"}
    model = UnifiedMetric(**init, load_pretrained_weights=False)
    _fill_weights(model, seed)
    (root / "checkpoints").mkdir(parents=True, exist_ok=True)
    (root / "hparams.yaml").write_text(yaml.safe_dump(hparams))
    torch.save(
        {
            "state_dict": model.state_dict(),
            "hyper_parameters": dict(model.hparams),
            "pytorch-lightning_version": "2.6.6",
        },
        root / "checkpoints" / "model.ckpt",
    )
    return root

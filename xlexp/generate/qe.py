"""Stage 4a, quality estimation (paper 4.4): one score in [0, 1] per unique (source, translation).

Scorers are found by `qe.kind` in `SCORERS`. Two are built in: CometKiwi through unbabel-comet (the
paper's), and an LLM-prompted, GEMBA-style scorer through the backend protocol that runs offline:
the expected 1-5 rating under the judge's first-token distribution over the digits
(probability-weighted, as G-Eval), rescaled to [0, 1]; the parsed digit when the backend gives no
logprobs.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from xlexp import langs
from xlexp.errors import ConfigError
from xlexp.generate import prompt
from xlexp.llm import Completion, Conversation
from xlexp.registry import Registry
from xlexp.store import digest

# qe.kind -> a scorer class: check(cfg, runs), key_info(cfg), from_config(cfg, models),
# score(triples) -> [{"score": float | None, "reject": str | None}]
SCORERS: Registry[Any] = Registry("QE scorer")

DIGITS = "12345"
TOP_LOGPROBS = 20


def build_prompts(triples: list[tuple[str, str, str]]) -> list[Conversation]:
    template = prompt("qe")
    return [
        [
            {
                "role": "user",
                "content": template.format(language=langs.name(code), source=src, translation=mt),
            }
        ]
        for src, mt, code in triples
    ]


def parse_score(completion: Completion) -> tuple[float | None, str | None]:
    if not completion.ok:
        return None, f"backend error: {completion.error}"
    if completion.logprobs:
        first = completion.logprobs[0]
        probs: dict[int, float] = {}
        for token, lp in first.items():
            t = token.strip()
            if len(t) == 1 and t in DIGITS:
                probs[int(t)] = probs.get(int(t), 0.0) + math.exp(lp)
        if probs:
            total = sum(probs.values())
            expected = sum(d * p for d, p in probs.items()) / total
            return (expected - 1) / 4, None
    m = re.search(r"[1-5]", completion.text)
    if m:
        return (int(m.group()) - 1) / 4, None
    return None, "no 1-5 rating in QE answer"


@SCORERS.register("llm")
class LLMQE:
    """GEMBA-style rating by the `qe.llm` card through the backend protocol (offline-capable)."""

    def __init__(self, model: Any):
        self.model = model
        self.sampling = model.sampling(temperature=0.0, max_tokens=1, logprobs=TOP_LOGPROBS)

    @classmethod
    def check(cls, cfg: Any, runs: bool) -> None:
        """The card is checked with the other roles (`qe.llm`)."""

    @classmethod
    def key_info(cls, cfg: Any) -> dict:
        from xlexp.llm.card import card_key

        return {
            "kind": cfg.kind,
            "model": None,
            "llm": card_key(cfg.llm),
            "prompt": digest(prompt("qe")),
        }

    @classmethod
    def from_config(cls, cfg: Any, models: Any) -> LLMQE:
        return cls(models.role("qe", cfg.llm))

    def score(self, triples: list[tuple[str, str, str]]) -> list[dict]:
        comps = self.model.chat(build_prompts(triples), self.sampling)
        return [{"score": score, "reject": why} for score, why in map(parse_score, comps)]


@SCORERS.register("comet")
class CometQE:
    """CometKiwi (reference-free) via unbabel-comet; each unique pair is scored once."""

    def __init__(self, model: str, batch_size: int = 16):
        from comet import download_model, load_from_checkpoint

        from xlexp.generate.comet_compat import patch_comet

        patch_comet()
        path = Path(model)
        if (path / "checkpoints" / "model.ckpt").exists():
            ckpt = path / "checkpoints" / "model.ckpt"
        elif path.suffix == ".ckpt" and path.exists():
            ckpt = path
        else:
            try:
                ckpt = Path(download_model(model))
            except Exception as e:  # gated model, no token, or offline
                raise RuntimeError(
                    f"qe.model: cannot get COMET model {model!r} ({type(e).__name__}: {e}). "
                    "CometKiwi is gated on the HF hub: accept its licence and set HF_TOKEN, "
                    "or point qe.model at a local checkpoint dir."
                ) from e
        self.model = load_from_checkpoint(str(ckpt))
        self.batch_size = batch_size

    @classmethod
    def check(cls, cfg: Any, runs: bool) -> None:
        import importlib.util

        if runs and importlib.util.find_spec("comet") is None:
            raise ConfigError(
                "qe.kind",
                "comet QE needs unbabel-comet installed: "
                "pip install --no-deps unbabel-comet==2.2.7 (README)",
            )

    @classmethod
    def key_info(cls, cfg: Any) -> dict:
        return {"kind": cfg.kind, "model": cfg.model}

    @classmethod
    def from_config(cls, cfg: Any, models: Any) -> CometQE:
        return cls(cfg.model, cfg.batch_size)

    def score(self, triples: list[tuple[str, str, str]]) -> list[dict]:
        return [
            {"score": s, "reject": None} for s in self.score_pairs([(s, t) for s, t, _ in triples])
        ]

    def score_pairs(self, pairs: list[tuple[str, str]]) -> list[float]:
        import torch

        # CometKiwi sees no language: a pair repeated across languages is scored once.
        unique = list(dict.fromkeys((s, t) for s, t in pairs))
        if not unique:
            return []
        data = [{"src": s, "mt": t} for s, t in unique]
        gpus = 1 if torch.cuda.is_available() else 0
        out = self.model.predict(data, batch_size=self.batch_size, gpus=gpus, progress_bar=False)
        score_of = dict(zip(unique, (float(s) for s in out.scores), strict=True))
        return [score_of[(s, t)] for s, t in pairs]


def unique_triples(items: list[dict]) -> list[tuple[str, str, str]]:
    """Unique (source, translation, lang) over every candidate of every item."""
    triples = (
        (src, mt, item["lang"])
        for item in items
        for src, cands in zip(item["sentences"], item["candidates"], strict=True)
        for mt in cands
        if mt is not None
    )
    return list(dict.fromkeys(triples))  # first-seen order


def triple_key(src: str, mt: str, lang: str) -> str:
    return digest([src, mt, lang], n=24)

"""Seed passages: the shipped demo corpus or a local JSONL file; length bounds, dedup, sampling."""

from __future__ import annotations

import json
import random
from importlib import resources
from typing import Any


def _read_jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def load_rows(cfg: Any) -> list[dict]:
    if cfg.source == "demo":
        return _read_jsonl(resources.files("xlexp").joinpath("data", "demo_seed.jsonl").read_text())
    with open(cfg.path) as f:
        return _read_jsonl(f.read())


def select(rows: list[dict], cfg: Any, seed: int) -> list[dict]:
    """Passages within the length bounds, deduplicated, `cfg.n` of them sampled with `seed`."""
    seen: set[str] = set()
    kept = []
    for i, row in enumerate(rows):
        text = str(row.get(cfg.text_field, "")).strip()
        norm = " ".join(text.lower().split())
        if not (cfg.min_chars <= len(text) <= cfg.max_chars) or norm in seen:
            continue
        seen.add(norm)
        kept.append({"id": str(row.get("id", f"seed-{i:07d}")), "text": text})
    if len(kept) > cfg.n:
        kept = random.Random(seed).sample(kept, cfg.n)
    return sorted(kept, key=lambda r: r["id"])

"""Seed passages (paper section 4): English text from the shipped demo corpus, a local JSONL or
Parquet file, or a hub dataset streamed with `datasets` (CulturaX English in the paper).

`stream` is the I/O: rows in a seeded random order (a full shuffle for the small demo corpus, a
seeded shuffle buffer for streamed files and hub datasets, which never load whole). `take` is the
pure core: walk that stream and keep passages until `n` pass the length bounds and dedup, so a
corpus of millions is read only as far as needed (oversampling exactly as much as the filters
reject), bounded by `max_read`.
"""

from __future__ import annotations

import glob
import json
import os
import random
from collections.abc import Iterable, Iterator
from importlib import resources
from typing import Any

from xlexp.store import digest

LOCAL_BUILDERS = {"jsonl": "json", "parquet": "parquet"}  # source -> `datasets` packaged builder
SOURCES = ("demo", *LOCAL_BUILDERS, "hf")


def _read_jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def load_rows(cfg: Any) -> list[dict]:
    """Every row of the demo corpus or of a local JSONL file, in file order (small inputs only)."""
    if cfg.source == "demo":
        return _read_jsonl(resources.files("xlexp").joinpath("data", "demo_seed.jsonl").read_text())
    with open(cfg.path) as f:
        return _read_jsonl(f.read())


def local_files(path: str | None) -> list[str]:
    """The files a `seed_data.path` (a file or a glob) names, sorted."""
    return sorted(glob.glob(os.path.expanduser(path))) if path else []


def hf_token() -> str | None:
    """HF_TOKEN, or the token `huggingface-cli login` stored."""
    from huggingface_hub import get_token

    return os.environ.get("HF_TOKEN") or get_token()


def fingerprint(cfg: Any) -> list | None:
    """What identifies a local corpus beyond its path (size, mtime), so an edited file is re-read."""
    if cfg.source not in LOCAL_BUILDERS:
        return None
    return [[f, os.path.getsize(f), int(os.path.getmtime(f))] for f in local_files(cfg.path)]


def stream(cfg: Any, seed: int) -> Iterable[dict]:
    """Rows of the configured corpus in a seeded random order; hub and file sources stream."""
    if cfg.source == "demo":
        rows = load_rows(cfg)
        random.Random(seed).shuffle(rows)
        return rows
    import datasets

    if cfg.source in LOCAL_BUILDERS:
        files = local_files(cfg.path)
        if not files:
            raise FileNotFoundError(f"seed_data.path: no file matches {cfg.path!r}")
        try:
            ds = datasets.load_dataset(LOCAL_BUILDERS[cfg.source], data_files=files, split="train", streaming=True)
        except Exception as e:  # not JSONL / not Parquet, unreadable
            raise RuntimeError(f"seed_data.path: cannot read {cfg.path!r} as {cfg.source} ({type(e).__name__}: {e})") from e
    elif cfg.source == "hf":
        ds = _open_hub(cfg)
    else:
        raise ValueError(f"seed_data.source: unknown source {cfg.source!r} ({', '.join(SOURCES)})")
    return _named_errors(ds.shuffle(seed=seed, buffer_size=cfg.shuffle_buffer), cfg)


def _named_errors(rows: Iterable[dict], cfg: Any) -> Iterator[dict]:
    """A stream that fails later (a bad file among many, the hub dropping mid-read) names the key."""
    key, what = ("seed_data.name", cfg.name) if cfg.source == "hf" else ("seed_data.path", cfg.path)
    try:
        yield from rows
    except Exception as e:
        raise RuntimeError(f"{key}: reading {what!r} failed midway ({type(e).__name__}: {e})") from e


def _open_hub(cfg: Any) -> Any:
    import datasets

    try:
        return datasets.load_dataset(cfg.name, cfg.config, split=cfg.split, streaming=True, token=hf_token())
    except Exception as e:  # offline, unreachable, gated without access, unknown name/config
        raise RuntimeError(
            f"seed_data.name: cannot stream {cfg.name!r} (config {cfg.config!r}, split {cfg.split!r}) from the "
            f"HF hub ({type(e).__name__}: {e}). "
            + ("It is gated: accept its terms on the hub and set HF_TOKEN. " if cfg.gated else "")
            + "Offline, use seed_data=jsonl or seed_data=parquet with a local copy (seed_data.path)."
        ) from e


def passage_id(row: dict, text: str, id_field: str) -> str:
    """The row's own id, else one derived from the text (stable whatever the stream order)."""
    value = row.get(id_field)
    return str(value) if value not in (None, "") else f"seed-{digest(text, n=12)}"


def take(rows: Iterable[dict], cfg: Any) -> tuple[list[dict], dict]:
    """The first `cfg.n` rows that pass the length bounds and dedup, sorted by id, plus counts.

    Stops after `cfg.max_read` rows (None: no bound) so a wrong bound cannot read a whole hub
    corpus. Dedup is on case- and whitespace-normalised text.
    """
    counts = {"read": 0, "too_short": 0, "too_long": 0, "duplicate": 0}
    seen: set[str] = set()
    kept: list[dict] = []
    rows_iter: Iterator[dict] = iter(rows)
    max_read = getattr(cfg, "max_read", None)
    while len(kept) < cfg.n and (max_read is None or counts["read"] < max_read):
        try:
            row = next(rows_iter)
        except StopIteration:
            break
        counts["read"] += 1
        text = str(row.get(cfg.text_field) or "").strip()
        if len(text) < cfg.min_chars:
            counts["too_short"] += 1
            continue
        if len(text) > cfg.max_chars:
            counts["too_long"] += 1
            continue
        norm = " ".join(text.lower().split())
        if norm in seen:
            counts["duplicate"] += 1
            continue
        seen.add(norm)
        kept.append({"id": passage_id(row, text, getattr(cfg, "id_field", "id")), "text": text})
    counts["out"] = len(kept)
    return sorted(kept, key=lambda r: r["id"]), counts


def select(rows: list[dict], cfg: Any, seed: int) -> list[dict]:
    """`cfg.n` passages of an in-memory list: a seeded shuffle, then `take`."""
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    return take(shuffled, cfg)[0]

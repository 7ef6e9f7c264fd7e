"""The store-reading helpers every part of the view shares: artifacts, their DONE, their rows.

Everything the view reads goes through these: a missing artifact, file or field becomes a note
in the section that needed it (the page says what it could not show), never an exception that
loses the rest of the page.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from xlexp.store import Artifact, Store, read_jsonl


def clean(value: Any) -> Any:
    """NaN and infinities as None (JSON has no NaN; a table cell shows them as absent)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


def _artifact(store: Store, stage: str, key: str | None, notes: list[str]) -> Artifact | None:
    if not key:
        return None
    art = store.get(stage, key)
    if art is None:
        notes.append(
            f"{stage} artifact {key} is not in the store {store.root} (no {stage}/{key}/DONE)"
        )
    return art


def _meta(art: Artifact | None) -> dict:
    if art is None:
        return {}
    try:
        return art.meta
    except (OSError, ValueError):
        return {}


_JSONL_CACHE: dict[Path, list[dict]] = {}


def _jsonl(path: Path) -> list[dict]:
    """read_jsonl, once per file while a page is read (the store-only search for a dataset's
    inputs and the dataset itself read the same big files); rows are never modified."""
    if path not in _JSONL_CACHE:
        _JSONL_CACHE[path] = read_jsonl(path)
    return _JSONL_CACHE[path]


def _rows(art: Artifact | None, name: str, notes: list[str]) -> list[dict] | None:
    """An artifact's JSONL rows, or None with a note naming the file that could not be read."""
    if art is None:
        return None
    path = art.file(name)
    if not path.exists():
        notes.append(f"{art.stage}/{art.key} has no {name}")
        return None
    try:
        return _jsonl(path)
    except (OSError, ValueError) as e:
        notes.append(f"{path} could not be read: {e}")
        return None


def _input_keys(art: Artifact) -> list[str]:
    """The input keys an artifact's DONE records (`made_of.inputs`, as the store writes it)."""
    inputs = (_meta(art).get("made_of") or {}).get("inputs") or []
    return [str(k) for k in inputs if isinstance(k, str)]


def _recorded_inputs(store: Store, art: Artifact, stages: tuple[str, ...]) -> dict[str, list[str]]:
    """The recorded input keys by the stage whose store dir holds them (a judge artifact's two
    inputs are both `respond` artifacts, so each stage maps to a list)."""
    found: dict[str, list[str]] = {}
    for key in _input_keys(art):
        for stage in stages:
            if (store.root / stage / key / "DONE").exists():
                found.setdefault(stage, []).append(key)
    return found


def _finished(store: Store, stage: str) -> list[Artifact]:
    root = store.root / stage
    if not root.is_dir():
        return []
    found = [Artifact(stage, p.parent.name, p.parent) for p in root.glob("*/DONE")]
    return sorted(found, key=lambda a: (_meta(a).get("finished_at") or "", a.key))



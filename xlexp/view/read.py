"""What the view shows, read from a run dir, a sweep dir or a store. Each stage's reader lives
in its package and is named by its declaration's `ViewSpec` (`xlexp/generate/view.py`: datasets;
`xlexp/evaluate/view.py`: judged systems, the sweep's tables); `read_common` holds what they
share (artifacts, DONE, rows). The result is plain JSON-able data;
`page.py` turns it into HTML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xlexp.evaluate.view import read_evaluation, read_sweep
from xlexp.generate.view import read_generation
from xlexp.stage import STAGES
from xlexp.store import Store
from xlexp.view.read_common import _JSONL_CACHE, _json, clean

__all__ = ["clean", "read_evaluation", "read_generation", "read_path", "read_sweep"]


def _keys(entry: Any) -> dict[str, str | None]:
    """Artifact name -> key, from one stage's entry in a run's results.json."""
    if not isinstance(entry, dict):
        return {}
    return {name: info.get("key") for name, info in entry.items() if isinstance(info, dict)}


def _stage_rows(summary: dict, run: str) -> list[dict]:
    """Every artifact of one run with its stage, key and counts: the page's stage table."""
    rows = []
    for stage, entry in (summary.get("stages") or {}).items():
        if not isinstance(entry, dict):
            continue
        for name, info in entry.items():
            if isinstance(info, dict):
                counts = {k: v for k, v in info.items() if k not in ("key", "kind")}
                rows.append(
                    {
                        "run": run,
                        "stage": stage,
                        "artifact": name,
                        "key": info.get("key"),
                        "counts": clean(counts),
                    }
                )
    return rows


def _store_of(summary: dict, results: Path) -> Store | None:
    root = summary.get("store")
    if root and Path(root).is_dir():
        return Store(root)
    return None


def shard_notes(root: Path) -> list[str]:
    """One note per set of generation shards in the store: each shard done, in progress (its
    part files so far) or missing (`python -m xlexp.store status`)."""
    from xlexp.store_status import store_status

    notes, current = [], None
    for line in store_status(root):
        if not line.startswith("  "):
            if current:
                notes.append(current)
            current = None if line.startswith("no generation shards") else f"generation {line}"
        elif current:
            current += " · " + line.strip()
    return [*notes, current] if current else notes


def read_path(path: Path) -> dict:
    try:
        return _read_path(path)
    finally:
        _JSONL_CACHE.clear()


def _read_path(path: Path) -> dict:
    """The page's data for a run dir (results.json), a sweep dir (results.json below it) or a
    store dir (every finished select and judge artifact)."""
    path = Path(path).resolve()
    if not path.is_dir():
        raise FileNotFoundError(
            f"xlexp.view: {path} is not a directory (give a run dir, a sweep dir or a store dir)"
        )
    page: dict[str, Any] = {"source": {"path": str(path)}, "notes": [], "sweep": None}
    results = sorted(path.rglob("results.json"))
    views = [stage for stage in STAGES.values() if stage.view is not None]
    for stage in views:
        page.setdefault(stage.view.section, [])
    page["stages"] = []
    if results:
        page["source"]["kind"] = (
            "run" if (path / "results.json").exists() and len(results) == 1 else "sweep"
        )
        # One entry per distinct anchor artifact (a dataset, a judged system) and the runs that used
        # it.
        entries: dict[tuple[str, str, str], dict] = {}
        shard_stores: list[Path] = []
        for res in results:
            try:
                summary = _json(res)
            except (OSError, ValueError) as e:
                page["notes"].append(f"{res} could not be read: {e}")
                continue
            store = _store_of(summary, res)
            if store is not None and store.root not in shard_stores:
                shard_stores.append(store.root)
            run = str(res.parent.relative_to(path)) if res.parent != path else "."
            page["stages"] += _stage_rows(summary, run)
            if store is None:
                page["notes"].append(f"{res}: its store ({summary.get('store')}) is not there")
                continue
            for stage in views:
                keys = _keys((summary.get("stages") or {}).get(stage.name))
                anchor = keys.get(stage.view.anchor)
                if anchor:
                    entry = entries.setdefault(
                        (stage.name, str(store.root), anchor),
                        {"store": store, "keys": keys, "runs": []},
                    )
                    entry["runs"].append(run)
        anchor_runs: dict[str, list[str]] = {}
        for (name, _, anchor), entry in entries.items():
            stage = STAGES.get(name)
            page[stage.view.section].append(
                stage.view.read(entry["store"], entry["keys"], entry["runs"])
            )
            anchor_runs.setdefault(anchor, []).extend(
                entry["runs"]
            )  # the sweep's rows link to them
        page["sweep"] = read_sweep(path, anchor_runs)
        page["notes"] += [note for root in shard_stores for note in shard_notes(root)]
        return page
    if (path / "seed").is_dir() or any(  # a store (seed/: generation shards, perhaps only)
        (path / spec.store_kind).is_dir()
        for stage in views
        for spec in stage.artifacts
        if spec.name == stage.view.anchor
    ):
        page["source"]["kind"] = "store"
        store = Store(path)
        for stage in views:
            page[stage.view.section] += stage.view.read_store(store)
        page["sweep"] = read_sweep(path, {})
        page["notes"] += shard_notes(path)
        return page
    raise FileNotFoundError(
        f"xlexp.view: nothing to show in {path}: no results.json under it (a run or sweep "
        "dir written with the report stage) and no select/ or judge/ artifacts (a store dir)"
    )



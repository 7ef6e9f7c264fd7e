"""What the view shows, read from a run dir, a sweep dir or a store. The reading lives in
`read_*.py` (the only modules that know where the stages put their files and which fields
their rows carry): `read_common` (artifacts, DONE, rows), `read_generation` (datasets),
`read_evaluation` (judged systems, the sweep's tables). The result is plain JSON-able data;
`page.py` turns it into HTML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xlexp.store import Store
from xlexp.view.read_common import _JSONL_CACHE, GENERATE_STAGES, _finished, _json, clean
from xlexp.view.read_evaluation import read_evaluation, read_sweep
from xlexp.view.read_generation import _generation_inputs, read_generation

__all__ = ["clean", "read_evaluation", "read_generation", "read_path", "read_sweep"]
# An evaluate summary names its artifacts by role; the reference's outputs live in `respond`.
EVAL_ROLE_STAGE = {"reference": "respond", "respond": "respond", "judge": "judge", "rubric": "rubric", "benchmark": "benchmark",
                   "metrics": "metrics"}


def _summary_keys(summary: dict) -> tuple[dict[str, str | None] | None, str | None, dict[str, str | None]]:
    """(generation keys, judge key, evaluation keys) of one run's results.json."""
    stages = summary.get("stages") or {}
    gen = stages.get("generate") or {}
    gen_keys = {s: (gen.get(s) or {}).get("key") for s in GENERATE_STAGES} if isinstance(gen.get("select"), dict) else None
    ev = stages.get("evaluate") or {}
    ev_keys = {role: ev.get(role) for role in EVAL_ROLE_STAGE if isinstance(ev.get(role), str)}
    return gen_keys, ev_keys.get("judge") or (summary.get("system") or {}).get("judge_key"), ev_keys


def _store_of(summary: dict, results: Path) -> Store | None:
    root = summary.get("store")
    if root and Path(root).is_dir():
        return Store(root)
    return None


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
        raise FileNotFoundError(f"xlexp.view: {path} is not a directory (give a run dir, a sweep dir or a store dir)")
    page: dict[str, Any] = {"source": {"path": str(path)}, "notes": [], "generation": [], "evaluation": [], "sweep": None}
    results = sorted(path.rglob("results.json"))
    if results:
        page["source"]["kind"] = "run" if (path / "results.json").exists() and len(results) == 1 else "sweep"
        datasets: dict[tuple[str, str], dict] = {}
        systems: dict[tuple[str, str], dict] = {}
        for res in results:
            try:
                summary = _json(res)
            except (OSError, ValueError) as e:
                page["notes"].append(f"{res} could not be read: {e}")
                continue
            store = _store_of(summary, res)
            run = str(res.parent.relative_to(path)) if res.parent != path else "."
            if store is None:
                page["notes"].append(f"{res}: its store ({summary.get('store')}) is not there")
                continue
            gen_keys, judge_key, ev_keys = _summary_keys(summary)
            if gen_keys and gen_keys.get("select"):
                datasets.setdefault((str(store.root), gen_keys["select"]), {"store": store, "keys": gen_keys, "runs": []})["runs"].append(run)
            if judge_key:
                entry = systems.setdefault((str(store.root), judge_key), {"store": store, "keys": ev_keys, "runs": []})
                entry["runs"].append(run)
        for entry in datasets.values():
            page["generation"].append({**read_generation(entry["store"], entry["keys"]), "runs": entry["runs"]})
        judge_runs: dict[str, list[str]] = {}
        for (_, key), entry in systems.items():
            page["evaluation"].append(read_evaluation(entry["store"], key, entry["keys"], entry["runs"]))
            judge_runs.setdefault(key, []).extend(entry["runs"])
        page["sweep"] = read_sweep(path, judge_runs)
        return page
    if (path / "select").is_dir() or (path / "judge").is_dir():
        page["source"]["kind"] = "store"
        store = Store(path)
        for sel in _finished(store, "select"):
            page["generation"].append(read_generation(store, _generation_inputs(store, sel)))
        for judge in _finished(store, "judge"):
            page["evaluation"].append(read_evaluation(store, judge.key))
        page["sweep"] = read_sweep(path, {})
        return page
    raise FileNotFoundError(
        f"xlexp.view: nothing to show in {path}: no results.json under it (a run or sweep dir written with "
        "the report stage) and no select/ or judge/ artifacts (a store dir)"
    )



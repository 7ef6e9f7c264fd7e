"""What results.md says about a run's stages (a table: artifact, key, rows in and out, rejects,
details) and its HTML view (the line naming view.html, written beside it)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("xlexp")


def view_line(run_dir: Path, paths: dict[str, Path]) -> str:
    """Write the run's HTML view beside results.md; the line results.md gives it."""
    from xlexp.view import write_view

    try:
        paths["view"] = write_view(run_dir)
    except Exception as e:  # the results stand without their view; say why it is missing
        log.warning("view of %s not written: %s", run_dir, e)
        return f"The HTML view could not be written ({type(e).__name__}: {e}); `python -m xlexp.view {run_dir}` tries again.\n"
    name = paths["view"].name
    return (f"**Browse the data**: [{name}]({name}), one self-contained HTML file (open it from disk): every generated "
            "row with its sentence candidates and QE scores, every judged prompt with both outputs and the verdicts. "
            f"`python -m xlexp.view {run_dir}` rewrites it.\n")


def _cell(value: Any, depth: int = 0) -> str:
    """A compact, readable cell: numbers as numbers, dicts as `key value` lists (nested ones in
    parentheses: `langs deu (rows 3, errors 0)`), `|` escaped."""
    if isinstance(value, dict):
        text = ("; " if depth == 0 else ", ").join(f"{k} {_cell(v, depth + 1)}" for k, v in value.items())
        text = f"({text})" if depth > 1 else text
    elif isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, list):
        text = ", ".join(_cell(v, depth + 1) for v in value)
    else:
        text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ") if depth == 0 else text


_GENERATE_ORDER = ("seed", "reverse", "refine", "translate", "qe", "select")
_EVAL_STAGE = {"reference": "respond"}  # an evaluate role whose artifact lives under another stage


def _stored_counts(summary: dict, stage: str, key: str) -> dict:
    """An artifact's DONE counts from the run's store ({} when they cannot be read)."""
    try:
        done = Path(summary["store"]) / stage / key / "DONE"
        return json.loads(done.read_text()).get("counts") or {}
    except (KeyError, TypeError, OSError, ValueError):
        return {}


def stage_table(summary: dict) -> str:
    """The run's stages as a Markdown table: one row per artifact with its key, rows in and out,
    rejects, and what else its counts say (reject reasons, training figures, per-language rows)."""
    lines = ["### stages", "", "| stage | artifact | key | in | out | rejects | details |", "|---|---|---|---:|---:|---:|---|"]
    stages = summary.get("stages") or {}
    funnel = (summary.get("generation_stats") or {}).get("stages") or {}

    def row(stage: str, artifact: str, key: Any, n_in: Any, n_out: Any, rejects: Any, details: Any) -> None:
        lines.append(f"| {stage} | {artifact} | {'`' + str(key) + '`' if key else ''} | {_cell(n_in)} | {_cell(n_out)} | {_cell(rejects)} | {_cell(details)} |")

    gen = stages.get("generate") or {}
    for name in [n for n in _GENERATE_ORDER if n in gen] + [n for n in gen if n not in _GENERATE_ORDER and n != "seconds"]:
        info = dict(gen[name]) if isinstance(gen[name], dict) else {}
        key = info.pop("key", None)
        f = funnel.get(name) or {}
        n_in = f.get("in", info.get("in", info.get("read", info.get("items"))))
        n_out = f.get("out", info.get("out", info.get("rows", info.get("items"))))
        rejects = f.get("rejects", info.get("rejects"))
        reasons = f.get("reject_reasons") or info.get("reject_reasons") or {}
        rest = {k: v for k, v in info.items() if k not in ("in", "out", "rejects", "reject_reasons", "read", "items") and v not in (0, {}, None)}
        if f.get("dropped_by_qe_filter"):
            rest["dropped by the QE cut"] = f["dropped_by_qe_filter"]
        row("generate", name, key, n_in, n_out, rejects, {**({"reasons": reasons} if reasons else {}), **rest})
    if "seconds" in gen:
        row("generate", "*total*", None, None, None, None, f"{gen['seconds']} s")
    sft = stages.get("sft")
    if isinstance(sft, dict):
        info = dict(sft)
        key = info.pop("key", None)
        row("sft", "adapter", key, info.pop("rows", None), None, None, info)
    ev = stages.get("evaluate") or {}
    for role, key in ev.items():
        if role == "seconds" or not isinstance(key, str):
            continue
        counts = _stored_counts(summary, _EVAL_STAGE.get(role, role), key)
        n = counts.get("rows")
        row("evaluate", role, key, None, n if not isinstance(n, dict) else None, counts.get("malformed"),
            {k: v for k, v in counts.items() if k not in ("rows", "malformed")})
    if "seconds" in ev:
        row("evaluate", "*total*", None, None, None, None, f"{ev['seconds']} s")
    return "\n".join(lines) + "\n"



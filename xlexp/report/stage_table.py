"""What results.md says about a run's stages: a table of artifact, key, rows in and out,
rejects and details, laid out as each stage's declaration says."""

from __future__ import annotations

from typing import Any

from xlexp.stage import STAGES, counted_rows


def _cell(value: Any, depth: int = 0) -> str:
    """A compact, readable cell: numbers as numbers, dicts as `key value` lists (nested ones in
    parentheses: `langs deu (rows 3, errors 0)`), `|` escaped."""
    if isinstance(value, dict):
        text = ("; " if depth == 0 else ", ").join(
            f"{k} {_cell(v, depth + 1)}" for k, v in value.items()
        )
        text = f"({text})" if depth > 1 else text
    elif isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, list):
        text = ", ".join(_cell(v, depth + 1) for v in value)
    else:
        text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ") if depth == 0 else text


def stage_table(summary: dict) -> str:
    """The run's stages as a Markdown table: one row per artifact with its key, rows in and out,
    rejects, and what else its counts say (reject reasons, training figures, per-language rows),
    laid out as each stage's declaration says."""
    lines = [
        "### stages",
        "",
        "| stage | artifact | key | in | out | rejects | details |",
        "|---|---|---|---:|---:|---:|---|",
    ]

    def row(
        stage: str, artifact: str, key: Any, n_in: Any, n_out: Any, rejects: Any, details: Any
    ) -> None:
        cells = [
            stage,
            artifact,
            f"`{key}`" if key else "",
            *map(_cell, (n_in, n_out, rejects, details)),
        ]
        lines.append("| " + " | ".join(cells) + " |")

    for name, entry in (summary.get("stages") or {}).items():
        if name not in STAGES or not isinstance(entry, dict):
            continue
        stage = STAGES.get(name)
        rows = stage.table_rows(entry, summary) if stage.table_rows else counted_rows(stage, entry)
        for r in rows:
            row(name, r.artifact, r.key, r.rows_in, r.rows_out, r.rejects, r.details)
        if "seconds" in entry:
            row(name, "*total*", None, None, None, None, f"{entry['seconds']} s")
    return "\n".join(lines) + "\n"

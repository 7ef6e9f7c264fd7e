"""The report as Markdown: a run's results.md (and results.json, and its HTML view beside them),
the console summary, and the paper-layout tables of a sweep. Columns, formats and which value
is best come from the metric declarations (`xlexp.evaluate.metrics.METRICS`)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from xlexp.config import Config
from xlexp.evaluate.metrics import Column, column, declared_columns
from xlexp.report.stage_table import stage_table
from xlexp.report.tables import (
    SystemRow,
    best,
    best_by_lang,
    is_best,
    judge_label,
    lang_order,
    languages,
    rtt_label,
    rubric_columns,
)
from xlexp.store import write_json

log = logging.getLogger("xlexp")

ABSENT = "–"  # a value that could not be computed (no verdicts, no outputs): shown, never NaN
_RUBRIC_COUNT = Column("n_malformed", "n_malformed", "d")  # rubric scores: the default ".2f"


def _fmt(value: Any, col: Column) -> str:
    """A cell as the column's declaration writes it: one format per column."""
    if isinstance(value, float) and math.isnan(value):
        return ABSENT
    if isinstance(value, int | float) and not isinstance(value, bool):
        return col.text(value)
    if isinstance(value, dict | list):
        return ""
    return ABSENT if value is None else str(value)


def _cell(value: Any, col: Column, best_value: float | None) -> str:
    text = _fmt(value, col)
    return f"**{text}**" if is_best(value, best_value, col) else text


def markdown_table(metrics: dict, title: str = "", columns: list | None = None) -> str:
    """One row per language + avg; `columns` as the metrics artifact lists them (default: all
    declared). The best language of each column with a direction is in bold."""
    cols = declared_columns(columns or None)
    bests = {c.key: best_by_lang(metrics, c) for c in cols}
    lines = [f"### {title}", ""] if title else []
    lines.append("| lang | " + " | ".join(c.label for c in cols) + " |")
    lines.append("|---" * (len(cols) + 1) + "|")
    for lang in lang_order(metrics):
        row = metrics[lang]
        # The avg row is not a language: never the best one.
        cells = [
            _fmt(row.get(c.key), c) if lang == "avg" else _cell(row.get(c.key), c, bests[c.key])
            for c in cols
        ]
        lines.append(f"| {lang} | " + " | ".join(cells) + " |")
    labels = {c.key: c.label for c in cols}
    notes = [
        f"- {lang}, {labels[key]}: {ABSENT} because {why}"
        for lang in lang_order(metrics)
        for key, why in (metrics[lang].get("notes") or {}).items()
        if key in labels
    ]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def rubric_table(scores: dict, title: str = "") -> str:
    """Table 8 layout: one row per language (+ avg), the average then each criterion."""
    cols = rubric_columns(scores)
    lines = [f"### {title}", ""] if title else []
    lines.append("| lang | " + " | ".join(cols) + " |")
    lines.append("|---" * (len(cols) + 1) + "|")
    for lang in lang_order(scores):
        cells = [_fmt(scores[lang].get(c), _RUBRIC_COUNT if c.startswith("n_") else Column(c, c))
                 for c in cols]
        lines.append(f"| {lang} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def agreement_table(stored: dict, title: str = "") -> str:
    """How far to trust the judge (xlexp.evaluate.agreement): one row per language and judge,
    the main judge first, its columns as declared there."""
    from xlexp.evaluate.agreement import COLUMNS, PANEL

    rows = stored.get("rows") or []
    n_judges = len({r["judge"] for r in rows if r.get("role") != PANEL})
    lines = [f"### {title}", ""] if title else []
    lines.append("| lang | judge | " + " | ".join(c.label for c in COLUMNS) + " |")
    lines.append("|---" * (len(COLUMNS) + 2) + "|")
    for row in rows:
        name = {"main": f"{row['judge']} (main)", PANEL: f"panel ({n_judges} judges)"}.get(
            row.get("role"), row["judge"])
        cells = [_fmt(row.get(c.key), c) for c in COLUMNS]
        lines.append(f"| {row['lang']} | {name} | " + " | ".join(cells) + " |")
    notes = []
    if not stored.get("both_orders"):
        notes.append(f"- order flips: {ABSENT} because the {stored.get('protocol')} protocol "
                     "judges each prompt in one slot order (eval.judge_protocol=both_orders "
                     "judges both)")
    if not any(r.get("n_human") for r in rows):
        notes.append(f"- human agreement: {ABSENT} without eval.human_labels")
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def view_line(run_dir: Path, paths: dict[str, Path]) -> str:
    """Write the run's HTML view beside results.md; the line results.md gives it."""
    from xlexp.view import write_view

    try:
        paths["view"] = write_view(run_dir)
    except Exception as e:  # the results stand without their view; say why it is missing
        log.warning("view of %s not written: %s", run_dir, e)
        return (
            f"The HTML view could not be written ({type(e).__name__}: {e}); "
            f"`python -m xlexp.view {run_dir}` tries again.\n"
        )
    name = paths["view"].name
    return (
        f"**Browse the data**: [{name}]({name}), one self-contained HTML file (open it from disk): "
        "every generated row with its sentence candidates and QE scores, every judged prompt with "
        "both outputs and the verdicts. "
        f"`python -m xlexp.view {run_dir}` rewrites it.\n"
    )


def write_results(run_dir: Path, summary: dict, cfg: Config) -> dict[str, Path]:
    """results.json and results.md under the run dir, and the run's view beside them."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": run_dir / "results.json", "markdown": run_dir / "results.md"}
    write_json(paths["json"], summary)
    parts = ["# xlexp results", ""]
    if summary.get("note"):
        parts += [f"> {summary['note']}", ""]
    # Content-reject shares over the bound, repeated instructions.
    for warning in summary.get("warnings") or []:
        parts += [f"> **WARNING** {warning}", ""]
    if summary.get("metrics"):
        system = rtt_label(cfg.model.name, cfg.eval.get("rtt"))
        judge = judge_label(cfg.judge.name, cfg.eval.get("judge_protocol"))
        title = f"{system} vs {cfg.reference.name}, judged by {judge}"
        parts.append(markdown_table(summary["metrics"], title, summary.get("columns")))
    if summary.get("rubric"):
        title = f"{cfg.model.name}: fine-grained scores (1-5), judged by {cfg.judge.name}"
        parts.append(rubric_table(summary["rubric"], title))
    if summary.get("agreement"):
        system = rtt_label(cfg.model.name, cfg.eval.get("rtt"))
        title = (f"How far to trust the judge: {system} vs {cfg.reference.name}, "
                 f"{cfg.eval.get('judge_protocol')} protocol")
        parts.append(agreement_table(summary["agreement"], title))
    parts.append(stage_table(summary))
    parts.append(
        f"\nbackend calls: {summary.get('backend_calls')}, wall time: {summary.get('seconds')} s\n"
    )
    if summary.get("cost"):
        from xlexp.ledger import markdown_cost

        parts.append(markdown_cost(summary["cost"]))
    parts.append(view_line(run_dir, paths))
    paths["markdown"].write_text("\n".join(parts))
    return paths


def console_summary(summary: dict) -> str:
    lines = ["", "=" * 72]
    if summary.get("note"):
        lines.append(f"NOTE: {summary['note']}")
    for warning in summary.get("warnings") or []:
        lines.append(f"WARNING: {warning}")
    if summary.get("metrics"):
        lines.append(markdown_table(summary["metrics"], columns=summary.get("columns")))
    if summary.get("rubric"):
        lines.append(rubric_table(summary["rubric"]))
    if summary.get("agreement"):
        lines.append(agreement_table(summary["agreement"]))
    lines.append(
        f"backend calls: {summary.get('backend_calls')}  wall time: {summary.get('seconds')} s"
    )
    for name, path in (summary.get("results") or {}).items():
        lines.append(f"results ({name}): {path}")
    lines.append(f"store: {summary.get('store')}")
    lines.append("=" * 72)
    return "\n".join(lines)


def paper_table(
    rows: list[SystemRow], metric: str = "win_rate", title: str = "", best_per: str = "column"
) -> str:
    """Markdown: `| Model | Avg | <langs> |`, the metric's format, the best value of each column
    in bold by the metric's direction (best_per="model": the best of each column among a
    system's rows, as Table 6 highlights)."""
    col = column(metric)
    cols = ["avg", *languages(rows)]
    scopes = (
        {r.name: [x for x in rows if x.name == r.name] for r in rows} if best_per == "model" else {}
    )
    best_of = {
        scope: {c: best([r.value(c, metric) for r in members], col) for c in cols}
        for scope, members in scopes.items()
    }
    best_all = {c: best([r.value(c, metric) for r in rows], col) for c in cols}
    show_exp = len({r.exp for r in rows}) > 1
    full = [r.label(False, show_exp) for r in rows]
    clash = {x for x in full if full.count(x) > 1}  # same labels, different judge artifacts
    lines = [f"### {title}", ""] if title else []
    lines.append("| Model | " + " | ".join("Avg" if c == "avg" else c for c in cols) + " |")
    lines.append("|---|" + "---:|" * len(cols))
    for i, row in enumerate(rows):
        bests = best_of.get(row.name, best_all)
        cells = [_cell(row.value(c, metric), col, bests[c]) for c in cols]
        short = (
            i > 0 and rows[i - 1].name == row.name
        )  # Table 6: "+2K instructions" under its model
        label = row.label(short, show_exp)
        if full[i] in clash and row.key:
            label += f" [{row.key[:8]}]"  # tell them apart by the store key of their judgement
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

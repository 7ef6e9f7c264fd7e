"""Results of a run: a Markdown table and JSON under the run dir, and a console summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from xlexp.store import write_json

COLUMNS = [
    ("win_rate", "win rate"),
    ("ci_low", "95% CI low"),
    ("ci_high", "95% CI high"),
    ("lang_fidelity", "lang fidelity"),
    ("avg_len", "avg len"),
    ("n", "n"),
    ("n_malformed", "malformed"),
]


def load_metrics(judge_artifact: Any) -> dict:
    return json.loads(judge_artifact.file("metrics.json").read_text())


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1.5 else f"{value:.2f}"
    return "" if value is None else str(value)


def markdown_table(metrics: dict, title: str = "") -> str:
    langs = [k for k in metrics if k != "avg"] + (["avg"] if "avg" in metrics else [])
    lines = [f"### {title}", ""] if title else []
    lines.append("| lang | " + " | ".join(label for _, label in COLUMNS) + " |")
    lines.append("|---" * (len(COLUMNS) + 1) + "|")
    for lang in langs:
        row = metrics[lang]
        lines.append(f"| {lang} | " + " | ".join(_fmt(row.get(key)) for key, _ in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def write_results(run_dir: Path, summary: dict, cfg: Any) -> dict[str, Path]:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": run_dir / "results.json", "markdown": run_dir / "results.md"}
    write_json(paths["json"], summary)
    parts = ["# xlexp results", ""]
    if summary.get("note"):
        parts += [f"> {summary['note']}", ""]
    if summary.get("metrics"):
        title = f"{cfg.model.name} vs {cfg.reference.name}, judged by {cfg.judge.name}"
        parts.append(markdown_table(summary["metrics"], title))
    if summary.get("rubric"):
        parts.append(rubric_table(summary["rubric"], f"{cfg.model.name}: fine-grained scores (1-5), judged by {cfg.judge.name}"))
    parts.append("### stages\n")
    for stage, info in summary.get("stages", {}).items():
        parts.append(f"- **{stage}**: `{json.dumps(info, default=str)}`")
    parts.append(f"\nbackend calls: {summary.get('backend_calls')}, wall time: {summary.get('seconds')} s\n")
    paths["markdown"].write_text("\n".join(parts))
    return paths


def console_summary(summary: dict) -> str:
    lines = ["", "=" * 72]
    if summary.get("note"):
        lines.append(f"NOTE: {summary['note']}")
    if summary.get("metrics"):
        lines.append(markdown_table(summary["metrics"]))
    if summary.get("rubric"):
        lines.append(rubric_table(summary["rubric"]))
    lines.append(f"backend calls: {summary.get('backend_calls')}  wall time: {summary.get('seconds')} s")
    for name, path in (summary.get("results") or {}).items():
        lines.append(f"results ({name}): {path}")
    lines.append(f"store: {summary.get('store')}")
    lines.append("=" * 72)
    return "\n".join(lines)


def rubric_table(scores: dict, title: str = "") -> str:
    """Table 8 layout: one row per language (+ avg), the average then each criterion."""
    langs = [k for k in scores if k != "avg"] + (["avg"] if "avg" in scores else [])
    criteria = [k for k in next(iter(scores.values()), {}) if k not in ("average", "n", "n_malformed")]
    cols = ["average", *criteria, "n_malformed"]
    lines = [f"### {title}", ""] if title else []
    lines.append("| lang | " + " | ".join(cols) + " |")
    lines.append("|---" * (len(cols) + 1) + "|")
    for lang in langs:
        lines.append(f"| {lang} | " + " | ".join(_fmt(scores[lang].get(c)) for c in cols) + " |")
    return "\n".join(lines) + "\n"

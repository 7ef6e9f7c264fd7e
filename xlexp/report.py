"""Results of a run (results.md/json under the run dir, a console summary) and the paper's
tables and Fig. 2 plot for a sweep: `python -m xlexp.report <sweep dir | run dir | store dir>`.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from xlexp.stage_table import stage_table, view_line
from xlexp.store import write_json

log = logging.getLogger("xlexp")

def load_json(artifact: Any, name: str) -> Any:
    return json.loads(artifact.file(name).read_text())


ABSENT = "–"  # a value that could not be computed (no verdicts, no outputs): shown, never NaN


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return ABSENT
        return f"{value:.3f}" if abs(value) < 1.5 else f"{value:.2f}"
    if isinstance(value, dict | list):
        return ""
    return ABSENT if value is None else str(value)


def judge_label(judge_name: str, protocol: str | None) -> str:
    """"gpt-4o (alpaca_eval protocol)": a win rate belongs to a judge and its protocol."""
    return f"{judge_name} ({protocol} protocol)" if protocol else judge_name


def markdown_table(metrics: dict, title: str = "", columns: list | None = None) -> str:
    """One row per language + avg; `columns` as the metrics artifact lists them (default: all)."""
    from xlexp.evaluate.metrics import columns as metric_columns

    cols = [tuple(c) for c in columns] if columns else metric_columns()
    langs = [k for k in metrics if k != "avg"] + (["avg"] if "avg" in metrics else [])
    lines = [f"### {title}", ""] if title else []
    lines.append("| lang | " + " | ".join(label for _, label in cols) + " |")
    lines.append("|---" * (len(cols) + 1) + "|")
    for lang in langs:
        row = metrics[lang]
        lines.append(f"| {lang} | " + " | ".join(_fmt(row.get(key)) for key, _ in cols) + " |")
    return "\n".join(lines) + "\n"


def write_results(run_dir: Path, summary: dict, cfg: Any) -> dict[str, Path]:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": run_dir / "results.json", "markdown": run_dir / "results.md"}
    write_json(paths["json"], summary)
    parts = ["# xlexp results", ""]
    if summary.get("note"):
        parts += [f"> {summary['note']}", ""]
    for warning in summary.get("warnings") or []:  # content-reject shares over the bound
        parts += [f"> **WARNING** {warning}", ""]
    if summary.get("metrics"):
        title = f"{cfg.model.name} vs {cfg.reference.name}, judged by {judge_label(cfg.judge.name, cfg.eval.get('judge_protocol'))}"
        parts.append(markdown_table(summary["metrics"], title, summary.get("columns")))
    if summary.get("rubric"):
        parts.append(rubric_table(summary["rubric"], f"{cfg.model.name}: fine-grained scores (1-5), judged by {cfg.judge.name}"))
    parts.append(stage_table(summary))
    parts.append(f"\nbackend calls: {summary.get('backend_calls')}, wall time: {summary.get('seconds')} s\n")
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
    if summary.get("metrics"):
        lines.append(markdown_table(summary["metrics"], columns=summary.get("columns")))
    if summary.get("rubric"):
        lines.append(rubric_table(summary["rubric"]))
    lines.append(f"backend calls: {summary.get('backend_calls')}  wall time: {summary.get('seconds')} s")
    for name, path in (summary.get("results") or {}).items():
        lines.append(f"results ({name}): {path}")
    lines.append(f"store: {summary.get('store')}")
    lines.append("=" * 72)
    return "\n".join(lines)


# ---------------------------------------------------------------- paper tables and Fig. 2
# `python -m xlexp.report <sweep dir | store dir>`: rows = systems (model, +N instructions),
# columns = Avg + languages (the paper's Table 6 layout), best per column in bold; Markdown,
# CSV, and the Fig. 2 scaling plot (avg win rate vs data size, log x) as PNG.


@dataclass
class SystemRow:
    """One evaluated system: its labels (from the judge artifact or a run's results.json) and metrics."""

    model: str
    metrics: dict[str, dict]
    data_size: int | None = None  # SFT rows; None: the model as is (no adapter)
    selection: str | None = None
    exp: str | None = None
    reference: str = ""
    judge: str = ""
    protocol: str = ""  # the judge protocol (alpaca_eval, both_orders): part of the comparison
    benchmark: str = ""
    key: str = ""  # the judge artifact's key (dedupes a system seen by several jobs)

    @property
    def comparison(self) -> str:
        """What a win rate is measured against; rows of different comparisons never share a table."""
        judge = judge_label(self.judge or "?", self.protocol or None)
        return f"vs {self.reference or '?'}, judged by {judge} on {self.benchmark or '?'}"

    def label(self, short: bool = False, show_exp: bool = True) -> str:
        """"EuroLLM 9B", "EuroLLM 9B +2K instructions (naive, selection)"; short: "+2K instructions"
        (under its model's row); the experiment only where a table mixes experiments."""
        if self.data_size is None:
            return self.model
        selection = self.selection if self.selection not in (None, "best_of_k") else None
        extra = [x for x in (selection, self.exp if show_exp else None) if x]
        tuned = f"+{size_label(self.data_size)} instructions" + (f" ({', '.join(extra)})" if extra else "")
        return tuned if short else f"{self.model} {tuned}"

    def value(self, lang: str, metric: str = "win_rate") -> float | None:
        v = (self.metrics.get(lang) or {}).get(metric)
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def size_label(n: int) -> str:
    """2000 -> "2K", 32 -> "32" (the paper's labels)."""
    return f"{n // 1000}K" if n >= 1000 and n % 1000 == 0 else str(n)


def system_from_labels(labels: dict, metrics: dict, key: str = "") -> SystemRow:
    return SystemRow(
        model=str(labels.get("model") or "?"),
        metrics=metrics,
        data_size=labels.get("data_size"),
        selection=labels.get("selection"),
        exp=labels.get("exp"),
        reference=str(labels.get("reference") or ""),
        judge=str(labels.get("judge") or ""),
        protocol=str(labels.get("judge_protocol") or ""),
        benchmark=str(labels.get("benchmark") or ""),
        key=key or str(labels.get("judge_key") or ""),
    )


def rows_from_store(store_dir: Path) -> list[SystemRow]:
    """Every finished metrics artifact of a store, labelled by the `system` its DONE records.
    Several metrics artifacts of one judged system (another metric list): the newest wins."""
    rows: dict[str, tuple[str, SystemRow]] = {}
    for done in sorted(Path(store_dir, "metrics").glob("*/DONE")):
        meta = json.loads(done.read_text())
        metrics_file = done.parent / "metrics.json"
        if not metrics_file.exists():
            continue
        labels = meta.get("system") or {"model": f"metrics:{meta.get('key', done.parent.name)}"}
        row = system_from_labels(labels, json.loads(metrics_file.read_text()), labels.get("judge_key") or meta.get("key", done.parent.name))
        finished = str(meta.get("finished_at", ""))
        if row.key not in rows or rows[row.key][0] <= finished:
            rows[row.key] = (finished, row)
    return [row for _, row in rows.values()]


def rows_from_runs(sweep_dir: Path) -> list[SystemRow]:
    """The systems of a sweep (or run) dir: each job's results.json, one row per distinct system."""
    rows: dict[tuple, SystemRow] = {}
    for path in sorted(Path(sweep_dir).rglob("results.json")):
        summary = json.loads(path.read_text())
        if not summary.get("metrics"):
            continue
        labels = summary.get("system") or {"model": path.parent.name}
        row = system_from_labels(labels, summary["metrics"])
        rows.setdefault((row.key or str(path), row.exp), row)
    return list(rows.values())


def collect(path: Path) -> list[SystemRow]:
    """Rows from a sweep/run dir (results.json files) or, failing that, from a store dir."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"report: {path} is not a directory (give a sweep dir, a run dir or a store dir)")
    rows = rows_from_runs(path)
    if not rows and (path / "metrics").is_dir():
        rows = rows_from_store(path)
    if not rows:
        raise FileNotFoundError(
            f"report: nothing to report in {path}: no results.json with metrics under it (run with the report stage) "
            "and no finished metrics artifacts (metrics/<key>/metrics.json) in it"
        )
    return rows


def _order(rows: list[SystemRow]) -> list[SystemRow]:
    # Per model: the model as is first, then its fine-tunes by data size (Table 6).
    return sorted(rows, key=lambda r: (r.model, r.data_size is not None, r.data_size or 0, r.selection or "", r.exp or "", r.key))


def group_tables(rows: list[SystemRow]) -> dict[str, list[SystemRow]]:
    tables: dict[str, list[SystemRow]] = {}
    for row in rows:
        tables.setdefault(row.comparison, []).append(row)
    return {name: _order(tables[name]) for name in sorted(tables)}


def languages(rows: list[SystemRow]) -> list[str]:
    langs: dict[str, None] = {}
    for row in rows:
        for lang in row.metrics:
            if lang != "avg":
                langs.setdefault(lang, None)
    return list(langs)


def _best(rows: list[SystemRow], col: str, metric: str) -> float | None:
    values = [v for v in (r.value(col, metric) for r in rows) if v is not None]
    return max(values) if values else None


def paper_table(rows: list[SystemRow], metric: str = "win_rate", title: str = "", best_per: str = "column") -> str:
    """Markdown: `| Model | Avg | <langs> |`, 2 decimals, the best value of each column in bold
    (best_per="model": the best of each column among a model's rows, as Table 6 highlights)."""
    cols = ["avg", *languages(rows)]
    scopes = {r.model: [x for x in rows if x.model == r.model] for r in rows} if best_per == "model" else {}
    best_of = {scope: {c: _best(members, c, metric) for c in cols} for scope, members in scopes.items()}
    best_all = {c: _best(rows, c, metric) for c in cols}
    show_exp = len({r.exp for r in rows}) > 1
    full = [r.label(False, show_exp) for r in rows]
    clash = {x for x in full if full.count(x) > 1}  # same labels, different judge artifacts
    lines = [f"### {title}", ""] if title else []
    lines.append("| Model | " + " | ".join("Avg" if c == "avg" else c for c in cols) + " |")
    lines.append("|---|" + "---:|" * len(cols))
    for i, row in enumerate(rows):
        cells = []
        best = best_of.get(row.model, best_all)
        for c in cols:
            v = row.value(c, metric)
            text = "–" if v is None else f"{v:.2f}"
            cells.append(f"**{text}**" if v is not None and best[c] is not None and round(v, 2) == round(best[c], 2) else text)
        short = i > 0 and rows[i - 1].model == row.model  # Table 6: "+2K instructions" under its model
        label = row.label(short, show_exp)
        if full[i] in clash and row.key:
            label += f" [{row.key[:8]}]"  # tell them apart by the store key of their judgement
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# A Reason-then-Translate system is labelled "<model> (RTT <mode>)" (evaluate.stage.system_labels).
_RTT_LABEL = re.compile(r"^(?P<model>.+) \(RTT (?P<mode>[a-z_]+)\)$")


def rtt_deltas(rows: list[SystemRow], metric: str = "win_rate") -> list[SystemRow]:
    """Table 2: each Reason-then-Translate row minus the same system answering directly (same
    model, adapter size, selection and comparison), per language and Avg. A language either row
    lacks is absent (never 0); an RTT row without its direct row gives no delta row."""
    direct = {(r.model, r.data_size, r.selection, r.comparison): r for r in rows if not _RTT_LABEL.match(r.model)}
    deltas = []
    for row in rows:
        m = _RTT_LABEL.match(row.model)
        base = direct.get((m.group("model"), row.data_size, row.selection, row.comparison)) if m else None
        if base is None:
            continue
        diff = {}
        for lang in row.metrics:
            a, b = row.value(lang, metric), base.value(lang, metric)
            if a is not None and b is not None:
                diff[lang] = {metric: a - b}
        deltas.append(
            SystemRow(
                model=f"{m.group('model')} ({m.group('mode')} - direct)",
                metrics=diff,
                data_size=row.data_size,
                selection=row.selection,
                reference=row.reference,
                judge=row.judge,
                benchmark=row.benchmark,
                key=row.key,
            )
        )
    return _order(deltas)


def write_csv(tables: dict[str, list[SystemRow]], path: Path, metric: str = "win_rate") -> None:
    import csv

    langs = languages([r for rows in tables.values() for r in rows])
    with Path(path).open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["comparison", "model", "data_size", "selection", "exp", "system", "avg", *langs])
        for name, rows in tables.items():
            for r in rows:
                values = [r.value(c, metric) for c in ["avg", *langs]]
                out.writerow(
                    [name, r.model, r.data_size if r.data_size is not None else "", r.selection or "", r.exp or "", r.label()]
                    + ["" if v is None else f"{v:.4f}" for v in values]
                )


def scaling_plot(rows: list[SystemRow], path: Path, metric: str = "win_rate", lines: str = "model", title: str = "") -> bool:
    """Fig. 2: avg win rate vs SFT data size (log x), one line per base model (or per language of
    each model with lines="lang"); a model's score as is is a dashed line. False: nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a cluster node
    import matplotlib.pyplot as plt

    sized = [r for r in rows if r.data_size]
    if not sized:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    models = list(dict.fromkeys(r.model for r in sized))
    series: list[tuple[str, str, str]] = []  # (legend label, model, column)
    for model in models:
        cols = ["avg"] if lines == "model" else languages([r for r in sized if r.model == model])
        series += [(model if lines == "model" else f"{model} {c}", model, c) for c in cols]
    for i, (name, model, col) in enumerate(series):
        color = f"C{i % 10}"
        points = sorted((r.data_size, r.value(col, metric)) for r in sized if r.model == model and r.value(col, metric) is not None)
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", color=color, label=name)
        base = [r.value(col, metric) for r in rows if r.model == model and r.data_size is None and r.value(col, metric) is not None]
        if base:
            ax.axhline(base[0], color=color, linestyle="--", linewidth=1)
    ax.set_xscale("log")
    xs = sorted({r.data_size for r in sized})
    ax.set_xticks(xs, [size_label(x) for x in xs])
    ax.minorticks_off()
    ax.set_xlabel("SFT instructions (log scale)")
    unit = " (%)" if metric in ("win_rate", "ci_low", "ci_high") else ""
    ax.set_ylabel(f"{'avg ' if lines == 'model' else ''}{metric.replace('_', ' ')}{unit}")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, title="dashed: without SFT", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return True


def build_report(
    path: Path, out_dir: Path | None = None, metric: str = "win_rate", lines: str = "model", best_per: str = "column"
) -> dict[str, Path]:
    """Write tables.md, tables.csv and the scaling plot(s) for a sweep/run/store dir."""
    tables = group_tables(collect(path))
    out = Path(out_dir) if out_dir else Path(path) / "report"
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "tables.md", "csv": out / "tables.csv"}
    parts = [f"# xlexp report: {metric.replace('_', ' ')}", ""]
    deltas = {}
    for i, (name, rows) in enumerate(tables.items()):
        parts.append(paper_table(rows, metric, title=name, best_per=best_per))
        png = out / ("scaling.png" if i == 0 else f"scaling-{i + 1}.png")
        if scaling_plot(rows, png, metric, lines, title=name):
            paths[png.stem] = png
            parts.append(f"![{name}]({png.name})\n")
        if rtt := rtt_deltas(rows, metric):
            deltas[f"{name}: Reason-then-Translate minus direct"] = rtt
    for name, rows in deltas.items():  # Table 2: differences from Table 1, in points
        parts.append(paper_table(rows, metric, title=name))
    paths["markdown"].write_text("\n".join(parts))
    write_csv({**tables, **deltas}, paths["csv"], metric)
    return paths


class SweepReport(Callback):
    """Hydra callback: when a multirun ends, write the sweep's report next to its jobs."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            paths = build_report(sweep_dir)
        except FileNotFoundError as e:  # e.g. the sweep ran without the report stage
            log.warning("%s", e)
            return
        log.info("sweep report: %s", ", ".join(str(p) for p in paths.values()))
        from xlexp.view import write_view

        try:
            log.info("sweep view: %s", write_view(sweep_dir))
        except Exception as e:  # the report stands without its view
            log.warning("sweep view not written: %s", e)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m xlexp.report", description=__doc__)
    parser.add_argument("path", type=Path, help="a Hydra sweep dir, a run dir, or a store dir")
    parser.add_argument("--out", type=Path, default=None, help="output dir (default: <path>/report)")
    parser.add_argument("--metric", default="win_rate", help="metric per cell (win_rate, lang_fidelity, avg_len, ...)")
    parser.add_argument("--lines", choices=("model", "lang"), default="model", help="plot one line per model (avg) or per language")
    parser.add_argument("--best", choices=("column", "model"), default="column", help="bold the best per column, or per column within each model (Table 6)")
    args = parser.parse_args(argv)
    try:
        paths = build_report(args.path, args.out, args.metric, args.lines, args.best)
    except FileNotFoundError as e:
        print(f"xlexp.report: {e}", file=sys.stderr)
        return 2
    print((paths["markdown"]).read_text())
    for name, p in paths.items():
        print(f"{name}: {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

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

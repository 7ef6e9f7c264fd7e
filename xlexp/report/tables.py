"""The report's tables as data, written by nobody here: the judged systems (from a sweep's
results.json files or a store's metrics artifacts), grouped by what their win rates are measured
against, the Reason-then-Translate deltas (Table 2), the rubric rows (Table 8) and the best value
of a column by the direction its declaration gives. results.md, tables.md, the CSV, the plot and
the HTML view all read these.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from xlexp.evaluate.metrics import Column


def judge_label(judge_name: str, protocol: str | None) -> str:
    """ "gpt-4o (alpaca_eval protocol)": a win rate belongs to a judge and its protocol."""
    return f"{judge_name} ({protocol} protocol)" if protocol else judge_name


def size_label(n: int) -> str:
    """2000 -> "2K", 32 -> "32" (the paper's labels)."""
    return f"{n // 1000}K" if n >= 1000 and n % 1000 == 0 else str(n)


def rtt_label(model: str, rtt: str | None) -> str:
    """How a system answering by Reason-then-Translate is named in a table."""
    return f"{model} (RTT {rtt})" if rtt else model


# Stores and results.json written before the mode was a field named an RTT system by its label
# alone ("<model> (RTT <mode>)"); read only as a fallback for those.
_OLD_RTT_LABEL = re.compile(r"^(?P<model>.+) \(RTT (?P<mode>[a-z_]+)\)$")


def with_rtt(labels: dict) -> dict:
    """A judged system's labels with the RTT mode as the `rtt` field (None: answered directly)
    and the model's own name."""
    if labels.get("rtt"):
        return dict(labels)
    old = _OLD_RTT_LABEL.match(str(labels.get("model") or ""))
    if old:
        return {**labels, "model": old["model"], "rtt": old["mode"]}
    return {**labels, "rtt": None}


@dataclass
class SystemRow:
    """One evaluated system: its labels (from the judge artifact or a run's results.json) and
    metrics."""

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
    rtt: str | None = None  # the Reason-then-Translate mode; None: answered directly

    @property
    def name(self) -> str:
        """The system's name in a table: the model, and its RTT mode where it has one."""
        return rtt_label(self.model, self.rtt)

    @property
    def comparison(self) -> str:
        """What a win rate is measured against; rows of different comparisons never share a
        table."""
        judge = judge_label(self.judge or "?", self.protocol or None)
        return f"vs {self.reference or '?'}, judged by {judge} on {self.benchmark or '?'}"

    def label(self, short: bool = False, show_exp: bool = True) -> str:
        """ "EuroLLM 9B", "EuroLLM 9B +2K instructions (naive, selection)"; short:
        "+2K instructions" (under its model's row); the experiment only where a table mixes
        experiments."""
        if self.data_size is None:
            return self.name
        selection = self.selection if self.selection not in (None, "best_of_k") else None
        extra = [x for x in (selection, self.exp if show_exp else None) if x]
        tuned = f"+{size_label(self.data_size)} instructions" + (
            f" ({', '.join(extra)})" if extra else ""
        )
        return tuned if short else f"{self.name} {tuned}"

    def value(self, lang: str, metric: str = "win_rate") -> float | None:
        v = (self.metrics.get(lang) or {}).get(metric)
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def system_from_labels(labels: dict, metrics: dict, key: str = "") -> SystemRow:
    labels = with_rtt(labels)
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
        rtt=labels.get("rtt"),
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
        key = meta.get("key", done.parent.name)
        labels = meta.get("system") or {"model": f"metrics:{key}"}
        row = system_from_labels(
            labels, json.loads(metrics_file.read_text()), labels.get("judge_key") or key
        )
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
        raise FileNotFoundError(
            f"report: {path} is not a directory (give a sweep dir, a run dir or a store dir)"
        )
    rows = rows_from_runs(path)
    if not rows and (path / "metrics").is_dir():
        rows = rows_from_store(path)
    if not rows:
        raise FileNotFoundError(
            f"report: nothing to report in {path}: no results.json with metrics under it "
            "(run with the report stage) "
            "and no finished metrics artifacts (metrics/<key>/metrics.json) in it"
        )
    return rows


def order_rows(rows: list[SystemRow]) -> list[SystemRow]:
    """Per system: the model as is first, then its fine-tunes by data size (Table 6)."""
    return sorted(
        rows,
        key=lambda r: (
            r.name,
            r.data_size is not None,
            r.data_size or 0,
            r.selection or "",
            r.exp or "",
            r.key,
        ),
    )


def group_tables(rows: list[SystemRow]) -> dict[str, list[SystemRow]]:
    tables: dict[str, list[SystemRow]] = {}
    for row in rows:
        tables.setdefault(row.comparison, []).append(row)
    return {name: order_rows(tables[name]) for name in sorted(tables)}


def languages(rows: list[SystemRow]) -> list[str]:
    langs: dict[str, None] = {}
    for row in rows:
        for lang in row.metrics:
            if lang != "avg":
                langs.setdefault(lang, None)
    return list(langs)


def best(values: list[float | None], column: Column) -> float | None:
    """The best of `values` as the column's declaration says which way is better, at the
    precision the column is written with (so ties as shown are all best); None where the column
    has no best (counts, CI bounds) or no value."""
    shown = [round(v, column.decimals) for v in values if v is not None and not math.isnan(v)]
    if column.higher_is_better is None or not shown:
        return None
    return max(shown) if column.higher_is_better else min(shown)


def is_best(value: Any, best_value: float | None, column: Column) -> bool:
    if (
        best_value is None
        or not isinstance(value, int | float)
        or isinstance(value, bool)
        or math.isnan(value)
    ):
        return False
    return round(value, column.decimals) == best_value


def best_by_lang(metrics: dict[str, dict], column: Column) -> float | None:
    """The best value of one column among a system's languages (its "avg" row aside)."""
    return best(
        [_number(row.get(column.key)) for lang, row in metrics.items() if lang != "avg"], column
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def lang_order(table: dict) -> list[str]:
    """A per-language table's rows: the languages as stored, then "avg"."""
    return [k for k in table if k != "avg"] + (["avg"] if "avg" in table else [])


def rubric_columns(scores: dict) -> list[str]:
    """Table 8's columns: the average over criteria, each criterion, the malformed count."""
    criteria = [
        k for k in next(iter(scores.values()), {}) if k not in ("average", "n", "n_malformed")
    ]
    return ["average", *criteria, "n_malformed"]


def rtt_deltas(rows: list[SystemRow], metric: str = "win_rate") -> list[SystemRow]:
    """Table 2: each Reason-then-Translate row minus the same system answering directly (same
    model, adapter size, selection and comparison), per language and Avg, in points. A language
    either row lacks is absent (never 0); an RTT row without its direct row gives no delta row."""
    direct = {(r.model, r.data_size, r.selection, r.comparison): r for r in rows if not r.rtt}
    deltas = []
    for row in rows:
        base = (
            direct.get((row.model, row.data_size, row.selection, row.comparison))
            if row.rtt
            else None
        )
        if base is None:
            continue
        diff = {}
        for lang in row.metrics:
            a, b = row.value(lang, metric), base.value(lang, metric)
            if a is not None and b is not None:
                diff[lang] = {metric: a - b}
        deltas.append(
            replace(
                row, model=f"{row.model} ({row.rtt} - direct)", rtt=None, metrics=diff, exp=None
            )
        )
    return deltas

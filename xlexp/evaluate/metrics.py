"""Win rates against the reference, bootstrap CIs, lengths, and the per-language summary table,
computed from the judge artifact's stored verdict rows and the two systems' outputs.

A preference is P(system output better) in [0, 1] (see judge.py); the win rate is its mean in
percent, so a tie (0.5) counts half, as in AlpacaEval. A number in the table is right or
absent (None, shown as a dash), never NaN. Counts, all in prompts:
- `n`: prompts with a preference (judged or identical outputs);
- `n_malformed`: prompts the judge gave no usable verdict for (left out of the rates);
- `n_failed`: prompts whose system or reference response failed (never judged);
- `n_identical`: prompts with identical outputs (a tie without a judge call, inside `n`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from xlexp.evaluate import judge, langid, lc
from xlexp.evaluate.columns import Column, Metric
from xlexp.registry import Registry


def usable(p: Any) -> bool:
    """A preference the rates may use: a finite number in [0, 1] (not None, NaN or bool)."""
    return (
        isinstance(p, int | float)
        and not isinstance(p, bool)
        and math.isfinite(p)
        and 0.0 <= p <= 1.0
    )


def _valid(prefs: Sequence[Any]) -> np.ndarray:
    return np.asarray([p for p in prefs if usable(p)], dtype=float)


def win_rate(prefs: Sequence[Any]) -> float | None:
    """Mean preference x 100; None when no preference is usable."""
    values = _valid(prefs)
    return float(values.mean() * 100) if values.size else None


def standard_error(prefs: Sequence[Any]) -> float | None:
    """alpaca_eval's `standard_error` of the win rate (its `get_winrate`: the s.e.m. of the
    preferences, x 100), computed by its own code; None with fewer than 2 usable preferences."""
    values = _valid(prefs)
    if values.size < 2:
        return None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # alpaca_eval's imports warn on our pinned versions
        from alpaca_eval.metrics import get_winrate

        # alpaca_eval's scale: 1 = the baseline (our reference) better, 2 = the model better.
        se = get_winrate([{"preference": 1.0 + v} for v in values])["standard_error"]
    return float(se)  # the s.e.m. of two or more numbers in [0, 1] is finite


def _boot_means(values: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    idx = rng.integers(0, values.size, size=(n, values.size))
    return values[idx].mean(axis=1) * 100


def _interval(means: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def bootstrap_ci(
    prefs: Sequence[Any], n: int = 1000, seed: int = 1, alpha: float = 0.05
) -> tuple[float | None, float | None]:
    """Percentile bootstrap (1 - alpha) interval of the win rate, seeded; (None, None) if empty."""
    values = _valid(prefs)
    if not values.size or n < 1:
        return None, None
    return _interval(_boot_means(values, n, np.random.default_rng(seed)), alpha)


def avg_length(outputs: Sequence[Any]) -> float | None:
    """Mean length in characters of the outputs that exist (strings); None when there are none.

    A failed response (None, or NaN from pandas) has no length: it is counted as failed elsewhere.
    """
    present = [o for o in outputs if isinstance(o, str)]
    return sum(len(o) for o in present) / len(present) if present else None


def entry_from_rows(
    verdict_rows: Sequence[dict], outputs: Sequence[Any], ref_outputs: Sequence[Any]
) -> dict:
    """One language's `summarize` entry from the judge artifact's stored rows (same order as the
    outputs). Rows stored before statuses existed count as judged or malformed by preference."""
    if not len(verdict_rows) == len(outputs) == len(ref_outputs):
        raise ValueError(
            f"{len(verdict_rows)} verdict rows, {len(outputs)} outputs, "
            f"{len(ref_outputs)} reference outputs"
        )
    prefs, statuses = [], []
    for row in verdict_rows:
        status = row.get("status") or judge.JUDGED
        pref = row.get("preference") if usable(row.get("preference")) else None
        if status in (judge.JUDGED, judge.IDENTICAL) and pref is None:
            status = judge.MALFORMED  # no status and no verdict, or an older parser's NaN
        statuses.append(status)
        prefs.append(pref)
    return {
        "prefs": prefs,
        "outputs": list(outputs),
        "ref_outputs": list(ref_outputs),
        "n_malformed": statuses.count(judge.MALFORMED),
        "n_failed": statuses.count(judge.FAILED),
        "n_identical": statuses.count(judge.IDENTICAL),
    }


@dataclass
class LangData:
    """What the metrics of one language are computed from: the judge's preferences aligned with
    the system's and the reference's outputs, and the prompt counts of `entry_from_rows`."""

    lang: str
    index: int  # position among the languages (seeds its bootstrap stream)
    prefs: list[Any]
    outputs: list[Any]
    ref_outputs: list[Any] | None = None
    n_malformed: int | None = None  # None: prompts without a usable preference, failed ones aside
    n_failed: int | None = None  # None: system outputs that are not strings
    n_identical: int = 0
    lang_fidelity: Any = None  # None: detected from `outputs`; a rate or langid.fidelity's dict
    lc_boot: int = 0  # bootstrap replicates of the LC fit (0: no LC s.e.)


def _mean_if_all(rows: list[dict], key: str) -> float | None:
    # A language without a value makes the average absent, not an average of fewer languages.
    values = [r[key] for r in rows]
    return sum(values) / len(values) if values and all(v is not None for v in values) else None


def _mean_of(*keys: str) -> Callable[..., dict]:
    def average(
        rows: list[dict], data: list[LangData], n_boot: int, seed: int, alpha: float
    ) -> dict:
        return {k: _mean_if_all(rows, k) for k in keys}

    return average


def _sum_of(*keys: str) -> Callable[..., dict]:
    def average(
        rows: list[dict], data: list[LangData], n_boot: int, seed: int, alpha: float
    ) -> dict:
        return {k: sum(r[k] for r in rows) for k in keys}

    return average


def _win_rate(d: LangData, n_boot: int, seed: int, alpha: float) -> dict:
    # An interval needs two preferences: one gives a zero-width "interval" that reads as certainty.
    lo, hi = bootstrap_ci(d.prefs, n=n_boot, seed=seed, alpha=alpha) if _n(d) >= 2 else (None, None)
    return {"win_rate": win_rate(d.prefs), "ci_low": lo, "ci_high": hi}


def _n(d: LangData) -> int:
    return int(_valid(d.prefs).size)


def _win_rate_avg(
    rows: list[dict], data: list[LangData], n_boot: int, seed: int, alpha: float
) -> dict:
    # The macro average's CI bootstraps that average, resampling each language independently.
    mean = _mean_if_all(rows, "win_rate")
    if mean is None or n_boot < 1 or any(_n(d) < 2 for d in data):
        return {"win_rate": mean, "ci_low": None, "ci_high": None}
    boot = [
        _boot_means(_valid(d.prefs), n_boot, np.random.default_rng([seed, d.index])) for d in data
    ]
    lo, hi = _interval(np.mean(boot, axis=0), alpha)
    return {"win_rate": mean, "ci_low": lo, "ci_high": hi}


def _se_of_mean(ses: list[Any]) -> float | None:
    # Languages are independent samples: the variance of their mean is the mean variance / n.
    if not ses or any(s is None for s in ses):
        return None
    return math.sqrt(sum(s * s for s in ses)) / len(ses)


def _se(d: LangData, n_boot: int, seed: int, alpha: float) -> dict:
    return {"se": standard_error(d.prefs)}


def _se_avg(rows: list[dict], data: list[LangData], n_boot: int, seed: int, alpha: float) -> dict:
    return {"se": _se_of_mean([r["se"] for r in rows])}


def _n_failed(d: LangData) -> int:
    return int(
        d.n_failed if d.n_failed is not None else sum(not isinstance(o, str) for o in d.outputs)
    )


def _counts(d: LangData, n_boot: int, seed: int, alpha: float) -> dict:
    n = int(_valid(d.prefs).size)
    failed = _n_failed(d)
    malformed = d.n_malformed if d.n_malformed is not None else max(len(d.prefs) - n - failed, 0)
    return {
        "n": n,
        "n_malformed": int(malformed),
        "n_failed": failed,
        "n_identical": int(d.n_identical),
    }


def _fidelity(d: LangData, n_boot: int, seed: int, alpha: float) -> dict:
    fid = d.lang_fidelity
    if fid is None:
        fid = langid.fidelity(d.outputs, d.lang)
    elif not isinstance(fid, dict):
        fid = {"rate": float(fid) if usable(fid) else None}  # a rate alone: none undetermined
    return {"lang_fidelity": fid["rate"], "n_undetermined": int(fid.get("n_undetermined", 0))}


def _fidelity_avg(
    rows: list[dict], data: list[LangData], n_boot: int, seed: int, alpha: float
) -> dict:
    return {
        "lang_fidelity": _mean_if_all(rows, "lang_fidelity"),
        "n_undetermined": sum(r["n_undetermined"] for r in rows),
    }


def _lc(d: LangData, n_boot: int, seed: int, alpha: float) -> dict:
    # Length control needs the reference outputs the judge compared against.
    if d.ref_outputs is None:
        return {"lc_win_rate": None, "lc_se_boot": None}
    return lc.length_controlled(
        d.prefs, d.outputs, d.ref_outputs, n_boot=d.lc_boot, seed=[seed, d.index]
    )


def _lc_avg(rows: list[dict], data: list[LangData], n_boot: int, seed: int, alpha: float) -> dict:
    out = {"lc_win_rate": _mean_if_all(rows, "lc_win_rate"),
           "lc_se_boot": _se_of_mean([r["lc_se_boot"] for r in rows])}
    if out["lc_se_boot"] is None and data and all(d.lc_boot > 0 for d in data):
        absent = [d.lang for d, r in zip(data, rows, strict=True) if r["lc_se_boot"] is None]
        out["notes"] = {"lc_se_boot": f"absent for {', '.join(absent)}"}
    return out


# The metrics and their columns, in table order. Adding a metric is one `register` line: the
# metrics artifact's key holds these names, so stored judgements gain the column without a judge
# call (and the same names in the same order keep the same key).
METRICS: Registry[Metric] = Registry("metric")
METRICS.register("win_rate", Metric(
    (Column("win_rate", "win rate", ".2f", True), Column("ci_low", "95% CI low"),
     Column("ci_high", "95% CI high")),
    _win_rate, _win_rate_avg,
))
METRICS.register("se", Metric((Column("se", "s.e."),), _se, _se_avg))
METRICS.register("lang_fidelity", Metric(
    (Column("lang_fidelity", "lang fidelity", ".3f", True),
     Column("n_undetermined", "lang undetermined", "d")),
    _fidelity, _fidelity_avg,
))
# Line level (the Language Confusion Benchmark's): see langid.line_fidelity.
METRICS.register("line_fidelity", Metric(
    (Column("line_fidelity", "line fidelity", ".3f", True),
     Column("line_pass_rate", "line pass rate", ".3f", True),
     Column("line_word_pass_rate", "line word pass rate", ".3f", True),
     Column("n_line_undetermined", "lines undetermined", "d")),
    lambda d, *_: langid.line_fidelity(d.outputs, d.lang),
    lambda *a: {**_mean_of("line_fidelity", "line_pass_rate", "line_word_pass_rate")(*a),
                **_sum_of("n_line_undetermined")(*a)},
))
METRICS.register("avg_len", Metric(
    (Column("avg_len", "avg len", ".1f"),),
    lambda d, *_: {"avg_len": avg_length(d.outputs)}, _mean_of("avg_len"),
))
METRICS.register("counts", Metric(
    (Column("n", "n", "d"), Column("n_malformed", "malformed", "d"),
     Column("n_failed", "failed", "d"), Column("n_identical", "identical", "d")),
    _counts, _sum_of("n", "n_malformed", "n_failed", "n_identical"),
))
METRICS.register("lc_win_rate", Metric(
    (Column("lc_win_rate", "LC win rate", ".2f", True),
     Column("lc_se_boot", "LC s.e. (bootstrap)")),
    _lc, _lc_avg,
))

# Uncertainty columns: absent by choice (no bootstrap asked, n < 2), so never "missing".
UNCERTAINTY = ("ci_low", "ci_high", "se", "lc_se_boot")


def columns(names: Sequence[str] | None = None) -> list[Column]:
    """Every column the named metrics (default: all) produce, in table order."""
    return [col for name in (names or METRICS.names()) for col in METRICS.get(name).columns]


def stored_columns(names: Sequence[str] | None = None) -> list[list[str]]:
    """What a metrics artifact's columns.json holds: [key, label] per column (the format and
    the direction stay in the declarations, so a stored artifact never pins them)."""
    return [[c.key, c.label] for c in columns(names)]


def declared_columns(stored: Sequence[Any] | None = None) -> list[Column]:
    """The declarations of stored columns ([key, label] pairs from columns.json or a run's
    summary; None: every declared column). A column no metric declares any more keeps its
    label, the default format and no best."""
    if stored is None:
        return columns()
    declared = {c.key: c for c in columns()}
    return [declared.get(str(c[0])) or Column(str(c[0]), str(c[1])) for c in stored]


def column(key: str) -> Column:
    """The declaration of one column (an undeclared one: its key as label, no best)."""
    return next((c for c in columns() if c.key == key), Column(key, key.replace("_", " ")))


def summarize_langs(
    data: Sequence[LangData],
    names: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 1,
    alpha: float = 0.05,
) -> dict[str, dict]:
    """One row per language + "avg" (the macro average, as the paper's tables).

    A value is a number or None (absent), never NaN. An average is absent when a language lacks
    that value; `avg["missing"]` then names the languages per column. A row's `notes` say why
    an uncertainty column is absent where the reason is worth printing (a degenerate LC fit).
    """
    metrics = [METRICS.get(n) for n in (names or METRICS.names())]
    table = {d.lang: _row([m.per_lang(d, n_boot, seed, alpha) for m in metrics]) for d in data}
    rows = list(table.values())
    avg = _row([m.average(rows, list(data), n_boot, seed, alpha) for m in metrics])
    missing = {
        k: [lang for lang, r in table.items() if r[k] is None]
        for k in avg
        if k not in (*UNCERTAINTY, "notes")
    }
    missing = {k: langs for k, langs in missing.items() if langs}
    if missing:
        avg["missing"] = missing
    table["avg"] = avg
    return table


def _row(parts: list[dict]) -> dict:
    """One table row from the metrics' dicts; their `notes` (column -> why it is absent) merged."""
    row: dict = {}
    notes: dict = {}
    for part in parts:
        part = dict(part)
        notes.update(part.pop("notes", None) or {})
        row.update(part)
    if notes:
        row["notes"] = notes
    return row


def lang_data(lang: str, index: int, entry: dict, lc_boot: int = 0) -> LangData:
    """A language's `LangData` from a `summarize` entry; `lc_boot` replicates of the LC fit."""
    return LangData(
        lang=lang,
        index=index,
        prefs=list(entry.get("prefs", [])),
        outputs=list(entry.get("outputs", [])),
        ref_outputs=entry.get("ref_outputs"),
        n_malformed=entry.get("n_malformed"),
        n_failed=entry.get("n_failed"),
        n_identical=int(entry.get("n_identical", 0)),
        lang_fidelity=entry.get("lang_fidelity"),
        lc_boot=lc_boot,
    )


def summarize(
    per_lang: dict[str, dict],
    n_boot: int = 1000,
    seed: int = 1,
    alpha: float = 0.05,
    lc_boot: int = 0,
) -> dict[str, dict]:
    """`summarize_langs` on plain dicts: each `per_lang[lang]` holds `prefs` (None = no
    verdict), `outputs` (None for a failed response), and optionally `ref_outputs` (needed for
    the LC win rate), `n_malformed`, `n_failed`, `n_identical` (see `entry_from_rows`) and
    `lang_fidelity` (else detected from `outputs`)."""
    data = [lang_data(lang, i, e, lc_boot) for i, (lang, e) in enumerate(per_lang.items())]
    return summarize_langs(data, n_boot=n_boot, seed=seed, alpha=alpha)

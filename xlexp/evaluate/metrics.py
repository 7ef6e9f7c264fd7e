"""Win rates against the reference, bootstrap CIs, lengths, and the per-language summary table.

A preference is P(system output better) in [0, 1] (see judge.py); the win rate is its mean in
percent, so a tie (0.5) counts half, as in AlpacaEval. None marks a row with no usable verdict
and is left out of the rates (counted as malformed instead).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from xlexp.evaluate import langid, lc

NAN = float("nan")


def _valid(prefs: Sequence[float | None]) -> np.ndarray:
    return np.asarray([p for p in prefs if p is not None], dtype=float)


def win_rate(prefs: Sequence[float | None]) -> float:
    """Mean preference x 100; NaN when no preference is usable."""
    values = _valid(prefs)
    return float(values.mean() * 100) if values.size else NAN


def _boot_means(values: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    idx = rng.integers(0, values.size, size=(n, values.size))
    return values[idx].mean(axis=1) * 100


def _interval(means: np.ndarray, alpha: float) -> tuple[float, float]:
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def bootstrap_ci(
    prefs: Sequence[float | None], n: int = 1000, seed: int = 1, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile bootstrap (1 - alpha) interval of the win rate, seeded; (NaN, NaN) if empty."""
    values = _valid(prefs)
    if not values.size:
        return NAN, NAN
    return _interval(_boot_means(values, n, np.random.default_rng(seed)), alpha)


def avg_length(outputs: Sequence[str]) -> float:
    """Mean output length in characters; NaN for no outputs."""
    return sum(len(o or "") for o in outputs) / len(outputs) if outputs else NAN


def _mean(xs: list[float]) -> float:
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    return sum(xs) / len(xs) if xs else NAN


@dataclass
class LangData:
    """What the metrics of one language are computed from: the judge's preferences aligned with
    the system's and the reference's outputs."""

    lang: str
    index: int  # position among the languages (seeds its bootstrap stream)
    prefs: list[float | None]
    outputs: list[str]
    ref_outputs: list[str] | None = None
    n_malformed: int | None = None  # None: the number of None prefs
    lang_fidelity: float | None = None  # None: detected from `outputs`


@dataclass(frozen=True)
class Metric:
    """Columns of the results table: `per_lang(data, n_boot, seed, alpha) -> {column: value}`
    and `average(rows, data, n_boot, seed, alpha) -> {column: value}` for the "avg" row."""

    columns: tuple[tuple[str, str], ...]  # (key, label)
    per_lang: Callable[..., dict]
    average: Callable[..., dict]


def _mean_of(*keys: str) -> Callable[..., dict]:
    def average(rows: list[dict], data: list[LangData], n_boot: int, seed: int, alpha: float) -> dict:
        return {k: _mean([r[k] for r in rows]) for k in keys}

    return average


def _win_rate(d: LangData, n_boot: int, seed: int, alpha: float) -> dict:
    lo, hi = bootstrap_ci(d.prefs, n=n_boot, seed=seed, alpha=alpha)
    return {"win_rate": win_rate(d.prefs), "ci_low": lo, "ci_high": hi}


def _win_rate_avg(rows: list[dict], data: list[LangData], n_boot: int, seed: int, alpha: float) -> dict:
    # The macro average's CI bootstraps that average, resampling each language independently.
    boot = [
        _boot_means(values, n_boot, np.random.default_rng([seed, d.index]))
        for d in data
        if (values := _valid(d.prefs)).size
    ]
    lo, hi = _interval(np.mean(boot, axis=0), alpha) if boot else (NAN, NAN)
    return {"win_rate": _mean([r["win_rate"] for r in rows]), "ci_low": lo, "ci_high": hi}


def _counts(d: LangData, n_boot: int, seed: int, alpha: float) -> dict:
    n = int(_valid(d.prefs).size)
    return {"n": n, "n_malformed": int(d.n_malformed if d.n_malformed is not None else len(d.prefs) - n)}


def _fidelity(d: LangData, n_boot: int, seed: int, alpha: float) -> dict:
    fid = d.lang_fidelity
    if fid is None:
        fid = langid.fidelity(d.outputs, d.lang) if d.outputs else NAN
    return {"lang_fidelity": float(fid)}


def _lc(d: LangData, n_boot: int, seed: int, alpha: float) -> dict:
    # Length control needs the reference outputs the judge compared against.
    refs = d.ref_outputs
    return {"lc_win_rate": lc.lc_win_rate(d.prefs, d.outputs, refs) if refs is not None else NAN}


# The metrics and their columns, in table order. Adding a metric is one entry here: the metrics
# artifact's key holds these names, so stored judgements gain the column without a judge call.
METRICS: dict[str, Metric] = {
    "win_rate": Metric((("win_rate", "win rate"), ("ci_low", "95% CI low"), ("ci_high", "95% CI high")), _win_rate, _win_rate_avg),
    "lang_fidelity": Metric((("lang_fidelity", "lang fidelity"),), _fidelity, _mean_of("lang_fidelity")),
    "avg_len": Metric((("avg_len", "avg len"),), lambda d, *_: {"avg_len": avg_length(d.outputs)}, _mean_of("avg_len")),
    "counts": Metric(
        (("n", "n"), ("n_malformed", "malformed")),
        _counts,
        lambda rows, *_: {"n": sum(r["n"] for r in rows), "n_malformed": sum(r["n_malformed"] for r in rows)},
    ),
    "lc_win_rate": Metric((("lc_win_rate", "LC win rate"),), _lc, _mean_of("lc_win_rate")),
}


def columns(names: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """(key, label) of every column the named metrics (default: all) produce, in table order."""
    return [col for name in (names or METRICS) for col in METRICS[name].columns]


def summarize_langs(
    data: Sequence[LangData], names: Sequence[str] | None = None, n_boot: int = 1000, seed: int = 1, alpha: float = 0.05
) -> dict[str, dict]:
    """One row per language + "avg" (the macro average, as the paper's tables)."""
    metrics = [METRICS[n] for n in (names or METRICS)]
    table = {d.lang: {k: v for m in metrics for k, v in m.per_lang(d, n_boot, seed, alpha).items()} for d in data}
    rows = list(table.values())
    table["avg"] = {k: v for m in metrics for k, v in m.average(rows, list(data), n_boot, seed, alpha).items()}
    return table


def summarize(
    per_lang: dict[str, dict], n_boot: int = 1000, seed: int = 1, alpha: float = 0.05
) -> dict[str, dict]:
    """`summarize_langs` on plain dicts: each `per_lang[lang]` holds `prefs` (None = no
    verdict), `outputs`, and optionally `ref_outputs`, `n_malformed`, `lang_fidelity`."""
    data = [
        LangData(
            lang=lang,
            index=i,
            prefs=list(e.get("prefs", [])),
            outputs=list(e.get("outputs", [])),
            ref_outputs=e.get("ref_outputs"),
            n_malformed=e.get("n_malformed"),
            lang_fidelity=e.get("lang_fidelity"),
        )
        for i, (lang, e) in enumerate(per_lang.items())
    ]
    return summarize_langs(data, n_boot=n_boot, seed=seed, alpha=alpha)

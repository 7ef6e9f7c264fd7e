"""Win rates against the reference, bootstrap CIs, lengths, and the per-language summary table.

A preference is P(system output better) in [0, 1] (see judge.py); the win rate is its mean in
percent, so a tie (0.5) counts half, as in AlpacaEval. None marks a row with no usable verdict
and is left out of the rates (counted as malformed instead).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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


def summarize(
    per_lang: dict[str, dict], n_boot: int = 1000, seed: int = 1, alpha: float = 0.05
) -> dict[str, dict]:
    """Rows `{win_rate, ci_low, ci_high, n, n_malformed, avg_len, lang_fidelity}` per language + "avg".

    Each `per_lang[lang]` holds `prefs` (None = no verdict), `outputs` (the system's outputs)
    and optionally `lang_fidelity` (else detected from `outputs`) and `n_malformed` (else the
    number of None prefs), and optionally `ref_outputs` (the reference's outputs, same order)
    for the length-controlled win rate `lc_win_rate` (NaN without them).
    "avg" is the macro average over languages, as the paper's tables;
    its CI bootstraps that average, resampling each language independently.
    """
    table: dict[str, dict] = {}
    boot: list[np.ndarray] = []
    for i, (lang, entry) in enumerate(per_lang.items()):
        prefs = list(entry.get("prefs", []))
        outputs = list(entry.get("outputs", []))
        values = _valid(prefs)
        fid = entry.get("lang_fidelity")
        if fid is None:
            fid = langid.fidelity(outputs, lang) if outputs else NAN
        lo, hi = bootstrap_ci(prefs, n=n_boot, seed=seed, alpha=alpha)
        table[lang] = {
            "win_rate": win_rate(prefs),
            "ci_low": lo,
            "ci_high": hi,
            "n": int(values.size),
            "n_malformed": int(entry.get("n_malformed", len(prefs) - values.size)),
            "avg_len": avg_length(outputs),
            "lang_fidelity": float(fid),
        }
        # Length-controlled win rate needs the reference outputs the judge compared against.
        refs = entry.get("ref_outputs")
        table[lang]["lc_win_rate"] = lc.lc_win_rate(prefs, outputs, refs) if refs is not None else NAN
        if values.size:
            boot.append(_boot_means(values, n_boot, np.random.default_rng([seed, i])))
    rows = list(table.values())
    avg = {key: _mean([r[key] for r in rows]) for key in ("win_rate", "avg_len", "lang_fidelity")}
    avg_lo, avg_hi = _interval(np.mean(boot, axis=0), alpha) if boot else (NAN, NAN)
    table["avg"] = {
        "win_rate": avg["win_rate"],
        "ci_low": avg_lo,
        "ci_high": avg_hi,
        "n": sum(r["n"] for r in rows),
        "n_malformed": sum(r["n_malformed"] for r in rows),
        "avg_len": avg["avg_len"],
        "lang_fidelity": avg["lang_fidelity"],
    }
    table["avg"]["lc_win_rate"] = _mean([r["lc_win_rate"] for r in rows])
    return table

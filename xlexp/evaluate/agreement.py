"""How far to trust the judge, per language: each judge's win rate, the panel's, agreement of
every extra judge with the main one, the main judge's position consistency, and agreement with
human labels, computed from stored verdict rows (no model call).

Multilingual judges agree weakly and least in low-resource languages (Fleiss' kappa around 0.3
over 25 languages, "How Reliable is Multilingual LLM-as-a-Judge?", EMNLP 2025 Findings): these
numbers say per language whether a 2-point difference of the main table can be read.

- A verdict's label is alpaca_eval's (its `ZeroOneScoringRule`): a preference of exactly 0.5 is
  a tie, its own class, not a coin flip; otherwise the side it leans to. `SYSTEM`, `TIE`,
  `REFERENCE`. Human labels (system | reference | tie) are the same three classes.
- Cohen's kappa between two judges is over their labels on the prompts both gave a verdict for
  (scikit-learn's `cohen_kappa_score`, three classes); Pearson's r over their preferences.
  Both are absent where undefined (every label the same, a constant preference).
- The panel's preference of a prompt is the mean of its judges' usable preferences (a jury, as
  in "Replacing Judges with Juries", Verga et al. 2024); its win rate is their mean x 100.
- Position consistency: under a protocol that judges every prompt in both slot orders, the
  share of prompts with a verdict in both whose label flips with the order. A judge without
  position bias flips only where it is unsure; alpaca_eval's single random order cannot show it.
- Intervals are percentile bootstraps over prompts (paired: one resample for both judges).

Rows: one per language and judge (the main judge first, then the extra ones, then the panel),
and an "avg" row per judge: the macro average of a value when every language has it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xlexp.evaluate.columns import Column
from xlexp.evaluate.metrics import bootstrap_ci, usable, win_rate

SYSTEM, TIE, REFERENCE = 1, 0, -1
CLASSES = (REFERENCE, TIE, SYSTEM)
PANEL = "panel"

# The agreement table's columns, declared once for results.md and the view.
COLUMNS: tuple[Column, ...] = (
    Column("n", "n", "d"),
    Column("win_rate", "win rate", ".2f"),
    Column("ci_low", "95% CI low"),
    Column("ci_high", "95% CI high"),
    Column("flip_rate", "order flips", ".3f", False),
    Column("n_paired", "paired with main", "d"),
    Column("kappa", "κ vs main", ".3f", True),
    Column("kappa_low", "κ CI low", ".3f"),
    Column("kappa_high", "κ CI high", ".3f"),
    Column("pearson", "r vs main", ".3f", True),
    Column("pearson_low", "r CI low", ".3f"),
    Column("pearson_high", "r CI high", ".3f"),
    Column("n_human", "human labels", "d"),
    Column("human_agreement", "human agreement", ".3f", True),
    Column("human_kappa", "κ vs human", ".3f", True),
)
_COUNTS = ("n", "n_paired", "n_human")
_MEANS = ("win_rate", "flip_rate", "kappa", "pearson", "human_agreement", "human_kappa")


def label(pref: Any) -> int | None:
    """alpaca_eval's zero-one label of a preference: `TIE` at exactly 0.5, else the side it
    leans to; None for no usable preference."""
    if not usable(pref):
        return None
    return TIE if pref == 0.5 else SYSTEM if pref > 0.5 else REFERENCE


def _defined(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def kappa(a: Sequence[int], b: Sequence[int]) -> float | None:
    """Cohen's kappa of two label sequences over the three classes; None when undefined (both
    raters always give the same one class) or empty."""
    if not len(a):
        return None
    from sklearn.metrics import cohen_kappa_score

    with warnings.catch_warnings():  # undefined: NaN, with a warning, in every version
        warnings.simplefilter("ignore")
        return _defined(cohen_kappa_score(a, b, labels=list(CLASSES)))


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson's r; None with fewer than two pairs or a constant side."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xs.size < 2 or xs.std() == 0 or ys.std() == 0:
        return None
    return _defined(float(np.corrcoef(xs, ys)[0, 1]))


def _kappa_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kappa of each row of two (replicates, n) label arrays; NaN where undefined."""
    observed = (a == b).mean(axis=1)
    expected = sum((a == c).mean(axis=1) * (b == c).mean(axis=1) for c in CLASSES)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(expected < 1, (observed - expected) / (1 - expected), np.nan)


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    dx = x - x.mean(axis=1, keepdims=True)
    dy = y - y.mean(axis=1, keepdims=True)
    den = np.sqrt((dx * dx).sum(axis=1) * (dy * dy).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (dx * dy).sum(axis=1) / den, np.nan)


def _interval(values: np.ndarray, alpha: float) -> tuple[float | None, float | None]:
    finite = values[np.isfinite(values)]
    # Most replicates undefined (nearly all labels one class): no interval worth printing.
    if finite.size * 2 < values.size or not finite.size:
        return None, None
    lo, hi = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def paired(
    prefs: Sequence[Any], other: Sequence[Any], n_boot: int, rng: np.random.Generator,
    alpha: float,
) -> dict:
    """Kappa (labels) and Pearson (preferences) of two aligned preference lists over the prompts
    both have, with paired bootstrap intervals (none below two pairs or without `n_boot`)."""
    both = [(p, q) for p, q in zip(prefs, other, strict=True) if usable(p) and usable(q)]
    x = np.asarray([p for p, _ in both], dtype=float)
    y = np.asarray([q for _, q in both], dtype=float)
    a = np.asarray([label(p) for p in x], dtype=int)
    b = np.asarray([label(q) for q in y], dtype=int)
    out = {"n_paired": len(both), "kappa": kappa(a, b), "pearson": pearson(x, y),
           "kappa_low": None, "kappa_high": None, "pearson_low": None, "pearson_high": None}
    if len(both) >= 2 and n_boot >= 1:
        idx = rng.integers(0, len(both), size=(n_boot, len(both)))
        if out["kappa"] is not None:
            out["kappa_low"], out["kappa_high"] = _interval(_kappa_rows(a[idx], b[idx]), alpha)
        if out["pearson"] is not None:
            out["pearson_low"], out["pearson_high"] = _interval(
                _pearson_rows(x[idx], y[idx]), alpha
            )
    return out


def flip_rate(rows: Sequence[dict]) -> float | None:
    """Share of the rows judged in both slot orders ("sr", "rs") whose label flips with the
    order; None when no row has a verdict in both."""
    seen = flipped = 0
    for row in rows:
        by_order = {v.get("order"): label(v.get("preference")) for v in row.get("verdicts") or []}
        if by_order.get("sr") is None or by_order.get("rs") is None:
            continue
        seen += 1
        flipped += by_order["sr"] != by_order["rs"]
    return flipped / seen if seen else None


def human_agreement(prefs: Sequence[Any], humans: Sequence[int | None]) -> dict:
    """Agreement of a judge's labels with human labels (alpaca_eval's human agreement: the
    share of labelled prompts where both say the same) and their kappa."""
    both = [(label(p), h) for p, h in zip(prefs, humans, strict=True)
            if h is not None and label(p) is not None]
    if not both:
        return {"n_human": 0, "human_agreement": None, "human_kappa": None}
    a, b = [x for x, _ in both], [y for _, y in both]
    return {"n_human": len(both),
            "human_agreement": sum(x == y for x, y in both) / len(both),
            "human_kappa": kappa(a, b)}


def panel_prefs(prefs_by_judge: Sequence[Sequence[Any]]) -> list[float | None]:
    """Per prompt, the mean of the judges' usable preferences (None where no judge has one)."""
    out: list[float | None] = []
    for prefs in zip(*prefs_by_judge, strict=True):
        values = [p for p in prefs if usable(p)]
        out.append(sum(values) / len(values) if values else None)
    return out


@dataclass
class LangVerdicts:
    """One language's verdict rows per judge (the main judge first), aligned on `ids`, and the
    human labels of the prompts that have one (`SYSTEM`/`TIE`/`REFERENCE` by prompt id)."""

    lang: str
    ids: list[str]
    rows: dict[str, list[dict]]  # judge name -> verdict rows in `ids` order
    human: dict[str, int] = field(default_factory=dict)


def _prefs(rows: list[dict]) -> list[Any]:
    return [r.get("preference") if usable(r.get("preference")) else None for r in rows]


def _judge_row(
    lang: str, name: str, prefs: list[Any], data: LangVerdicts, n_boot: int, seed: int,
    alpha: float,
) -> dict:
    n = sum(usable(p) for p in prefs)
    # Seeded as the main table's interval: the main judge's row repeats that table's.
    lo, hi = bootstrap_ci(prefs, n=n_boot, seed=seed, alpha=alpha) if n >= 2 else (None, None)
    humans = [data.human.get(i) for i in data.ids]
    return {"lang": lang, "judge": name, "n": n, "win_rate": win_rate(prefs), "ci_low": lo,
            "ci_high": hi, **human_agreement(prefs, humans)}


def table(
    data: Sequence[LangVerdicts], n_boot: int = 1000, seed: int = 1, alpha: float = 0.05,
    both_orders: bool = False,
) -> list[dict]:
    """The agreement rows (see the module doc); `both_orders`: the protocol judged every prompt
    in both slot orders, so each judge's flip rate is defined."""
    out: list[dict] = []
    for i, lang in enumerate(data):
        names = list(lang.rows)
        main = _prefs(lang.rows[names[0]])
        prefs_of = {name: _prefs(rows) for name, rows in lang.rows.items()}
        for j, name in enumerate(names):
            rng = np.random.default_rng([seed, i, j])
            row = _judge_row(lang.lang, name, prefs_of[name], lang, n_boot, seed, alpha)
            row["flip_rate"] = flip_rate(lang.rows[name]) if both_orders else None
            row.update(paired(prefs_of[name], main, n_boot, rng, alpha) if j else
                       dict.fromkeys(("n_paired", "kappa", "kappa_low", "kappa_high", "pearson",
                                      "pearson_low", "pearson_high")))
            row["role"] = "main" if j == 0 else "extra"
            out.append(row)
        if len(names) > 1:
            prefs = panel_prefs(list(prefs_of.values()))
            row = _judge_row(lang.lang, PANEL, prefs, lang, n_boot, seed, alpha)
            out.append({**dict.fromkeys(c.key for c in COLUMNS), **row, "role": PANEL})
    return out + _averages(out)


def _averages(rows: list[dict]) -> list[dict]:
    """Per judge, the macro average over languages (absent where a language lacks the value)
    and the summed counts; no interval."""
    out = []
    for name in dict.fromkeys(r["judge"] for r in rows):
        mine = [r for r in rows if r["judge"] == name]
        avg = {**dict.fromkeys(c.key for c in COLUMNS), "lang": "avg", "judge": name,
               "role": mine[0]["role"]}
        for key in _MEANS:
            values = [r.get(key) for r in mine]
            avg[key] = sum(values) / len(values) if all(v is not None for v in values) else None
        for key in _COUNTS:
            counted = [r[key] for r in mine if r.get(key) is not None]
            avg[key] = sum(counted) if counted else None
        out.append(avg)
    return out


def wandb_values(stored: dict) -> dict[str, float]:
    """The agreement table as flat W&B values, `agreement/<protocol>/<lang>/<judge>/<column>`;
    absent values left out."""
    protocol = stored.get("protocol") or "judge"
    return {
        f"agreement/{protocol}/{row['lang']}/{row['judge']}/{col.key}": row[col.key]
        for row in stored.get("rows") or []
        for col in COLUMNS
        if isinstance(row.get(col.key), int | float) and not isinstance(row.get(col.key), bool)
    }

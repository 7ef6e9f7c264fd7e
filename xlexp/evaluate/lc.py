"""Length-controlled win rate (Dubois et al. 2024), fitted with alpaca_eval's own GLM code.

alpaca_eval's entry point `get_length_controlled_winrate` cannot run offline: before fitting
it always downloads `df_gamed.csv` (instruction difficulties and "gamed" baselines for the
805 English prompts under its GPT-4-turbo judge) from the hub. Those difficulties belong to
another judge and to English prompts, so we would not want them for XL-AlpacaEval anyway.
We therefore call the library's lower-level pieces, which need no network: its formula table
(`GLM_INFO`), `make_dmatrix_for_model` (patsy design matrix) and `fit_LogisticRegressionCV`
(L1 logistic regression on soft labels, 5-fold grouped CV), and predict with the length
term zeroed.

Which variant: ours IS alpaca_eval's `length_controlled_minimal` (preference ~
tanh(standardized length difference) + system term), computed as its entry point computes
it: the length difference is standardized over every compared row (rows without a verdict
included, as alpaca_eval keeps NaN preferences until the fit), the fit uses the rows with a
verdict. `length_controlled_v1` adds a per-instruction difficulty term that needs the hub's
precomputed difficulties (and with one system per language it is not identifiable).

Standard error: alpaca_eval reports `lc_standard_error` = the s.e.m. of the per-row GLM
predictions, which for the minimal GLM is 0 (with the length term zeroed, every row gets the
same prediction). We report instead the delta-method standard error of the predicted rate,
from the sandwich (heteroskedasticity-robust, since labels are soft) covariance of the
fitted coefficients: se = 100 * p(1-p) * se(system coefficient).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

GLM_NAME = "length_controlled_minimal"
MAX_SPLITS = 5  # alpaca_eval's GLM_INFO kwargs: n_splits=5
BASELINE_TERM = "not_gamed_baseline.astype(float)"  # the system term of the GLM's formula


def _usable(p: Any) -> bool:
    return isinstance(p, int | float) and math.isfinite(p) and 0.0 <= p <= 1.0


def _compared(
    prefs: Sequence[Any], outputs: Sequence[Any], ref_outputs: Sequence[Any]
) -> list[tuple[float | None, int, int]]:
    """(preference or None, system length, reference length) of rows with both outputs."""
    if not len(prefs) == len(outputs) == len(ref_outputs):
        raise ValueError(
            f"lc_win_rate: {len(prefs)} prefs, {len(outputs)} outputs, "
            f"{len(ref_outputs)} reference outputs"
        )
    return [
        (float(p) if _usable(p) else None, len(o), len(r))
        for p, o, r in zip(prefs, outputs, ref_outputs, strict=True)
        if isinstance(o, str) and isinstance(r, str)
    ]


def length_controlled(
    prefs: Sequence[Any], outputs: Sequence[Any], ref_outputs: Sequence[Any]
) -> dict[str, float | None]:
    """`{lc_win_rate, lc_se}` in percent of a system against the reference.

    `prefs[i]` is P(system output i better) in [0, 1] (None/NaN: no verdict, left out of the
    fit); outputs that are not strings (failed responses) leave their row out entirely.
    Both values are None with fewer than 2 verdicts. alpaca_eval's convention is output_1 =
    baseline, output_2 = the model and `std_delta_len = (len_1 - len_2) / std`, which we follow.
    """
    rows = _compared(prefs, outputs, ref_outputs)
    fit = [r for r in rows if r[0] is not None]
    if len(fit) < 2:
        return {"lc_win_rate": None, "lc_se": None}
    if len({r[0] for r in fit}) == 1:
        # Every verdict the same: no variation for length to explain; the GLM's answer is the
        # raw rate (liblinear would only approach it, printing warnings for the empty class).
        return {"lc_win_rate": float(fit[0][0] * 100), "lc_se": 0.0}
    import pandas as pd

    with warnings.catch_warnings():
        # alpaca_eval imports pkg_resources and passes sklearn-deprecated arguments
        # (penalty=, n_jobs=); both only warn on our pinned versions.
        warnings.simplefilter("ignore")
        from alpaca_eval.metrics import glm_winrate

        delta = np.asarray([r[2] - r[1] for r in rows], dtype=float)  # reference minus system
        std = delta.std(ddof=1) if len(delta) > 1 else 0.0  # pandas' Series.std, as alpaca_eval
        # No length difference at all: nothing to control for (alpaca_eval would divide by 0).
        std_delta = delta / std if std > 0 and math.isfinite(std) else np.zeros_like(delta)
        keep = [r[0] is not None for r in rows]
        pref = np.asarray([r[0] for r in fit], dtype=float)
        train = pd.DataFrame(
            {"preference": pref, "std_delta_len": std_delta[keep], "not_gamed_baseline": True}
        )
        test = train[["not_gamed_baseline"]].copy()
        test["std_delta_len"] = 0.0
        info = glm_winrate.GLM_INFO[GLM_NAME]  # the others need the hub's instruction difficulties
        xy_train, x_test = glm_winrate.make_dmatrix_for_model(train, test, formula=info["formula"])
        kwargs = {
            **info["kwargs"],
            "n_splits": min(int(info["kwargs"].get("n_splits", MAX_SPLITS)), len(fit)),
        }
        model = glm_winrate.fit_LogisticRegressionCV(
            xy_train, "preference", is_ytrue_proba=True, **kwargs
        )
        rate = float(model.predict_proba(x_test)[:, 1].mean())
    x = xy_train.drop(columns=["preference"])
    return {
        "lc_win_rate": rate * 100,
        "lc_se": _delta_method_se(x.to_numpy(float), pref, model.coef_[0], list(x.columns), rate),
    }


def _delta_method_se(
    x: np.ndarray, y: np.ndarray, coef: np.ndarray, columns: list[str], rate: float
) -> float | None:
    """Sandwich covariance of the logistic coefficients -> s.e. of the predicted rate, percent."""
    p = 1.0 / (1.0 + np.exp(-(x @ coef)))
    bread = (x * (p * (1 - p))[:, None]).T @ x
    meat = (x * ((y - p) ** 2)[:, None]).T @ x
    try:
        inv = np.linalg.inv(bread)
    except np.linalg.LinAlgError:
        return None
    cov = inv @ meat @ inv
    j = columns.index(BASELINE_TERM)
    var = float(cov[j, j])
    if not math.isfinite(var) or var < 0:
        return None
    return float(100 * rate * (1 - rate) * math.sqrt(var))


def lc_win_rate(
    prefs: Sequence[Any], outputs: Sequence[Any], ref_outputs: Sequence[Any]
) -> float | None:
    """The LC win rate alone (percent), None with fewer than 2 verdicts."""
    return length_controlled(prefs, outputs, ref_outputs)["lc_win_rate"]

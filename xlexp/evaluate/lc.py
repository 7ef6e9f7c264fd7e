"""Length-controlled win rate (Dubois et al. 2024), fitted with alpaca_eval's own GLM code.

alpaca_eval's entry point `get_length_controlled_winrate` cannot run offline: before fitting
it always downloads `df_gamed.csv` (instruction difficulties and "gamed" baselines for the
805 English prompts under its GPT-4-turbo judge) from the hub. Those difficulties belong to
another judge and to English prompts, so we would not want them for XL-AlpacaEval anyway.
We therefore call the library's lower-level pieces, which need no network: its formula table
(`GLM_INFO`), `make_dmatrix_for_model` (patsy design matrix) and `fit_LogisticRegressionCV`
(L1 logistic regression on soft labels, 5-fold grouped CV), and predict with the length
term zeroed, exactly as `get_length_controlled_winrate` does. The GLM is
`length_controlled_minimal`: preference ~ tanh(standardized length difference) + system term;
the per-instruction difficulty term of `length_controlled_v1` needs the hub's precomputed
difficulties and is left out (with one system per language it is not identifiable).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

GLM_NAME = "length_controlled_minimal"
MAX_SPLITS = 5  # alpaca_eval's GLM_INFO kwargs: n_splits=5


def lc_win_rate(prefs: Sequence[float | None], outputs: Sequence[str], ref_outputs: Sequence[str]) -> float:
    """LC win rate in percent of a system against the reference; NaN with fewer than 2 verdicts.

    `prefs[i]` is P(system output i better) in [0, 1] (None: no verdict, left out), as in
    metrics.py; alpaca_eval's convention is output_1 = baseline, output_2 = the model, and
    `std_delta_len = (len_1 - len_2) / std`, which we follow.
    """
    if not len(prefs) == len(outputs) == len(ref_outputs):
        raise ValueError(f"lc_win_rate: {len(prefs)} prefs, {len(outputs)} outputs, {len(ref_outputs)} reference outputs")
    rows = [(p, len(o or ""), len(r or "")) for p, o, r in zip(prefs, outputs, ref_outputs, strict=True) if p is not None]
    if len(rows) < 2:
        return float("nan")
    if len({r[0] for r in rows}) == 1:
        # Every verdict the same: no variation for length to explain; the GLM's answer is the
        # raw rate (liblinear would only approach it, printing warnings for the empty class).
        return float(rows[0][0] * 100)
    import pandas as pd

    with warnings.catch_warnings():
        # alpaca_eval imports pkg_resources and passes sklearn-1.8-deprecated arguments
        # (penalty=, n_jobs=); both only warn on our pinned versions.
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        from alpaca_eval.metrics import glm_winrate

        pref = np.asarray([r[0] for r in rows], dtype=float)
        delta = np.asarray([r[2] - r[1] for r in rows], dtype=float)  # reference minus system
        std = delta.std(ddof=1)  # pandas' Series.std, as alpaca_eval
        # No length difference at all: nothing to control for (alpaca_eval would divide by 0).
        std_delta = delta / std if std > 0 and math.isfinite(std) else np.zeros_like(delta)
        train = pd.DataFrame({"preference": pref, "std_delta_len": std_delta, "not_gamed_baseline": True})
        test = train[["not_gamed_baseline"]].copy()
        test["std_delta_len"] = 0.0
        info = glm_winrate.GLM_INFO[GLM_NAME]  # the others need the hub's instruction difficulties
        xy_train, x_test = glm_winrate.make_dmatrix_for_model(train, test, formula=info["formula"])
        kwargs = {**info["kwargs"], "n_splits": min(int(info["kwargs"].get("n_splits", MAX_SPLITS)), len(rows))}
        model = glm_winrate.fit_LogisticRegressionCV(xy_train, "preference", is_ytrue_proba=True, **kwargs)
        return float(model.predict_proba(x_test)[:, 1].mean() * 100)

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

Uncertainty: alpaca_eval reports `lc_standard_error` = the s.e.m. of the per-row GLM
predictions, which for the minimal GLM is 0 (with the length term zeroed, every row gets the
same prediction): no uncertainty of the rate. A delta-method s.e. at the L1-penalised optimum is
no better (near-singular designs gave 1e6, a zeroed length term a number for a fit that has
none). We report `lc_se_boot`: the standard deviation of the LC win rate over a seeded
bootstrap of the prompts, each replicate fitted exactly as the rate (length scale, CV, penalty);
or nothing, with the reason, when the fit is degenerate (every verdict the same; a length term
so nearly constant that the system term is not identified).
"""

from __future__ import annotations

import math
import os
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

GLM_NAME = "length_controlled_minimal"


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


# Above this condition number of the design, the length term is (nearly) a copy of the system
# term and the fit cannot tell them apart. Measured on 200 length-gamed prompts with every
# system output longer: at 3e3 the bootstrap still shows the instability (s.e. 15); from 3e6 on
# every replicate lands on the same penalised corner, an s.e. that looks certain and is not.
MAX_CONDITION = 1e5


def length_controlled(
    prefs: Sequence[Any],
    outputs: Sequence[Any],
    ref_outputs: Sequence[Any],
    n_boot: int = 0,
    seed: int | Sequence[int] = 1,
) -> dict[str, Any]:
    """`{lc_win_rate, lc_se_boot}` in percent of a system against the reference, and
    `notes: {lc_se_boot: reason}` when the bootstrap s.e. is absent for a reason worth saying.

    `prefs[i]` is P(system output i better) in [0, 1] (None/NaN: no verdict, left out of the
    fit); outputs that are not strings (failed responses) leave their row out entirely.
    Both values are None with fewer than 2 verdicts. alpaca_eval's convention is output_1 =
    baseline, output_2 = the model and `std_delta_len = (len_1 - len_2) / std`, which we follow.
    `n_boot` bootstrap replicates over the compared prompts (0: none), seeded by `seed`.
    """
    rows = _compared(prefs, outputs, ref_outputs)
    rate, condition = _fit(rows)
    out: dict[str, Any] = {"lc_win_rate": rate, "lc_se_boot": None}
    if rate is None or n_boot < 1:
        return out
    if len({r[0] for r in rows if r[0] is not None}) == 1:
        out["notes"] = {"lc_se_boot": "every verdict is the same: no variation to resample"}
    elif condition > MAX_CONDITION:
        out["notes"] = {
            "lc_se_boot": f"degenerate LC fit: the length term is nearly constant (condition "
            f"number {condition:.0e}), so the system term is not identified"
        }
    else:
        rng = np.random.default_rng(seed)
        boot = [_fit([rows[i] for i in rng.integers(0, len(rows), len(rows))])[0]
                for _ in range(n_boot)]
        found = np.asarray([b for b in boot if b is not None], dtype=float)
        if found.size >= 2:  # a replicate with < 2 verdicts has no rate: left out
            out["lc_se_boot"] = float(found.std(ddof=1))
    return out


_STDERR_SWAP = threading.Lock()


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """liblinear (C, inside sklearn) writes "WARNING: class label 1 specified in weight is not
    found" to the process's stderr for every CV fold that lacks one class: hundreds
    of lines per bootstrap. Python's warnings filter cannot reach a C fprintf, so fd 2 points at
    /dev/null while the fit runs (Python's own errors still raise)."""
    with _STDERR_SWAP:  # two threads swapping fd 2 at once could leave it on /dev/null
        sys.stderr.flush()
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


def _fit(rows: list[tuple[float | None, int, int]]) -> tuple[float | None, float]:
    """(LC win rate in percent or None with < 2 verdicts, condition number of the design)."""
    fit = [r for r in rows if r[0] is not None]
    if len(fit) < 2:
        return None, math.inf
    if len({r[0] for r in fit}) == 1:
        # Every verdict the same: no variation for length to explain; the GLM's answer is the
        # raw rate (liblinear would only approach it, printing warnings for the empty class).
        return float(fit[0][0] * 100), math.inf
    import pandas as pd

    with warnings.catch_warnings():
        # alpaca_eval imports pkg_resources and passes sklearn-deprecated arguments
        # (penalty=, n_jobs=); both only warn on our pinned versions.
        warnings.simplefilter("ignore")
        from alpaca_eval.metrics import glm_winrate

        delta = np.asarray([r[2] - r[1] for r in rows], dtype=float)  # reference minus system
        std = float(pd.Series(delta).std())  # as alpaca_eval: ddof 1, NaN for one row
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
            "n_splits": min(int(info["kwargs"]["n_splits"]), len(fit)),  # a fold needs a row
        }
        with _native_stderr_silenced():
            model = glm_winrate.fit_LogisticRegressionCV(
                xy_train, "preference", is_ytrue_proba=True, **kwargs
            )
        rate = float(model.predict_proba(x_test)[:, 1].mean())
    design = xy_train.drop(columns=["preference"]).to_numpy(float)
    design = design[:, np.abs(design).max(axis=0) > 0]  # no length difference: no length term
    return rate * 100, float(np.linalg.cond(design))


def lc_win_rate(
    prefs: Sequence[Any], outputs: Sequence[Any], ref_outputs: Sequence[Any]
) -> float | None:
    """The LC win rate alone (percent), None with fewer than 2 verdicts."""
    return length_controlled(prefs, outputs, ref_outputs)["lc_win_rate"]

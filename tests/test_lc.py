"""Length-controlled win rate (alpaca_eval's GLM) on hand-made data with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xlexp.evaluate.lc import lc_win_rate
from xlexp.evaluate.metrics import summarize, win_rate


def _length_gamed(n: int = 200, seed: int = 1) -> tuple[list[float], list[str], list[str]]:
    """Equal quality: the judge prefers whichever output is longer; the system is usually longer."""
    rng = np.random.default_rng(seed)
    ref_len = rng.integers(200, 600, n)
    sys_len = ref_len + rng.integers(100, 500, n) * np.where(rng.random(n) < 0.8, 1, -1)
    z = (sys_len - ref_len) / np.std(sys_len - ref_len)
    p_win = 1 / (1 + np.exp(-3 * np.tanh(z)))
    prefs = (rng.random(n) < p_win).astype(float).tolist()
    return prefs, ["s" * int(k) for k in sys_len], ["r" * int(k) for k in ref_len]


def test_no_length_difference_lc_matches_raw_win_rate() -> None:
    rng = np.random.default_rng(1)
    prefs = (rng.random(200) < 0.7).astype(float).tolist()
    raw = win_rate(prefs)
    lc = lc_win_rate(prefs, ["x" * 120] * 200, ["y" * 120] * 200)
    assert raw > 60
    assert abs(lc - raw) < 2.0


def test_winning_only_by_length_gets_lc_below_raw() -> None:
    prefs, outputs, refs = _length_gamed()
    raw = win_rate(prefs)
    lc = lc_win_rate(prefs, outputs, refs)
    assert raw > 65  # the raw win rate rewards length
    assert lc < raw - 10
    assert lc == pytest.approx(50, abs=8)  # with length held equal, the system is no better


def test_missing_verdicts_are_left_out_and_tiny_inputs_give_nan() -> None:
    prefs, outputs, refs = _length_gamed(n=60)
    with_none = [*prefs, None]
    assert lc_win_rate(with_none, [*outputs, "zz"], [*refs, "z"]) == pytest.approx(lc_win_rate(prefs, outputs, refs))
    assert math.isnan(lc_win_rate([1.0, None], ["a", "b"], ["c", "d"]))
    assert lc_win_rate([1.0] * 6, ["long" * 50] * 6, ["short"] * 6) == 100.0  # nothing to explain
    with pytest.raises(ValueError, match="reference outputs"):
        lc_win_rate([1.0, 0.0], ["a", "b"], ["c"])


def test_summarize_reports_lc_per_language_and_average() -> None:
    prefs, outputs, refs = _length_gamed(n=80)
    table = summarize(
        {
            "deu": {"prefs": prefs, "outputs": outputs, "ref_outputs": refs, "lang_fidelity": 1.0},
            "fra": {"prefs": prefs, "outputs": outputs, "lang_fidelity": 1.0},  # no reference outputs
        },
        n_boot=50,
    )
    assert table["deu"]["lc_win_rate"] == pytest.approx(lc_win_rate(prefs, outputs, refs))
    assert table["deu"]["lc_win_rate"] < table["deu"]["win_rate"]
    assert math.isnan(table["fra"]["lc_win_rate"])
    assert table["avg"]["lc_win_rate"] == pytest.approx(table["deu"]["lc_win_rate"])  # NaN left out

"""Length-controlled win rate (alpaca_eval's GLM) on hand-made data with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from xlexp.evaluate.lc import lc_win_rate, length_controlled
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
    # A row without a verdict is left out of the fit; a failed output leaves its row out entirely.
    assert lc_win_rate([*prefs, None], [*outputs, None], [*refs, "z"]) == pytest.approx(
        lc_win_rate(prefs, outputs, refs)
    )
    assert lc_win_rate([1.0, None], ["a", "b"], ["c", "d"]) is None
    assert (
        lc_win_rate([float("nan"), 1.0, 0.0], ["a", None, "bb"], ["c", "d", "e"]) is None
    )  # one usable row
    assert length_controlled([], [], []) == {"lc_win_rate": None, "lc_se_boot": None}
    assert lc_win_rate([1.0] * 6, ["long" * 50] * 6, ["short"] * 6) == 100.0  # nothing to explain
    with pytest.raises(ValueError, match="reference outputs"):
        lc_win_rate([1.0, 0.0], ["a", "b"], ["c"])


def test_summarize_reports_lc_per_language_and_average() -> None:
    prefs, outputs, refs = _length_gamed(n=80)
    table = summarize(
        {
            "deu": {"prefs": prefs, "outputs": outputs, "ref_outputs": refs, "lang_fidelity": 1.0},
            "fra": {
                "prefs": prefs,
                "outputs": outputs,
                "lang_fidelity": 1.0,
            },  # no reference outputs
        },
        n_boot=50,
    )
    assert table["deu"]["lc_win_rate"] == pytest.approx(lc_win_rate(prefs, outputs, refs))
    assert table["deu"]["lc_win_rate"] < table["deu"]["win_rate"]
    assert table["fra"]["lc_win_rate"] is None
    assert table["avg"]["lc_win_rate"] is None and table["avg"]["missing"]["lc_win_rate"] == ["fra"]


def test_same_number_as_alpaca_evals_own_entry_point(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`get_length_controlled_winrate(glm_name="length_controlled_minimal")` downloads a table
    from the hub it then does not use for that GLM; served a local stand-in, it must agree."""
    import warnings

    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from alpaca_eval.metrics import glm_winrate
    prefs, outputs, refs = _length_gamed(n=120)
    prefs = [0.5 if i % 7 == 0 else p for i, p in enumerate(prefs)]  # some ties
    # Rows without a verdict: alpaca_eval keeps them in the length scale, drops them from the fit.
    prefs = [None if i % 11 == 3 else p for i, p in enumerate(prefs)]
    gamed = tmp_path / "df_gamed.csv"
    pd.DataFrame({"model": "x", "index": range(120), "instruction_difficulty": 0.0}).to_csv(
        gamed, index=False
    )
    monkeypatch.setattr(glm_winrate, "hf_hub_download", lambda **kwargs: str(gamed))
    annotations = [
        {
            "instruction": str(i),
            "output_1": r,
            "output_2": o,
            "preference": float("nan") if p is None else 1 + p,  # 1: baseline, 2: model
            "generator_1": "reference",
            "generator_2": "system",
            "annotator": "judge",
            "index": i,
        }
        for i, (p, o, r) in enumerate(zip(prefs, outputs, refs, strict=True))
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = glm_winrate.get_length_controlled_winrate(
            annotations,
            glm_name="length_controlled_minimal",
            save_weights_dir=None,
            is_warn_extreme_changes=False,
        )
    assert theirs["win_rate"] == pytest.approx(win_rate(prefs))
    ours = length_controlled(prefs, outputs, refs)
    assert ours["lc_win_rate"] == pytest.approx(theirs["length_controlled_winrate"], rel=1e-9)
    # Their s.e. for this GLM is the s.e.m. of identical predictions (0): no uncertainty.
    assert theirs["lc_standard_error"] == pytest.approx(0, abs=1e-9)


def test_lc_se_is_a_seeded_bootstrap_of_the_same_fit() -> None:
    prefs, outputs, refs = _length_gamed(n=80)
    one = length_controlled(prefs, outputs, refs, n_boot=12, seed=[1, 0])
    assert one == length_controlled(prefs, outputs, refs, n_boot=12, seed=[1, 0])
    other = length_controlled(prefs, outputs, refs, n_boot=12, seed=[2, 0])
    assert one["lc_se_boot"] != other["lc_se_boot"]
    assert one["lc_win_rate"] == other["lc_win_rate"] == lc_win_rate(prefs, outputs, refs)
    assert 1.0 < one["lc_se_boot"] < 15.0
    # 0 replicates: no LC s.e., and no reason to give.
    assert length_controlled(prefs, outputs, refs)["lc_se_boot"] is None
    assert "notes" not in length_controlled(prefs, outputs, refs)
    table = summarize({"deu": {"prefs": prefs, "outputs": outputs, "ref_outputs": refs,
                               "lang_fidelity": 1.0}}, n_boot=10, lc_boot=12)
    assert table["deu"]["lc_se_boot"] == one["lc_se_boot"]  # seeded by (seed, language index)
    assert table["avg"]["lc_se_boot"] == pytest.approx(one["lc_se_boot"])


def test_a_degenerate_lc_fit_gets_a_dash_and_the_reason() -> None:
    prefs, outputs, refs = _length_gamed(n=120)
    # Every system output far longer: the length term is all but constant (tanh saturates), a
    # copy of the system term; a delta-method s.e. printed 1e6 here.
    far = ["s" * (20_000 + 3 * i) for i in range(120)]
    out = length_controlled(prefs, far, refs, n_boot=5)
    assert out["lc_win_rate"] is not None and out["lc_se_boot"] is None
    assert "degenerate LC fit" in out["notes"]["lc_se_boot"]
    same = length_controlled([1.0] * 6, ["long" * 50] * 6, ["short"] * 6, n_boot=5)
    assert same["lc_se_boot"] is None and "every verdict" in same["notes"]["lc_se_boot"]
    table = summarize({"deu": {"prefs": prefs, "outputs": far, "ref_outputs": refs,
                               "lang_fidelity": 1.0}}, n_boot=10, lc_boot=5)
    assert table["deu"]["notes"]["lc_se_boot"] == out["notes"]["lc_se_boot"]
    assert table["avg"]["lc_se_boot"] is None
    assert table["avg"]["notes"] == {"lc_se_boot": "absent for deu"}


def test_the_bootstrap_writes_nothing_to_stderr(capfd):
    """liblinear prints a line to the process's stderr for each CV fold that lacks a class;
    a bootstrap of a lopsided language gave hundreds of them on the console."""
    rng = np.random.default_rng(0)
    prefs = [1.0] * 9 + [0.0]
    outputs = ["x" * int(n) for n in rng.integers(10, 300, len(prefs))]
    refs = ["y" * int(n) for n in rng.integers(10, 300, len(prefs))]
    got = length_controlled(prefs, outputs, refs, n_boot=20, seed=[1, 0])
    assert got["lc_se_boot"] is not None
    assert "specified in weight is not found" not in capfd.readouterr().err

"""Properties of the metrics that a mutation run found unguarded: the CI is the 95% percentile
bootstrap with the declared defaults (a 90% interval printed as the 95% CI passed before), the
s.e. needs two preferences, the average row's CI resamples each language on its own stream,
counts and fidelity pass through as given, and a usable preference is one in [0, 1]."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xlexp.evaluate import lc, metrics
from xlexp.evaluate.columns import Column
from xlexp.evaluate.metrics import LangData, bootstrap_ci, summarize_langs

PREFS = [0.0, 1.0, 1.0, 0.5, 0.0, 1.0, 1.0, 0.0, 0.5, 1.0, 1.0, 1.0]


def _percentile_bootstrap(prefs, n, rng, alpha):
    values = np.asarray(prefs, dtype=float)
    means = values[rng.integers(0, values.size, size=(n, values.size))].mean(axis=1) * 100
    return tuple(float(q) for q in np.quantile(means, [alpha / 2, 1 - alpha / 2]))


def test_the_ci_is_the_95_percent_percentile_bootstrap_seeded_1_with_1000_replicates():
    want = _percentile_bootstrap(PREFS, 1000, np.random.default_rng(1), 0.05)
    assert bootstrap_ci(PREFS) == pytest.approx(want)
    # a 90% interval is another, narrower one: printing it as the 95% CI would be caught
    lo90, hi90 = bootstrap_ci(PREFS, alpha=0.10)
    assert want[0] < lo90 and hi90 < want[1]
    assert bootstrap_ci(PREFS, n=1) != (None, None)
    assert bootstrap_ci(PREFS, n=0) == (None, None)
    assert bootstrap_ci([None, float("nan")]) == (None, None)


def test_only_finite_numbers_in_0_1_are_usable_preferences():
    assert [metrics.usable(p) for p in (0.0, 1.0, 0.5)] == [True] * 3
    assert [metrics.usable(p) for p in (1.5, 2.0, -0.1, True, None, math.nan, "1")] == [False] * 7
    assert metrics.win_rate([1.5, 1.0, 0.0]) == 50.0


def test_standard_error_needs_two_preferences():
    assert metrics.standard_error([1.0]) is None
    # s.e.m. of [0, 1] x 100: sd 0.7071 / sqrt(2)
    assert metrics.standard_error([0.0, 1.0]) == pytest.approx(50.0)
    assert metrics.standard_error([1.0, 1.0]) == 0.0


def _lang(lang, index, prefs, **kw):
    outputs = kw.pop("outputs", ["x" * (10 + i) for i in range(len(prefs))])
    return LangData(lang=lang, index=index, prefs=list(prefs), outputs=outputs, **kw)


def test_the_table_uses_the_declared_bootstrap_settings_and_defaults():
    data = [_lang("deu", 0, PREFS, lang_fidelity=1.0)]
    names = ["win_rate"]
    table = summarize_langs(data, names, n_boot=200, seed=3, alpha=0.1)
    assert (table["deu"]["ci_low"], table["deu"]["ci_high"]) == pytest.approx(
        bootstrap_ci(PREFS, n=200, seed=3, alpha=0.1)
    )
    default = summarize_langs(data, names)
    assert default == summarize_langs(data, names, n_boot=1000, seed=1, alpha=0.05)
    assert default["deu"]["ci_low"] == pytest.approx(bootstrap_ci(PREFS)[0])
    assert metrics.summarize(
        {"deu": {"prefs": PREFS, "outputs": ["a"] * len(PREFS)}}, n_boot=200, seed=3, alpha=0.1
    )["deu"]["ci_high"] == pytest.approx(bootstrap_ci(PREFS, n=200, seed=3, alpha=0.1)[1])
    assert metrics.summarize({"deu": {"prefs": PREFS, "outputs": ["a"] * len(PREFS)}})["deu"][
        "ci_low"
    ] == pytest.approx(bootstrap_ci(PREFS)[0])


def test_a_ci_needs_two_usable_preferences():
    one = summarize_langs([_lang("deu", 0, [1.0, None])], ["win_rate"])["deu"]
    assert one["win_rate"] == 100.0 and one["ci_low"] is None and one["ci_high"] is None
    two = summarize_langs([_lang("deu", 0, [1.0, 0.0])], ["win_rate"])["deu"]
    assert two["ci_low"] is not None and two["ci_high"] is not None


def test_the_average_ci_resamples_each_language_on_its_own_stream():
    other = [1.0, 1.0, 0.0, 1.0, 0.5, 1.0, 0.0, 1.0]
    data = [_lang("deu", 0, PREFS), _lang("fra", 1, other)]
    avg = summarize_langs(data, ["win_rate"], n_boot=300, seed=5)["avg"]
    boots = []
    for i, prefs in enumerate((PREFS, other)):
        values = np.asarray(prefs)
        rng = np.random.default_rng([5, i])
        boots.append(values[rng.integers(0, values.size, size=(300, values.size))].mean(1) * 100)
    lo, hi = np.quantile(np.mean(boots, axis=0), [0.025, 0.975])
    assert (avg["ci_low"], avg["ci_high"]) == pytest.approx((lo, hi))
    assert avg["win_rate"] == pytest.approx((metrics.win_rate(PREFS) + metrics.win_rate(other)) / 2)
    # a language with one preference: no average CI (nor its own)
    short = summarize_langs([data[0], _lang("fra", 1, [1.0])], ["win_rate"])["avg"]
    assert short["ci_low"] is None and short["ci_high"] is None


def test_counts_are_taken_as_given_else_derived_and_summed_over_languages():
    given = _lang("deu", 0, [1.0, None, None, 0.0], n_malformed=1, n_failed=1, n_identical=1)
    derived = _lang("fra", 1, [1.0, None, None], outputs=["a", None, "b"])
    table = summarize_langs([given, derived], ["counts", "avg_len"])
    assert {k: table["deu"][k] for k in ("n", "n_malformed", "n_failed", "n_identical")} == {
        "n": 2,
        "n_malformed": 1,
        "n_failed": 1,
        "n_identical": 1,
    }
    # fra: 3 prompts, 1 usable, 1 failed output -> 1 malformed
    assert (table["fra"]["n_malformed"], table["fra"]["n_failed"]) == (1, 1)
    assert table["avg"]["n"] == 3 and table["avg"]["n_malformed"] == 2
    assert table["avg"]["n_failed"] == 2 and table["avg"]["n_identical"] == 1
    assert table["fra"]["avg_len"] == 1.0
    assert table["avg"]["avg_len"] == pytest.approx((table["deu"]["avg_len"] + 1.0) / 2)


def test_a_given_fidelity_passes_through_and_an_unusable_one_is_absent():
    rate = _lang("deu", 0, [1.0], lang_fidelity=0.25)
    counted = _lang("fra", 1, [1.0], lang_fidelity={"rate": 0.5, "n_undetermined": 3})
    bad = _lang("hun", 2, [1.0], lang_fidelity=1.5)
    table = summarize_langs([rate, counted, bad], ["lang_fidelity"])
    assert (table["deu"]["lang_fidelity"], table["deu"]["n_undetermined"]) == (0.25, 0)
    assert (table["fra"]["lang_fidelity"], table["fra"]["n_undetermined"]) == (0.5, 3)
    assert table["hun"]["lang_fidelity"] is None
    assert table["avg"]["lang_fidelity"] is None and table["avg"]["n_undetermined"] == 3
    assert table["avg"]["missing"] == {"lang_fidelity": ["hun"]}
    no_count = summarize_langs(
        [_lang("deu", 0, [1.0], lang_fidelity={"rate": 0.5})], ["lang_fidelity"]
    )
    assert no_count["deu"]["n_undetermined"] == 0


def test_an_absent_lc_se_is_noted_per_language_when_it_was_asked_for():
    same = [1.0] * 6  # every verdict the same: nothing to resample
    data = [
        _lang("deu", 0, same, ref_outputs=["r"] * 6, lc_boot=1),
        _lang("fra", 1, same, ref_outputs=["r"] * 6, lc_boot=1),
    ]
    avg = summarize_langs(data, ["lc_win_rate"])["avg"]
    assert avg["lc_se_boot"] is None
    assert avg["notes"] == {"lc_se_boot": "absent for deu, fra"}
    # the uncertainty columns are absent by choice, never "missing"
    assert "missing" not in avg


def test_verdict_rows_become_counts_by_status_and_older_rows_by_their_preference():
    rows = [
        {"status": "judged", "preference": 1.0},
        {"status": "identical", "preference": 0.5},
        {"status": "failed", "preference": None},
        {"status": "malformed", "preference": None},
        {"status": "judged", "preference": math.nan},  # an older parser's NaN: malformed
        {"preference": 0.0},  # stored before statuses: judged by its usable preference
        {"preference": None},  # ... and malformed without one
    ]
    outputs, refs = [f"o{i}" for i in range(7)], [f"r{i}" for i in range(7)]
    entry = metrics.entry_from_rows(rows, outputs, refs)
    assert entry == {
        "prefs": [1.0, 0.5, None, None, None, 0.0, None],
        "outputs": outputs,
        "ref_outputs": refs,
        "n_malformed": 3,
        "n_failed": 1,
        "n_identical": 1,
    }
    for bad in ((rows, outputs[:-1], refs), (rows, outputs, refs[:-1]), (rows[:-1], outputs, refs)):
        with pytest.raises(ValueError, match="verdict rows"):
            metrics.entry_from_rows(*bad)


def test_every_field_of_a_summarize_entry_reaches_the_table():
    prefs = [1.0, 0.0, 1.0, 0.5, 1.0, 0.0]
    outputs = ["Das ist eine deutsche Antwort auf die Frage, ganz lang."] * 6
    entry = {
        "prefs": prefs,
        "outputs": outputs,
        "ref_outputs": ["kurz"] * 6,
        "n_malformed": 4,
        "n_failed": 5,
        "n_identical": 2,
        "lang_fidelity": 0.25,
    }
    table = metrics.summarize({"eng": {"prefs": [1.0], "outputs": ["a"]}, "deu": entry})
    row = table["deu"]
    assert (row["n_malformed"], row["n_failed"], row["n_identical"]) == (4, 5, 2)
    assert row["lang_fidelity"] == 0.25
    assert row["lc_win_rate"] is not None  # needs the reference outputs
    assert row["lc_se_boot"] is None  # no LC bootstrap asked for
    data = metrics.lang_data("deu", 1, entry, lc_boot=3)
    assert (data.lang, data.index, data.lc_boot) == ("deu", 1, 3)
    assert (data.prefs, data.outputs, data.ref_outputs) == (prefs, outputs, ["kurz"] * 6)
    # a language's own CI is seeded by the table's seed, whatever its position
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(bootstrap_ci(prefs, seed=1))
    empty = metrics.lang_data("fra", 0, {})
    assert (empty.prefs, empty.outputs, empty.ref_outputs, empty.n_identical) == ([], [], None, 0)
    assert (empty.n_malformed, empty.n_failed, empty.lang_fidelity) == (None, None, None)
    assert metrics.summarize({"deu": entry}, lc_boot=4)["deu"]["lc_se_boot"] is not None


def test_stored_columns_keep_their_declaration_and_unknown_ones_their_label():
    declared = {c.key: c for c in metrics.columns()}
    assert [c.key for c in metrics.declared_columns()] == list(declared)
    stored = [["win_rate", "old label"], ["gone", "A gone column"], ["n", "n"]]
    got = metrics.declared_columns(stored)
    assert got[0] is declared["win_rate"] and got[2] is declared["n"]
    assert got[1] == Column("gone", "A gone column")  # default format, no best
    assert (got[1].format, got[1].higher_is_better) == (".2f", None)
    assert metrics.stored_columns(["se"]) == [["se", "s.e."]]
    assert metrics.column("lc_win_rate") is declared["lc_win_rate"]
    assert metrics.column("some_new_key") == Column("some_new_key", "some new key")


# ---------------------------------------------------------------- length control


def _gamed(n: int, small: bool = False):
    rng = np.random.default_rng(7)
    refs = ["r" * int(rng.integers(200, 400)) for _ in range(n)]
    if small:  # lengths within a character of the reference's: the length scale is below 1
        outputs = [r + "s" * int(rng.integers(0, 2)) for r in refs]
    else:
        outputs = [r + "s" * int(rng.integers(0, 300)) for r in refs]
    prefs = [float(rng.random() < 0.3 + 0.5 * (len(o) - len(r)) / 300)
             for o, r in zip(outputs, refs, strict=True)]
    return prefs, outputs, refs


def test_the_lc_bootstrap_is_the_sd_over_seeded_resamples_of_every_compared_prompt():
    prefs, outputs, refs = _gamed(40)
    rows = lc._compared(prefs, outputs, refs)
    for n_boot in (2, 6):
        rng = np.random.default_rng([3, 1])
        boot = [lc._fit([rows[i] for i in rng.integers(0, 40, 40)])[0] for _ in range(n_boot)]
        got = lc.length_controlled(prefs, outputs, refs, n_boot=n_boot, seed=[3, 1])
        assert got["lc_se_boot"] == pytest.approx(float(np.std(boot, ddof=1)), rel=1e-12)
    # the defaults: no bootstrap; seed 1
    assert lc.length_controlled(prefs, outputs, refs) == {
        "lc_win_rate": lc.lc_win_rate(prefs, outputs, refs), "lc_se_boot": None
    }
    # ... so not even the reason a bootstrap could not vary is given
    assert lc.length_controlled([1.0] * 4, ["aa"] * 4, ["a"] * 4) == {
        "lc_win_rate": 100.0, "lc_se_boot": None
    }
    assert lc.length_controlled(prefs, outputs, refs, n_boot=3) == lc.length_controlled(
        prefs, outputs, refs, n_boot=3, seed=1
    )


def test_lc_needs_two_verdicts_and_says_nothing_more_without_them():
    assert lc.length_controlled([1.0, None], ["aa", "b"], ["a", "bb"], n_boot=10) == {
        "lc_win_rate": None, "lc_se_boot": None
    }
    two = lc.length_controlled([1.0, 0.0], ["aaaa", "b"], ["a", "bbbb"])
    assert two["lc_win_rate"] is not None
    # one replicate has no s.e., but the reason a bootstrap cannot vary is still said
    same = lc.length_controlled([1.0] * 4, ["aa"] * 4, ["a"] * 4, n_boot=1)
    assert same == {
        "lc_win_rate": 100.0, "lc_se_boot": None,
        "notes": {"lc_se_boot": "every verdict is the same: no variation to resample"},
    }
    # a preference outside [0, 1] is no verdict, as in the win rate
    prefs, outputs, refs = _gamed(30)
    assert lc.lc_win_rate([1.5, *prefs[1:]], outputs, refs) == lc.lc_win_rate(
        [None, *prefs[1:]], outputs, refs
    )


@pytest.mark.parametrize("small", [False, True], ids=["lengths", "length-scale-below-1"])
def test_lc_is_alpaca_evals_on_any_length_scale(tmp_path, monkeypatch, small):
    import warnings

    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from alpaca_eval.metrics import glm_winrate
    prefs, outputs, refs = _gamed(60, small=small)
    gamed = tmp_path / "df_gamed.csv"
    pd.DataFrame({"model": "x", "index": range(60), "instruction_difficulty": 0.0}).to_csv(
        gamed, index=False
    )
    monkeypatch.setattr(glm_winrate, "hf_hub_download", lambda **kwargs: str(gamed))
    annotations = [
        {"instruction": str(i), "output_1": r, "output_2": o, "preference": 1 + p,
         "generator_1": "reference", "generator_2": "system", "annotator": "judge", "index": i}
        for i, (p, o, r) in enumerate(zip(prefs, outputs, refs, strict=True))
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = glm_winrate.get_length_controlled_winrate(
            annotations, glm_name="length_controlled_minimal", save_weights_dir=None,
            is_warn_extreme_changes=False,
        )
    ours = lc.lc_win_rate(prefs, outputs, refs)
    assert ours == pytest.approx(theirs["length_controlled_winrate"], rel=1e-9)


def test_summarize_passes_its_bootstrap_settings_and_defaults_to_every_row():
    prefs = [float(x) for x in np.random.default_rng(3).random(40)]  # every CI bound distinct
    entry = {"deu": {"prefs": prefs, "outputs": ["a"] * 40}}
    assert metrics.summarize(entry, n_boot=200)["deu"]["ci_low"] == bootstrap_ci(prefs, n=200)[0]
    default = metrics.summarize(entry)["deu"]
    assert (default["ci_low"], default["ci_high"]) == bootstrap_ci(prefs)
    assert bootstrap_ci(prefs) != bootstrap_ci(prefs, n=1001)


def test_one_replicate_gives_a_zero_width_interval_and_two_preferences_an_average_ci():
    data = [_lang("deu", 0, [1.0, 0.0]), _lang("fra", 1, [0.0, 1.0])]
    table = summarize_langs(data, ["win_rate"], n_boot=1)
    for row in table.values():
        assert row["ci_low"] is not None and row["ci_low"] == row["ci_high"]
    avg = summarize_langs(data, ["win_rate"])["avg"]
    assert avg["ci_low"] is not None and avg["ci_low"] < avg["ci_high"]


def test_notes_of_several_metrics_are_merged_and_a_language_without_notes_is_fine():
    english = "The weather is fine today, and we go out for a walk."
    same = _lang("eng", 0, [1.0] * 4, outputs=[english] * 4, ref_outputs=["r"] * 4, lc_boot=2)
    one = _lang("fra", 1, [1.0, None], outputs=["Il fait beau."] * 2, ref_outputs=["r"] * 2,
                lc_boot=2, lang_fidelity=1.0)
    table = summarize_langs([same, one], ["line_fidelity", "lc_win_rate"])
    assert table["eng"]["notes"] == {
        "line_word_pass_rate": "English lines are English words",
        "lc_se_boot": "every verdict is the same: no variation to resample",
    }
    assert "notes" not in table["fra"]  # one verdict: no LC at all, nothing to explain
    assert table["avg"]["notes"] == {"lc_se_boot": "absent for eng, fra"}
    assert "notes" not in table["avg"]["missing"]


def test_each_languages_lc_bootstrap_is_seeded_by_the_seed_and_its_position():
    prefs, outputs, refs = _gamed(30)
    entry = {"prefs": prefs, "outputs": outputs, "ref_outputs": refs, "lang_fidelity": 1.0}
    table = metrics.summarize({"deu": dict(entry), "fra": dict(entry)}, n_boot=10, seed=4,
                              lc_boot=3)
    for index, lang in enumerate(("deu", "fra")):
        want = lc.length_controlled(prefs, outputs, refs, n_boot=3, seed=[4, index])
        assert table[lang]["lc_se_boot"] == want["lc_se_boot"]
    assert table["deu"]["lc_se_boot"] != table["fra"]["lc_se_boot"]
    assert metrics.lang_data("deu", 0, entry).lc_boot == 0  # no LC bootstrap unless asked

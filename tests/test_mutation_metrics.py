"""Properties of the metrics that a mutation run found unguarded: the CI is the 95% percentile
bootstrap with the declared defaults (a 90% interval printed as the 95% CI passed before), the
s.e. needs two preferences, the average row's CI resamples each language on its own stream,
counts and fidelity pass through as given, and a usable preference is one in [0, 1]."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xlexp.evaluate import metrics
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

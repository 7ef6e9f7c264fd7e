"""Win rate, bootstrap CI, lengths, summary table, language fidelity."""

from __future__ import annotations

import math

import pytest

from xlexp.evaluate import langid
from xlexp.evaluate.metrics import avg_length, bootstrap_ci, summarize, win_rate

GERMAN = [
    "Der Hund schläft im Garten, weil es heute sehr warm ist.",
    "Honig kann man zum Backen, als Süßungsmittel und gegen Halsschmerzen verwenden.",
]
FRENCH = [
    "Le chat dort sur le canapé parce qu'il fait froid dehors.",
    "Le miel sert à sucrer le thé, à faire des gâteaux et à soigner la gorge.",
]
ENGLISH = [
    "The dog is sleeping in the garden because it is warm today.",
    "Honey can be used for baking, as a sweetener and for sore throats.",
]


def test_win_rate_ties_count_half_and_none_is_excluded() -> None:
    assert win_rate([1.0, 0.0, 0.5, 0.5]) == 50.0
    assert win_rate([1.0, 0.5, None]) == 75.0
    assert math.isnan(win_rate([None]))


def test_bootstrap_ci_contains_estimate_is_seeded_and_shrinks() -> None:
    small = [0.9, 0.1, 0.3, 0.55, 0.8, 0.05, 0.2, 0.4, 0.7, 0.15]
    big = small * 20
    lo, hi = bootstrap_ci(small, n=1000, seed=1)
    assert lo <= win_rate(small) <= hi
    assert (lo, hi) == bootstrap_ci(small, n=1000, seed=1)
    assert (lo, hi) != bootstrap_ci(small, n=1000, seed=2)
    blo, bhi = bootstrap_ci(big, n=1000, seed=1)
    assert blo <= win_rate(big) <= bhi
    assert bhi - blo < (hi - lo) / 2
    assert all(math.isnan(x) for x in bootstrap_ci([None]))


def test_avg_length_in_characters() -> None:
    assert avg_length(["ab", "abcd", ""]) == 2.0
    assert math.isnan(avg_length([]))


def test_detect_known_sentences() -> None:
    assert [langid.detect(t) for t in GERMAN] == ["deu", "deu"]
    assert [langid.detect(t) for t in FRENCH] == ["fra", "fra"]
    assert [langid.detect(t) for t in ENGLISH] == ["eng", "eng"]
    assert langid.detect("   ") is None
    # A language outside xlexp's table comes back as py3langid's raw ISO 639-1 code.
    assert langid.detect("Собака спит в саду, потому что сегодня тепло.") == "ru"


def test_fidelity_counts_empty_as_miss() -> None:
    outputs = GERMAN + FRENCH + ENGLISH + [""]
    assert langid.fidelity(outputs, "deu") == pytest.approx(2 / 7)
    assert langid.fidelity(outputs, "fra") == pytest.approx(2 / 7)
    assert langid.fidelity(GERMAN, "deu") == 1.0
    assert math.isnan(langid.fidelity([], "deu"))


def test_summarize_rows_and_macro_average() -> None:
    table = summarize(
        {
            "deu": {"prefs": [1.0, 1.0, 0.5, None], "outputs": GERMAN + ENGLISH},
            "fra": {"prefs": [0.0, 0.5, 0.0, 0.5], "outputs": ["abcd"] * 4, "lang_fidelity": 0.25},
        },
        n_boot=200,
    )
    assert list(table) == ["deu", "fra", "avg"]
    deu, fra, avg = table["deu"], table["fra"], table["avg"]
    assert deu["win_rate"] == pytest.approx(250 / 3)
    assert (deu["n"], deu["n_malformed"], deu["lang_fidelity"]) == (3, 1, 0.5)
    assert deu["ci_low"] <= deu["win_rate"] <= deu["ci_high"]
    assert (fra["win_rate"], fra["avg_len"], fra["lang_fidelity"]) == (25.0, 4.0, 0.25)
    assert avg["win_rate"] == pytest.approx((250 / 3 + 25) / 2)
    assert (avg["n"], avg["n_malformed"]) == (7, 1)
    assert avg["lang_fidelity"] == pytest.approx(0.375)
    assert avg["ci_low"] <= avg["win_rate"] <= avg["ci_high"]
    assert set(avg) == set(deu) == {"win_rate", "ci_low", "ci_high", "n", "n_malformed", "avg_len", "lang_fidelity", "lc_win_rate"}

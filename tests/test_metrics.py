"""Win rate, bootstrap CI, lengths, summary table, language fidelity."""

from __future__ import annotations

import math

import pytest

from xlexp.evaluate import judge, langid
from xlexp.evaluate.metrics import avg_length, bootstrap_ci, entry_from_rows, summarize, win_rate
from xlexp.llm import Completion

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
    assert win_rate([None]) is None and win_rate([]) is None


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
    assert bootstrap_ci([None]) == (None, None)


def test_avg_length_in_characters() -> None:
    assert avg_length(["ab", "abcd", ""]) == 2.0
    assert avg_length([]) is None
    # A failed response has no length (None, or NaN from pandas): left out, not a TypeError.
    assert avg_length(["ab", None, float("nan"), "abcd"]) == 3.0
    assert avg_length([None]) is None


def test_detect_known_sentences() -> None:
    assert [langid.detect(t) for t in GERMAN] == ["deu", "deu"]
    assert [langid.detect(t) for t in FRENCH] == ["fra", "fra"]
    assert [langid.detect(t) for t in ENGLISH] == ["eng", "eng"]
    assert langid.detect("   ") is None
    # A language outside xlexp's table comes back as py3langid's raw ISO 639-1 code.
    assert langid.detect("Собака спит в саду, потому что сегодня тепло.") == "ru"


def test_fidelity_counts_empty_as_miss() -> None:
    outputs = GERMAN + FRENCH + ENGLISH + [""]
    assert langid.fidelity(outputs, "deu")["rate"] == pytest.approx(2 / 7)
    assert langid.fidelity(outputs, "fra")["rate"] == pytest.approx(2 / 7)
    assert langid.fidelity(GERMAN, "deu")["rate"] == 1.0
    assert langid.fidelity([], "deu")["rate"] is None


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
    # No reference outputs given; "abcd" has no prose line to identify.
    line_rates = ("line_fidelity", "line_pass_rate", "line_word_pass_rate")
    assert avg["missing"] == {"lc_win_rate": ["deu", "fra"], **dict.fromkeys(line_rates, ["fra"])}
    assert set(avg) - {"missing"} == set(deu) == {
        "win_rate", "ci_low", "ci_high", "se", "lc_win_rate", "lc_se_boot", "avg_len",
        "lang_fidelity", *line_rates, "n_line_undetermined",
        "n", "n_malformed", "n_failed", "n_identical", "n_undetermined",
    }


def _has_nan(table: dict) -> bool:
    return any(
        isinstance(v, float) and math.isnan(v) for row in table.values() for v in row.values()
    )


def test_bad_inputs_give_numbers_or_counted_exclusions() -> None:
    rows = [{"id": i, "lang": "deu", "instruction": f"Q{i}"} for i in range(6)]
    sys_outs = GERMAN + ["Die Katze schläft.", None, float("nan"), "Der Hund ist sehr müde heute."]
    ref_outs = ["ref a", "ref b", "ref c", "ref d", "ref e", "Der Hund ist sehr müde heute."]
    entries = judge.plan("both_orders", rows, sys_outs, ref_outs)
    comps = [
        Completion(text="A", logprobs=[{"A": float("nan"), "B": -1.0}]),  # NaN as the top candidate
        Completion(text="B", logprobs=[{"A": -0.2, "B": -1.5}]),
        Completion(
            text="", logprobs=[{"A": float("-inf"), "B": float("-inf")}]
        ),  # all -inf, no text
        Completion(text="", logprobs=[{"A": float("-inf"), "B": float("-inf")}]),
        Completion(text="Output A is worse than Output B"),  # a mention, no verdict
        Completion(text="Response A is vague; verdict: B"),
    ]
    assert len(judge.conversations(entries)) == len(comps)  # 3 judged rows, 2 failed, 1 identical
    stored = judge.combine("both_orders", entries, comps)
    assert [r["status"] for r in stored] == [
        "judged",
        "malformed",
        "judged",
        "failed",
        "failed",
        "identical",
    ]
    table = summarize({"deu": entry_from_rows(stored, sys_outs, ref_outs)}, n_boot=50)
    deu = table["deu"]
    assert (deu["n"], deu["n_malformed"], deu["n_failed"], deu["n_identical"]) == (3, 1, 2, 1)
    assert (
        deu["win_rate"] is not None
        and deu["avg_len"] is not None
        and deu["lc_win_rate"] is not None
    )
    assert not _has_nan(table)


def test_degenerate_tables_are_defined() -> None:
    # Zero rows, all ties, all lengths equal, a language without any verdict.
    table = summarize(
        {
            "deu": {"prefs": [], "outputs": [], "ref_outputs": []},
            "fra": {"prefs": [0.5] * 4, "outputs": ["abc"] * 4, "ref_outputs": ["xyz"] * 4},
            "hun": {
                "prefs": [1.0, 0.0, 1.0, 0.5],
                "outputs": ["abc"] * 4,
                "ref_outputs": ["xyz"] * 4,
            },
            "fin": {
                "prefs": [None, float("nan")],
                "outputs": ["a", "b"],
                "ref_outputs": ["c", "d"],
            },
        },
        n_boot=50,
    )
    assert not _has_nan(table)
    assert table["deu"]["win_rate"] is None and table["deu"]["n"] == 0
    assert table["fra"]["win_rate"] == 50.0 and table["fra"]["lc_win_rate"] == 50.0
    # Equal lengths: nothing to control for; on 4 rows alpaca_eval's L1 CV fit shrinks to 50.
    assert table["hun"]["win_rate"] == 62.5 and table["hun"]["lc_win_rate"] is not None
    assert table["fin"]["n_malformed"] == 2 and table["fin"]["win_rate"] is None
    # The average does not silently drop the languages without a number: it is absent, and says why.
    assert table["avg"]["win_rate"] is None and table["avg"]["missing"]["win_rate"] == [
        "deu",
        "fin",
    ]
    assert table["avg"]["n"] == 8


def test_se_is_alpaca_evals_standard_error_per_language_and_for_the_average() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from alpaca_eval.metrics import get_winrate
    deu = [1.0, 0.25, 0.5, 0.0, 0.9, None]
    fra = [0.1, 0.2, 1.0, 0.75]
    table = summarize({"deu": {"prefs": deu, "outputs": ["x"] * 6},
                       "fra": {"prefs": fra, "outputs": ["y"] * 4}}, n_boot=0)
    for lang, prefs in (("deu", deu), ("fra", fra)):
        theirs = get_winrate(
            [{"preference": float("nan") if p is None else 1 + p} for p in prefs]
        )
        assert table[lang]["se"] == pytest.approx(theirs["standard_error"], abs=1e-12)
        assert table[lang]["win_rate"] == pytest.approx(theirs["win_rate"], abs=1e-12)
    # The macro average of independent languages: sqrt(sum of variances) / languages.
    want = math.sqrt(table["deu"]["se"] ** 2 + table["fra"]["se"] ** 2) / 2
    assert table["avg"]["se"] == pytest.approx(want)
    # One preference: no standard error, no interval (a zero-width one reads as certainty).
    one = summarize({"deu": {"prefs": [0.25], "outputs": ["x"]},
                     "fra": {"prefs": fra, "outputs": ["y"] * 4}}, n_boot=50)
    assert one["deu"]["win_rate"] == 25.0
    assert (one["deu"]["se"], one["deu"]["ci_low"], one["deu"]["ci_high"]) == (None, None, None)
    assert one["fra"]["ci_low"] is not None
    assert (one["avg"]["se"], one["avg"]["ci_low"]) == (None, None)
    # Uncertainty absent by rule is no missing language (the LC win rate is: no references).
    assert not {"se", "ci_low", "ci_high"} & set(one["avg"]["missing"])

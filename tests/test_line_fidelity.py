"""Line-level language fidelity on a labelled table of answers that switch language line by line
(the Language Confusion Benchmark's failure): each answer's expected share of prose lines in the
target language, whether every line is, and whether its target-language lines are free of
English function words, written by hand, not computed by the code under test."""

from __future__ import annotations

import pytest

from xlexp.evaluate import langid, metrics

DE_1 = "Honig kann man zum Backen und als Süßungsmittel verwenden."
DE_2 = "Außerdem hilft ein Löffel Honig gegen Halsschmerzen im Winter."
DE_3 = "Man sollte ihn kühl und trocken in einem Glas aufbewahren."
EN_1 = "Honey is also used in skin care products because it keeps moisture."
EN_2 = "Many people put it in their tea when they have a cold."
FR_1 = "Le miel se conserve pendant des années dans un pot fermé."
FR_2 = "On peut aussi l'utiliser pour préparer des gâteaux et des sauces."
GA_1 = "Is féidir mil a úsáid chun cácaí a dhéanamh sa bhaile."
GA_2 = "Coinnigh an mhil i bpróca dúnta in áit fhionnuar."
ZH_1 = "蜂蜜可以用来做蛋糕，也可以放在茶里喝。"
ZH_2 = "蜂蜜应该放在阴凉干燥的地方保存很长时间。"

# (answer, target language, share of identified prose lines in it, every line in it,
#  word check: True/False, or None where it does not apply)
TABLE: list[tuple[str, str, float, bool, bool | None]] = [
    # Monolingual, several lines: passes both checks.
    (f"{DE_1}\n{DE_2}\n{DE_3}", "deu", 1.0, True, True),
    (f"{FR_1}\n\n{FR_2}", "fra", 1.0, True, True),
    (f"{GA_1}\n{GA_2}", "gle", 1.0, True, True),
    # Switches to English halfway: the response-level vote may still call it German.
    (f"{DE_1}\n{DE_2}\n{EN_1}", "deu", 2 / 3, False, True),
    (f"{DE_1}\n{EN_1}\n{EN_2}", "deu", 1 / 3, False, True),
    (f"{FR_1}\n{EN_2}", "fra", 0.5, False, True),
    # An English preamble line before a German answer: a line-level miss.
    (f"Sure! Here is the answer in German:\n\n{DE_1}\n{DE_2}", "deu", 2 / 3, False, True),
    # Entirely English for a German prompt: no line in German, no word check.
    (f"{EN_1}\n{EN_2}", "deu", 0.0, False, None),
    # Markup, code and URLs are no prose lines: only the German lines count.
    (f"## Honig\n\n- {DE_1}\n- {DE_2}\n\n```python\nprint('honey')\n```\nhttps://example.com/honey",
     "deu", 1.0, True, True),
    # German lines with English function words inside (word level): German line by line, but
    # mixed; a single quoted title word is not enough.
    ("Honig ist gut, and the bees machen ihn aus dem Nektar der Blumen.\n" + DE_2,
     "deu", 1.0, True, False),
    ("Der Film „The Bee Movie“ erzählt von einer Biene in der großen Stadt.\n" + DE_3,
     "deu", 1.0, True, True),
    # Chinese: lines identified, the word check reads Latin-script lines only.
    (f"{ZH_1}\n{ZH_2}", "zho", 1.0, True, None),
    (f"{ZH_1}\n{EN_1}", "zho", 0.5, False, None),
    # English is the target (m-AlpacaEval's column): no word check for English.
    (f"{EN_1}\n{EN_2}", "eng", 1.0, True, None),
    # An empty answer is a determined miss.
    ("", "deu", 0.0, False, None),
]


@pytest.mark.parametrize(("text", "lang", "share", "passed", "words"), TABLE)
def test_each_labelled_answer_is_classified_as_written(
    text: str, lang: str, share: float, passed: bool, words: bool | None
) -> None:
    check = langid.line_check(text, lang)
    assert check is not None
    assert check["share"] == pytest.approx(share)
    assert check["passed"] is passed
    assert check["word_passed"] is words


def test_answers_without_an_identifiable_line_are_counted_not_scored() -> None:
    for text in ("Ja.\nNein.", "```\nx = 1\n```", "42", None):
        assert langid.line_check(text, "deu") is None
    row = langid.line_fidelity(["Ja.", None, f"{DE_1}\n{EN_1}", f"{DE_1}\n{DE_2}"], "deu")
    assert row == {"line_fidelity": 0.75, "line_pass_rate": 0.5, "line_word_pass_rate": 1.0,
                   "n_line_undetermined": 1}


def test_the_table_rates_reach_the_metrics_table_beside_the_response_level_rate() -> None:
    deu = [t for t, lang, *_ in TABLE if lang == "deu" and t]
    zho = [t for t, lang, *_ in TABLE if lang == "zho"]
    table = metrics.summarize(
        {"deu": {"prefs": [0.5] * len(deu), "outputs": deu},
         "zho": {"prefs": [0.5] * len(zho), "outputs": zho}},
        n_boot=0,
    )
    shares = [s for t, lang, s, *_ in TABLE if lang == "deu" and t]
    passes = [p for t, lang, _, p, _ in TABLE if lang == "deu" and t]
    words = [w for t, lang, *_, w in TABLE if lang == "deu" and t and w is not None]
    assert table["deu"]["line_fidelity"] == pytest.approx(sum(shares) / len(shares))
    assert table["deu"]["line_pass_rate"] == pytest.approx(sum(passes) / len(passes))
    assert table["deu"]["line_word_pass_rate"] == pytest.approx(sum(words) / len(words))
    assert table["deu"]["lang_fidelity"] is not None  # the response-level rate stays beside it
    assert table["zho"]["line_pass_rate"] == 0.5 and table["zho"]["line_word_pass_rate"] is None
    assert "Latin-script" in table["zho"]["notes"]["line_word_pass_rate"]
    # An average over languages is absent when one lacks the value, as for every column.
    assert table["avg"]["line_word_pass_rate"] is None
    assert table["avg"]["missing"]["line_word_pass_rate"] == ["zho"]
    assert table["avg"]["line_pass_rate"] == pytest.approx(
        (table["deu"]["line_pass_rate"] + 0.5) / 2)
    keys = [c.key for c in metrics.columns()]
    assert {"line_fidelity", "line_pass_rate", "line_word_pass_rate"} <= set(keys)
    assert all(metrics.column(k).higher_is_better for k in keys if k.startswith("line_"))

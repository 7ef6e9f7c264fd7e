"""Properties of language identification that a mutation run found unguarded: which paragraphs
vote and with what weight, the thresholds at their exact value, why an answer is undetermined,
how fidelity counts missing answers, and the word check's reading of English function words
(a typographic apostrophe included)."""

from __future__ import annotations

from xlexp.evaluate import langid

GERMAN = "Das Wetter ist heute schön und warm."  # 29 letters
GERMAN_2 = "Wir gehen morgen früh in den Park."  # 27 letters
ENGLISH = "The weather is nice today and we will go for a walk in the park."  # 49 letters
LOW_CONFIDENCE = "mama papa baba dada nana"  # exactly MIN_LETTERS, py3langid below 0.5


def test_paragraphs_vote_with_their_letters_summed_per_language():
    assert [langid.weight(p) for p in (GERMAN, ENGLISH, GERMAN_2)] == [29, 49, 27]
    # 29 + 27 German letters outvote 49 English ones
    assert langid.identify(f"{GERMAN}\n\n{ENGLISH}\n\n{GERMAN_2}") == ("deu", "ok")


def test_a_paragraph_of_exactly_min_letters_votes():
    twenty = "Das Wetter ist heute gut"
    assert langid.weight(twenty) == langid.MIN_LETTERS
    # the other paragraph cannot vote; the prose as a whole reads as Tagalog
    assert langid.identify(f"{twenty}\n\n{LOW_CONFIDENCE}") == ("deu", "ok")


def test_the_vote_not_the_whole_prose_decides():
    # a short Hinglish line (too short to vote) before an English paragraph: the prose as a
    # whole passes the Hinglish word share, the paragraph vote says English
    text = "yeh hai aur main ka ki\n\nThe weather today is quite pleasant, sunny and warm outside."
    assert langid._hinglish(langid.clean(text))
    assert langid.identify(text) == ("eng", "ok")


def test_prose_of_short_paragraphs_is_identified_as_a_whole():
    text = "Guten Morgen Herr\n\nWie geht es Ihnen\n\nDanke sehr gut"
    assert all(langid.weight(p) < langid.MIN_LETTERS for p in text.split("\n\n"))
    assert langid.identify(text) == ("deu", "ok")


def test_why_an_answer_is_undetermined():
    assert langid.identify(None) == (None, "missing")
    assert langid.identify("Ja.") == (None, "too short")
    assert langid.identify("a" * (langid.MIN_LETTERS - 1)) == (None, "too short")
    assert langid.weight(LOW_CONFIDENCE) == langid.MIN_LETTERS  # long enough to try
    assert langid.identify(LOW_CONFIDENCE) == (None, "low confidence")
    assert langid.identify(GERMAN) == ("deu", "ok")


def test_fidelity_counts_every_missing_answer_and_goes_on_after_one():
    outputs = [None, None, GERMAN, ENGLISH, "", "Ja.", None]
    assert langid.fidelity(outputs, "deu") == {
        "rate": 1 / 3,  # German of German, English and the empty answer
        "n_matched": 1,
        "n_determined": 3,
        "n_undetermined": 1,
        "n_missing": 3,
    }


def test_the_identifier_loads_once_with_normalised_probabilities(monkeypatch):
    monkeypatch.setattr(langid, "_identifier", None)
    assert langid.detect(GERMAN) == "deu"
    loaded = langid._identifier
    assert loaded is not None and langid._model() is loaded
    code, prob = langid._new_identifier().classify(GERMAN)
    assert code == "de" and 0.5 <= prob <= 1.0  # a probability, as MIN_CONFIDENCE is


def test_a_latin_line_has_at_least_half_its_letters_latin():
    assert langid._latin("abcабв")  # half
    assert not langid._latin("abабв")
    assert langid._latin("Übergrößenträger")
    assert not langid._latin("Привет, как дела")


def test_english_function_words_are_counted_in_any_case_and_with_either_apostrophe():
    assert langid.english_words("The cat and THE dog") == 3
    assert langid.english_words("don't") == 1
    assert langid.english_words("don\u2019t stop") == 1
    assert langid.english_words("Der Hund und die Katze") == 0


def test_clean_keeps_the_prose_and_drops_code_links_markup_and_numbers():
    text = (
        "Intro `x = 1` see https://a.b/c or mail me@x.org <b>bold</b> $x^2$ \\alpha done\n"
        "```\ncode here\n```\n"
        "SELECT a FROM b\n"
        '"key": "value",\n'
        "def f(x):\n"
        "# Heading\n"
        "- item 42 and **strong** words here\n"
        "abcd=\n"
        "abcde=f"
    )
    assert langid.clean(text) == (
        "Intro see or mail bold done\nHeading\nitem and strong words here\nabcde f"
    )


def test_a_line_is_code_by_its_keywords_or_a_fifth_of_symbols():
    for line in ("SELECT name FROM users", '  "key": 1,', "return x;", "{", "},", "abcd="):
        assert langid._code_like(line), line
    for line in ("", "   ", "abcde=", "Die Wahl fand im Mai statt.", "select the best one"):
        assert not langid._code_like(line), line


def test_cjk_characters_weigh_as_words_and_others_as_letters():
    for ch in "漢\uf900ひカ한":  # unified, compatibility ideograph, hiragana, katakana, hangul
        assert langid._is_cjk(ch), ch
    for ch in "aéЖ\x00":
        assert not langid._is_cjk(ch), ch
    assert langid.weight("漢字 ab1") == 2 * langid.CJK_WEIGHT + 2


def test_hinglish_needs_five_ascii_words_a_share_and_three_distinct_function_words():
    assert langid._hinglish("yeh hai aur main ka")  # five words, all of them function words
    assert not langid._hinglish("yeh hai aur main")  # four
    assert not langid._hinglish("yeh hai aur main ka naïve")  # a letter that is not ASCII
    # exactly the share (3 of 10) and exactly three distinct ones
    assert langid._hinglish("yeh hai aur one two three four five six seven")
    assert not langid._hinglish("yeh hai aur one two three four five six seven eight nine")
    assert not langid._hinglish("hai hai hai hai hai hai")  # one distinct word
    assert langid._hinglish("YEH HAI AUR MAIN KA")


def test_lines_are_identified_among_the_tables_languages_from_min_line_letters(monkeypatch):
    monkeypatch.setattr(langid, "_line_identifier", None)
    fifteen = "Das Wetter ist gut"
    assert langid.weight(fifteen) == langid.MIN_LINE_LETTERS
    # free over all of py3langid's languages this line is below MIN_CONFIDENCE
    assert langid._new_identifier().classify("La vie est belle ici")[1] < langid.MIN_CONFIDENCE
    text = "\n".join([fifteen, "La vie est belle ici", "bla bla bla bla bla",
                      "yeh hai aur main ka ki", "Ich habe Hunger"])
    assert langid.line_languages(text) == [
        (fifteen, "deu"),
        ("La vie est belle ici", "fra"),
        ("bla bla bla bla bla", None),  # below MIN_CONFIDENCE
        ("yeh hai aur main ka ki", "hin"),
        ("Ich habe Hunger", None),  # 13 letters
    ]
    assert langid._line_model() is langid._line_identifier is not None


def test_why_the_word_check_is_absent_is_noted():
    english = langid.line_fidelity(["The weather is fine today, and we go out."], "eng")
    assert english["notes"] == {"line_word_pass_rate": "English lines are English words"}
    russian = langid.line_fidelity(["Сегодня хорошая погода, и мы идём гулять."], "rus")
    assert russian["notes"] == {"line_word_pass_rate": "the word check reads Latin-script "
                                "lines in the target language and rus has none"}

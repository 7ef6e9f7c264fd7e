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

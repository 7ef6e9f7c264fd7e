"""Language fidelity: is the answer in the language the instruction asked for (py3langid).

What is identified is the prose of an answer, not everything in it:
1. Code blocks (fenced), inline code, URLs, e-mail addresses, HTML/XML tags, LaTeX math,
   numbers and markdown markup are removed, and so are lines that look like code (SQL
   keywords in capitals, JSON "key": value lines, lines made mostly of symbols). A correct
   code answer must not count as English for every target language.
2. Below `MIN_LETTERS` letters of prose (a Han/Kana/Hangul character counts as
   `CJK_WEIGHT` letters: it carries about a word), or below `MIN_CONFIDENCE` (py3langid's
   normalised probability), the answer is undetermined: reported as a count beside the rate
   and left out of it, not counted wrong. py3langid calls "Ja.", "Sim." and "Oui." English
   and "Igen." German, "42" English: short text says nothing.
3. Preamble rule: an answer is in the language that holds most of its prose letters. Each
   paragraph long enough to identify votes with its letter count, so a one-line English
   preamble ("Sure! Here is the answer in German:") before a German answer leaves it German,
   and an answer mostly in English with one German sentence is English.
4. Romanised Hindi (Hindi in Latin script, which py3langid does not know) is recognised by
   its function words and counts as Hindi: the language is right even if the script is not.
   Traditional and Simplified Chinese are both `zho`.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from typing import Any

from xlexp.langs import LANGUAGES

MIN_LETTERS = 20
MIN_CONFIDENCE = 0.5
CJK_WEIGHT = 3
# Romanised Hindi: share of words that are Hindi function words, and distinct ones needed.
HINGLISH_WORDS = frozenset(
    [
        "hai",
        "hain",
        "aur",
        "mein",
        "main",
        "ka",
        "ki",
        "ke",
        "ko",
        "se",
        "bhi",
        "tha",
        "thi",
        "nahi",
        "nahin",
        "kya",
        "yeh",
        "ye",
        "woh",
        "wo",
        "hoon",
        "hun",
        "raha",
        "rahi",
        "rahe",
        "kar",
        "karna",
        "karta",
        "karti",
        "karte",
        "tum",
        "aap",
        "hum",
        "mera",
        "meri",
        "mere",
        "tera",
        "apna",
        "apni",
        "ek",
        "liye",
        "lekin",
        "kyunki",
        "jab",
        "tab",
        "bahut",
        "accha",
        "acha",
    ]
)
HINGLISH_SHARE = 0.3
HINGLISH_DISTINCT = 3

_FROM_ISO1 = {iso1: code for code, (_, iso1) in LANGUAGES.items()}
_lock = threading.Lock()
_identifier = None

_FENCED = re.compile(r"(```|~~~).*?(?:\1|\Z)", re.S)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_URL = re.compile(r"(?:https?://|ftp://|www\.)\S+", re.I)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b")
_TAG = re.compile(r"</?[A-Za-z][^>\n]*>")
_MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]+\$|\\\(.*?\\\)|\\\[.*?\\\]", re.S)
_LATEX_CMD = re.compile(r"\\[A-Za-z]+")
_NUMBER = re.compile(r"[+-]?\d[\d.,:/%]*")
_SQL_LINE = re.compile(
    r"^\s*(?:SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|FROM|WHERE|JOIN|GROUP BY|ORDER BY|"
    r"VALUES|SET)\b"
)
_JSON_LINE = re.compile(r"^\s*[\[{]?\s*\"[^\"]+\"\s*:")
_CODE_START = re.compile(
    r"^\s*(?:def|class|import|return|print|function|const|let|var|public|private|#include|for|while|if|elif|else)\b.*[:;{})]\s*$"
)
_SYMBOLS = set("{}[]()<>=;:_\"'|\\/*+-&^%$#@~`")
_PARAGRAPH = re.compile(r"\n\s*\n")


def _new_identifier() -> Any:
    # Our own instance (~1 s to load) leaves py3langid's global one untouched.
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_pickled_model(MODEL_FILE, norm_probs=True)


def _model():
    # Loaded once per process.
    global _identifier
    if _identifier is None:
        with _lock:
            if _identifier is None:
                _identifier = _new_identifier()
    return _identifier


def _code_like(line: str) -> bool:
    stripped = line.strip()
    if not stripped:
        return False
    if _SQL_LINE.match(line) or _JSON_LINE.match(line) or _CODE_START.match(line):
        return True
    # a lone bracket ("{", "},") is all symbols
    return sum(ch in _SYMBOLS for ch in stripped) / len(stripped) >= 0.2


def clean(text: str) -> str:
    """The prose of an answer: code, URLs, tags, math, numbers and markup removed (see module
    doc)."""
    text = _FENCED.sub("\n", text)
    text = _INLINE_CODE.sub(" ", text)
    text = _URL.sub(" ", text)
    text = _EMAIL.sub(" ", text)
    text = _TAG.sub(" ", text)
    text = _MATH.sub(" ", text)
    text = _LATEX_CMD.sub(" ", text)
    lines = [ln for ln in text.split("\n") if not _code_like(ln)]
    text = "\n".join(lines)
    text = _NUMBER.sub(" ", text)
    # Markup: heading/list/quote markers, emphasis, table bars; keep letters and punctuation.
    text = re.sub(r"^\s*(?:#{1,6}|[-*+>]|\d+[.)])\s+", "", text, flags=re.M)
    text = re.sub(r"[*_|#>~=]+", " ", text)
    return "\n".join(" ".join(ln.split()) for ln in text.split("\n")).strip()


def _is_cjk(ch: str) -> bool:
    name = unicodedata.name(ch, "")
    return name.startswith(
        ("CJK UNIFIED", "CJK COMPATIBILITY IDEOGRAPH", "HIRAGANA", "KATAKANA", "HANGUL")
    )


def weight(text: str) -> int:
    """Letters of prose, a CJK character counting `CJK_WEIGHT`."""
    return sum(CJK_WEIGHT if _is_cjk(ch) else 1 for ch in text if ch.isalpha())


def _hinglish(text: str) -> bool:
    words = re.findall(r"[a-z]+", text.lower())
    if len(words) < 5 or any(not ch.isascii() for ch in text if ch.isalpha()):
        return False
    hits = [w for w in words if w in HINGLISH_WORDS]
    return len(hits) / len(words) >= HINGLISH_SHARE and len(set(hits)) >= HINGLISH_DISTINCT


def _classify(text: str) -> str | None:
    """Code of one piece of prose long enough to identify, or None when not confident."""
    if _hinglish(text):
        return "hin"
    iso1, prob = _model().classify(text)
    if prob < MIN_CONFIDENCE:
        return None
    return _FROM_ISO1.get(str(iso1), str(iso1))


def identify(text: Any) -> tuple[str | None, str]:
    """(ISO 639-3 code, "ok") or (None, why undetermined).

    Codes outside xlexp's table come back as py3langid's raw ISO 639-1 code.
    """
    if not isinstance(text, str):
        return None, "missing"
    prose = clean(text)
    if weight(prose) < MIN_LETTERS:
        return None, "too short"
    votes: dict[str, int] = {}
    for para in _PARAGRAPH.split(prose):
        w = weight(para)
        if w >= MIN_LETTERS:
            code = _classify(para)
            if code is not None:
                votes[code] = votes.get(code, 0) + w
    if not votes:
        code = _classify(prose)
        return (code, "ok") if code is not None else (None, "low confidence")
    return max(votes, key=votes.__getitem__), "ok"


def detect(text: Any) -> str | None:
    """ISO 639-3 code of the answer's language, None when undetermined (see `identify`)."""
    return identify(text)[0]


def fidelity(outputs: list[Any], lang: str) -> dict:
    """`{rate, n_matched, n_determined, n_undetermined, n_missing}` of answers in `lang`.

    `rate` is matched / determined (None when nothing is determined); undetermined answers
    (code only, too short, low confidence) and missing ones (failed responses) are counted,
    not scored. An empty answer is a determined miss: it is not in the language.
    """
    matched = determined = undetermined = missing = 0
    for out in outputs:
        if not isinstance(out, str):
            missing += 1
            continue
        if not out.strip():
            determined += 1
            continue
        code, _ = identify(out)
        if code is None:
            undetermined += 1
            continue
        determined += 1
        matched += code == lang
    return {
        "rate": matched / determined if determined else None,
        "n_matched": matched,
        "n_determined": determined,
        "n_undetermined": undetermined,
        "n_missing": missing,
    }


# ---------------------------------------------------------------- line level
# The Language Confusion Benchmark's view (Marchisio et al. 2024): an answer that switches to
# English halfway is in its language by the response-level vote above, but not line by line.
# Each prose line of an answer (after `clean`) long enough to identify gets a language; a
# response passes when every such line is in the target language. Lines are short, so they are
# identified among the languages of xlexp's table only: free over all of py3langid's 97, a
# short French line comes out Croatian.
MIN_LINE_LETTERS = 15
# English function words that are no word of another language of the table ("in", "die",
# "is", "also", "will", "not", "of", "can", "be" are), so a hit inside a German or Irish line
# is English. Two in one target-language line make the line mixed: one is a quoted title.
ENGLISH_FUNCTION_WORDS = frozenset([
    "the", "and", "with", "which", "that", "this", "these", "those", "from", "would", "should",
    "could", "their", "there", "they", "them", "what", "when", "where", "who", "how", "why",
    "because", "about", "into", "than", "then", "were", "your", "you", "very", "some", "here",
    "only", "other", "such", "each", "between", "through", "while", "without", "within", "does",
    "doesn't", "don't", "isn't", "aren't", "it's", "she", "our", "by", "its",
])
WORD_MIN = 2
_WORD = re.compile(r"[^\W\d_]+(?:['\u2019][^\W\d_]+)?")  # don't, don’t
_line_identifier = None


def _line_model():
    global _line_identifier
    if _line_identifier is None:
        with _lock:
            if _line_identifier is None:
                found = _new_identifier()
                found.set_languages(sorted({iso1 for _, iso1 in LANGUAGES.values()}))
                _line_identifier = found
    return _line_identifier


def line_languages(text: str) -> list[tuple[str, str | None]]:
    """(prose line, its code or None) for each non-empty line of the answer's prose; None: too
    short (below `MIN_LINE_LETTERS`) or below `MIN_CONFIDENCE`."""
    out: list[tuple[str, str | None]] = []
    for line in clean(text).split("\n"):
        if not line.strip():
            continue
        code = None
        if weight(line) >= MIN_LINE_LETTERS:
            if _hinglish(line):
                code = "hin"
            else:
                iso1, prob = _line_model().classify(line)
                code = _FROM_ISO1.get(str(iso1)) if prob >= MIN_CONFIDENCE else None
        out.append((line, code))
    return out


def _latin(line: str) -> bool:
    letters = [ch for ch in line if ch.isalpha()]
    latin = sum("LATIN" in unicodedata.name(ch, "") for ch in letters)
    return bool(letters) and latin * 2 >= len(letters)


def english_words(line: str) -> int:
    """English function words in a line (see `ENGLISH_FUNCTION_WORDS`)."""
    return sum(w.lower().replace("\u2019", "'") in ENGLISH_FUNCTION_WORDS
               for w in _WORD.findall(line))


def line_check(text: Any, lang: str) -> dict | None:
    """One answer line by line: `{share, passed, word_checked, word_passed}`, None when no
    prose line can be identified (or the answer is missing). `share`: its identified lines in
    `lang`; `passed`: all of them are. The word check reads the Latin-script lines identified
    as `lang` (not for English, whose lines are English words): `word_passed` when none holds
    `WORD_MIN` English function words. An empty answer is a determined miss."""
    if not isinstance(text, str):
        return None
    if not text.strip():
        return {"share": 0.0, "passed": False, "word_checked": False, "word_passed": None}
    lines = line_languages(text)
    found = [code for _, code in lines if code is not None]
    if not found:
        return None
    share = sum(code == lang for code in found) / len(found)
    target = [line for line, code in lines if code == lang and _latin(line)]
    checked = bool(target) and lang != "eng"
    return {
        "share": share,
        "passed": share == 1.0,
        "word_checked": checked,
        "word_passed": all(english_words(line) < WORD_MIN for line in target) if checked else None,
    }


def line_fidelity(outputs: list[Any], lang: str) -> dict:
    """Line-level fidelity of a language's answers: `line_fidelity` (the mean share of an
    answer's identified prose lines in `lang`), `line_pass_rate` (answers whose every identified
    line is), `line_word_pass_rate` (answers whose Latin-script `lang` lines hold no run of
    English function words, over the answers that have such a line), and
    `n_line_undetermined` (answers with no identifiable prose line, left out of the rates)."""
    checks = [line_check(out, lang) for out in outputs if isinstance(out, str)]
    done = [c for c in checks if c is not None]
    worded = [c for c in done if c["word_checked"]]
    out: dict[str, Any] = {
        "line_fidelity": sum(c["share"] for c in done) / len(done) if done else None,
        "line_pass_rate": sum(c["passed"] for c in done) / len(done) if done else None,
        "line_word_pass_rate": sum(c["word_passed"] for c in worded) / len(worded)
        if worded
        else None,
        "n_line_undetermined": len(checks) - len(done),
    }
    if done and not worded:  # why the word rate is absent, for the table's notes
        why = ("English lines are English words" if lang == "eng" else "the word check reads "
               f"Latin-script lines in the target language and {lang} has none")
        out["notes"] = {"line_word_pass_rate": why}
    return out

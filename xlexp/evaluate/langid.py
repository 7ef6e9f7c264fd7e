"""Language fidelity: is the output in the language the instruction asked for (py3langid)."""

from __future__ import annotations

import threading

from xlexp.langs import LANGUAGES

_FROM_ISO1 = {iso1: code for code, (_, iso1) in LANGUAGES.items()}
_lock = threading.Lock()
_identifier = None


def _model():
    # Load once per process (~1 s); our own instance leaves py3langid's global one untouched.
    global _identifier
    if _identifier is None:
        with _lock:
            if _identifier is None:
                from py3langid.langid import MODEL_FILE, LanguageIdentifier

                _identifier = LanguageIdentifier.from_pickled_model(MODEL_FILE, norm_probs=False)
    return _identifier


def detect(text: str) -> str | None:
    """ISO 639-3 code of the text's language (the raw ISO 639-1 code when our table lacks it).

    None for empty or blank text.
    """
    if not text or not text.strip():
        return None
    iso1, _ = _model().classify(text)
    return _FROM_ISO1.get(str(iso1), str(iso1))


def fidelity(outputs: list[str], lang: str) -> float:
    """Share of outputs detected as `lang` (empty outputs count as misses); NaN for no outputs."""
    if not outputs:
        return float("nan")
    return sum(detect(o) == lang for o in outputs) / len(outputs)

"""The language table: ISO 639-3 code -> English name (for prompts) and ISO 639-1 (for LID).

Adding a language is one line here.
"""

from __future__ import annotations

LANGUAGES: dict[str, tuple[str, str]] = {
    "eng": ("English", "en"),
    "deu": ("German", "de"),
    "por": ("Portuguese", "pt"),
    "hun": ("Hungarian", "hu"),
    "lit": ("Lithuanian", "lt"),
    "gle": ("Irish", "ga"),
    "mlt": ("Maltese", "mt"),
    "zho": ("Chinese", "zh"),
    "hin": ("Hindi", "hi"),
    "fra": ("French", "fr"),
    "fin": ("Finnish", "fi"),
    "tur": ("Turkish", "tr"),
    "spa": ("Spanish", "es"),
    "ita": ("Italian", "it"),
    "nld": ("Dutch", "nl"),
}


def name(code: str) -> str:
    """English name of a language code, e.g. ``deu`` -> ``German``."""
    return LANGUAGES[code][0]


def iso639_1(code: str) -> str:
    return LANGUAGES[code][1]

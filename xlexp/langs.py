"""The language table: ISO 639-3 code -> English name (for prompts) and ISO 639-1 (for LID).

Adding a language is one line here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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


def code_of(value: object) -> str | None:
    """The table's code for a language named by its code, English name or ISO 639-1 code, any
    case (`deu`, `German`, `de` -> `deu`); None for one the table lacks. A release's split or
    language column names languages these ways; the caller says which config key to fix."""
    text = str(value or "").strip().lower()
    for code, (english, iso1) in LANGUAGES.items():
        if text in (code, english.lower(), iso1):
            return code
    return None


@dataclass
class LangsConfig:
    codes: list[str] = field(default_factory=lambda: ["deu", "fra"])
    assign: str = "one"  # one: each pair gets one language, seeded and balanced; all: every one


def validate_langs(cfg: Any) -> None:
    """Target and evaluation languages are in the table; `langs.assign` is known."""
    from xlexp.errors import ConfigError

    for key, codes in (("langs.codes", cfg.langs.codes), ("eval.langs", cfg.eval.langs or [])):
        for i, code in enumerate(codes):
            if code not in LANGUAGES:
                raise ConfigError(
                    f"{key}[{i}]",
                    f"unknown language code {code!r} (known: {', '.join(sorted(LANGUAGES))})",
                )
    if not cfg.langs.codes:
        raise ConfigError("langs.codes", "needs at least one target language")
    if cfg.langs.assign not in ("one", "all"):
        raise ConfigError("langs.assign", f"must be 'one' or 'all', not {cfg.langs.assign!r}")

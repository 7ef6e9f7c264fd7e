"""Reason-then-Translate baseline (paper section 3, Table 2): the model answers in English,
then the answer is translated into the target language.

`one_prompt`: one prompt asks for the English answer and its translation in a fixed format;
the translation is extracted (a missing or empty one is a reject, the output left empty, as
the paper saw 7B models produce empty outputs). `two_step`: the model answers the English
prompt, then a second call translates its answer.
"""

from __future__ import annotations

import re

from xlexp import langs as langtable
from xlexp.evaluate import prompt
from xlexp.llm import Completion

MODES = ("one_prompt", "two_step")


def english_of(row: dict) -> str:
    """The English prompt of a benchmark row (without the cross-lingual instruction)."""
    return str(row.get("english") or row["instruction"])


def one_prompt(row: dict) -> list[dict]:
    text = prompt("rtt_one_prompt").format(
        instruction=english_of(row), language=langtable.name(row["lang"])
    )
    return [{"role": "user", "content": text}]


def answer_prompt(row: dict) -> list[dict]:
    """Step 1 of two_step: the plain English prompt."""
    return [{"role": "user", "content": english_of(row)}]


def translate_prompt(text: str, lang: str) -> list[dict]:
    """Step 2 of two_step: translate the English answer."""
    return [
        {
            "role": "user",
            "content": prompt("rtt_translate").format(text=text, language=langtable.name(lang)),
        }
    ]


def _marker(lang: str) -> re.Pattern:
    name = re.escape(langtable.name(lang))
    # "German translation:", "**German translation:**", "Translation into German:" ...
    return re.compile(
        rf"{name}\s+translation[\s*_]*:?|translation\s+(?:in|into)\s+{name}[\s*_]*:?", re.I
    )


def extract(text: str, lang: str) -> tuple[str | None, str | None]:
    """The translation part of a one_prompt answer: `(text, None)` or `(None, reason)`."""
    matches = list(_marker(lang).finditer(text or ""))
    if not matches:
        return None, "no translation section"
    translated = text[matches[-1].end() :].strip().lstrip("*_:").strip()
    return (translated, None) if translated else (None, "empty translation")


def from_completion(comp: Completion, lang: str | None = None) -> tuple[str | None, str | None]:
    """Text of a completion (`lang` given: the extracted translation), or (None, reason)."""
    if not comp.ok:
        return None, f"backend error: {comp.error}"
    if lang is not None:
        return extract(comp.text, lang)
    text = comp.text.strip()
    return (text, None) if text else (None, "empty answer")

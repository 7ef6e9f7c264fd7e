"""XL-Instruct data generation (paper section 4): pure cores, one module per stage."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def prompt(name: str) -> str:
    """A stage's prompt template, a plain text file in `xlexp/generate/prompts/`."""
    return resources.files("xlexp.generate").joinpath("prompts", f"{name}.txt").read_text()

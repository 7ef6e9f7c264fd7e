"""Evaluation (paper section 3): XL-AlpacaEval benchmark, pairwise LLM judge, metrics, language ID.

The modules here are pure cores: data in, data out. The shell that calls models and the store
imports them.
"""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def prompt(name: str) -> str:
    """A judge prompt template, a plain text file in `xlexp/evaluate/prompts/`."""
    return resources.files("xlexp.evaluate").joinpath("prompts", f"{name}.txt").read_text()

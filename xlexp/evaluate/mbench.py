"""m-AlpacaEval (paper section 6, Table 3): the XL-AlpacaEval English prompts (AlpacaEval minus
Table 4) machine translated into each language by a translator role (GPT-4o in the paper), plus the
English column (the same prompts, lang `eng`). Monolingual: no cross-lingual template is appended.
"""

from __future__ import annotations

from collections.abc import Sequence

from xlexp import langs as langtable
from xlexp.evaluate import prompt
from xlexp.llm import Completion

ENGLISH = "eng"
PARSER_VERSION = 1


def build_prompts(prompts: Sequence[dict], lang: str) -> list[list[dict]]:
    template = prompt("m_translate")
    name = langtable.name(lang)
    return [
        [{"role": "user", "content": template.format(language=name, instruction=p["instruction"])}]
        for p in prompts
    ]


def parse(prompts: Sequence[dict], completions: Sequence[Completion], lang: str) -> list[dict]:
    """Benchmark rows `{id, lang, instruction, english, dataset}`, or `{id, lang, reject}`."""
    rows = []
    for p, c in zip(prompts, completions, strict=True):
        base = {
            "id": p["id"],
            "lang": lang,
            "english": p["instruction"],
            "dataset": p.get("dataset", ""),
        }
        text = c.text.strip() if c.ok else ""
        if not c.ok:
            rows.append({**base, "reject": f"backend error: {c.error}"})
        elif not text:
            rows.append({**base, "reject": "empty translation"})
        else:
            rows.append({**base, "instruction": text})
    return rows


def english_rows(prompts: Sequence[dict]) -> list[dict]:
    """The English column: the prompts as they are."""
    return [
        {
            "id": p["id"],
            "lang": ENGLISH,
            "instruction": p["instruction"],
            "english": p["instruction"],
            "dataset": p.get("dataset", ""),
        }
        for p in prompts
    ]

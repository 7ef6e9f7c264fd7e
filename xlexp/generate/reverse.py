"""Stage 1, reverse instructions (paper 4.1): the question a passage answers."""

from __future__ import annotations

import re

from xlexp.generate import prompt
from xlexp.llm import Completion, Conversation

_PREFIX = re.compile(r"^\s*(?:\*\*)?(?:question|instruction|user)\s*[:：]\s*(?:\*\*)?\s*", re.I)
MAX_CHARS = 600


def build_prompts(passages: list[dict]) -> list[Conversation]:
    template = prompt("reverse")
    return [[{"role": "user", "content": template.format(passage=p["text"])}] for p in passages]


def parse_one(passage: dict, completion: Completion) -> dict:
    """A pair {id, seed_id, question, response} or a reject {id, reason, raw}."""
    if not completion.ok:
        return {"id": passage["id"], "reject": f"backend error: {completion.error}"}
    text = completion.text.strip()
    text = _PREFIX.sub("", text).strip().strip('"“”').strip()
    if not text:
        return {"id": passage["id"], "reject": "empty instruction", "raw": completion.text}
    if len(text) > MAX_CHARS:
        return {
            "id": passage["id"],
            "reject": f"instruction longer than {MAX_CHARS} chars",
            "raw": completion.text,
        }
    if text[:80] == passage["text"][:80]:
        return {
            "id": passage["id"],
            "reject": "instruction copies the passage",
            "raw": completion.text,
        }
    return {
        "id": passage["id"],
        "seed_id": passage["id"],
        "question": text,
        "response": passage["text"],
    }


def parse(passages: list[dict], completions: list[Completion]) -> list[dict]:
    return [parse_one(p, c) for p, c in zip(passages, completions, strict=True)]

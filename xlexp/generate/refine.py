"""Stage 2, refinement (paper 4.2): the teacher rewords the pair on four criteria."""

from __future__ import annotations

import re

from xlexp.generate import prompt
from xlexp.llm import Completion, Conversation

_FIELDS = re.compile(
    r"^\s*(?:\*\*)?question(?:\*\*)?\s*[:：]\s*(?:\*\*)?(?P<q>.*?)\n\s*(?:\*\*)?response(?:\*\*)?\s*[:：]\s*(?:\*\*)?(?P<r>.*)$",
    re.I | re.S,
)
MIN_RATIO = 0.3  # a "refined" response under 30% of the original length dropped content


def build_prompts(pairs: list[dict]) -> list[Conversation]:
    template = prompt("refine")
    return [
        [
            {
                "role": "user",
                "content": template.format(question=p["question"], response=p["response"]),
            }
        ]
        for p in pairs
    ]


def parse_one(pair: dict, completion: Completion) -> dict:
    if not completion.ok:
        return {"id": pair["id"], "reject": f"backend error: {completion.error}"}
    m = _FIELDS.search(completion.text.strip())
    if not m:
        return {
            "id": pair["id"],
            "reject": "no 'Question:' / 'Response:' fields",
            "raw": completion.text,
        }
    question, response = m.group("q").strip(), m.group("r").strip()
    if not question or not response:
        return {"id": pair["id"], "reject": "empty question or response", "raw": completion.text}
    if len(response) < MIN_RATIO * len(pair["response"]):
        return {
            "id": pair["id"],
            "reject": "refined response lost most of the original",
            "raw": completion.text,
        }
    return {
        **pair,
        "question": question,
        "response": response,
        "original_question": pair["question"],
    }


def parse(pairs: list[dict], completions: list[Completion]) -> list[dict]:
    return [parse_one(p, c) for p, c in zip(pairs, completions, strict=True)]

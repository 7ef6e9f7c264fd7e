"""Pairwise LLM judge (paper section 3, AlpacaEval-style): which output follows the instruction better.

Labels are "A" and "B": each is a single token in the GPT-4o, Llama 3, Qwen 2.5, Gemma and
SmolLM tokenizers, so the judge's first generated token carries the verdict and its top-k
logprobs give a probability rather than a hard label (as alpaca_eval's logprob annotators do).

Conventions: `p_b` is P(output B is better). A request's `order` says which output sits in
which slot: "sr" = system in A, reference in B; "rs" = reference in A, system in B. The
preference of a row is P(system output is better) in [0, 1]; 0.5 is a tie.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from typing import Any

from xlexp.evaluate import prompt

LABELS = ("A", "B")
ORDERS = ("sr", "rs")
# Everything the judge is shown but the data (for cache keys), and the verdict parser's
# version: bump it when parsing changes so stored judgements are recomputed.
PROMPT = prompt("pairwise_system") + "\n" + prompt("pairwise")
PARSER_VERSION = 1

# Characters that may wrap a label token: whitespace, SentencePiece/BPE space markers, markdown.
_WRAP = " \t\r\n\u2581\u0120\u010a*_`\"'()[]{}<>.:,;!"
_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
# "B", "**B**", "(B)", "B.", "B is better" or "B\n..." at the very start.
_LEADING = re.compile(r"^[\s*_`\"'(\[]*(A|B)(?=[\s*_`\"')\]]*(?:[.:,;!\n]|\Z|is\b))", re.I)
# "Output B", "the better output is (B)", "Answer: **A**" ... A bare lowercase letter needs
# punctuation, "is" or the end after it, so "the answer is a bit long" is no verdict.
_EXPLICIT = re.compile(
    r"\b(?:output|answer|response|option|choice|verdict|winner)(?:\s+is)?\s*[:\-]?\s*"
    r"(?:[(\[]\s*(A|B)\s*[)\]]|\*\*(A|B)\*\*|[\"'`](A|B)[\"'`]|(?-i:(A|B))\b"
    r"|(A|B)(?=\s*(?:[.:,;!\n]|\Z|\bis\b)))",
    re.I,
)


def pairwise_conversation(instruction: str, output_a: str, output_b: str) -> list[dict]:
    """System + user messages asking which of two outputs is better for the instruction."""
    user = prompt("pairwise").format(instruction=instruction, output_a=output_a, output_b=output_b)
    return [
        {"role": "system", "content": prompt("pairwise_system").strip()},
        {"role": "user", "content": user},
    ]


def plan(
    rows: Sequence[dict],
    system_outputs: Sequence[str],
    reference_outputs: Sequence[str],
    both_orders: bool,
    seed: int,
) -> list[dict]:
    """Judge requests `{id, lang, order, conversation}`, outputs aligned with `rows`.

    Both orders per row cancel the judge's position bias; otherwise one order per row drawn
    from (seed, lang, id), so a rerun or a subset draws the same orders (as alpaca_eval does).
    """
    if not (len(rows) == len(system_outputs) == len(reference_outputs)):
        raise ValueError(
            f"{len(rows)} rows, {len(system_outputs)} system and {len(reference_outputs)} reference outputs"
        )
    requests = []
    for row, sys_out, ref_out in zip(rows, system_outputs, reference_outputs, strict=True):
        if both_orders:
            orders: Sequence[str] = ORDERS
        else:
            orders = [random.Random(f"judge-order:{seed}:{row['lang']}:{row['id']}").choice(ORDERS)]
        for order in orders:
            a, b = (sys_out, ref_out) if order == "sr" else (ref_out, sys_out)
            requests.append(
                {
                    "id": row["id"],
                    "lang": row["lang"],
                    "order": order,
                    "conversation": pairwise_conversation(row["instruction"], a, b),
                }
            )
    return requests


def _label_of(token: str) -> str | None:
    core = token.strip(_WRAP).upper()
    return core if core in LABELS else None


def _from_logprobs(logprobs: list[dict[str, float]]) -> float | None:
    """P(B) renormalised over the label variants at the first non-blank generated token.

    None when that token's most likely candidate is not a label (e.g. "The better ..."): the
    text parse decides then, since label probabilities deep in the top-k mean little.
    """
    for top in logprobs:
        if not top:
            continue
        best = max(top, key=top.__getitem__)
        if not best.strip(_WRAP):
            continue  # a leading space/newline/markdown token: the verdict comes next
        if _label_of(best) is None:
            return None
        mass = {label: 0.0 for label in LABELS}
        peak = top[best]
        for token, lp in top.items():
            label = _label_of(token)
            if label is not None and lp is not None and math.isfinite(lp):
                mass[label] += math.exp(lp - peak)
        return mass["B"] / (mass["A"] + mass["B"])
    return None


def _from_text(text: str) -> str | None:
    text = _THINK.sub("", text).strip()
    if _label_of(text) is not None:
        return _label_of(text)
    for pattern in (_LEADING, _EXPLICIT):
        m = pattern.search(text)
        if m:
            return next(g for g in m.groups() if g).upper()
    return None


def _verdict(text: str, logprobs: list[dict[str, float]] | None) -> tuple[float | None, str]:
    """(P(B), "logprobs" | "text") or (None, reason)."""
    if logprobs:
        p_b = _from_logprobs(logprobs)
        if p_b is not None:
            return p_b, "logprobs"
    label = _from_text(text or "")
    if label is not None:
        return (1.0 if label == "B" else 0.0), "text"
    if not (text or "").strip():
        return None, "empty verdict"
    return None, "no label in verdict"


def parse_verdict(text: str, logprobs: list[dict[str, float]] | None) -> tuple[float | None, str | None]:
    """P(output B is better), from the first token's top logprobs when present, else the text.

    Returns `(p_b, None)`, or `(None, reason)` for a verdict with no recognisable label.
    """
    p_b, how = _verdict(text, logprobs)
    return (p_b, None) if p_b is not None else (None, how)


def _get(completion: Any, name: str) -> Any:
    if isinstance(completion, dict):
        return completion.get(name)
    return getattr(completion, name, None)


def combine(plan_rows: Sequence[dict], completions: Sequence[Any]) -> list[dict]:
    """One row per (lang, id): `{id, lang, preference, verdicts, malformed}`.

    `completions` (Completion objects or dicts with text/logprobs/error) align with
    `plan_rows`. The preference flips P(B) to P(system better) per order and averages the
    orders that parsed; when none did it is None (recorded, never guessed).
    """
    if len(plan_rows) != len(completions):
        raise ValueError(f"{len(plan_rows)} judge requests but {len(completions)} completions")
    rows: dict[tuple[str, Any], dict] = {}
    for req, comp in zip(plan_rows, completions, strict=True):
        if req["order"] not in ORDERS:
            raise ValueError(f"unknown order {req['order']!r}; expected one of {ORDERS}")
        row = rows.setdefault(
            (req["lang"], req["id"]),
            {"id": req["id"], "lang": req["lang"], "preference": None, "verdicts": [], "malformed": []},
        )
        text = _get(comp, "text") or ""
        error = _get(comp, "error")
        if error:
            row["malformed"].append({"order": req["order"], "reason": f"backend error: {error}", "text": text})
            continue
        p_b, how = _verdict(text, _get(comp, "logprobs"))
        if p_b is None:
            row["malformed"].append({"order": req["order"], "reason": how, "text": text})
            continue
        pref = p_b if req["order"] == "rs" else 1.0 - p_b
        row["verdicts"].append({"order": req["order"], "p_b": p_b, "preference": pref, "source": how, "text": text})
    for row in rows.values():
        if row["verdicts"]:
            row["preference"] = sum(v["preference"] for v in row["verdicts"]) / len(row["verdicts"])
    return list(rows.values())

"""Pairwise LLM judge (paper section 3, AlpacaEval-style): which output follows the instruction
better. Two protocols, chosen by `judge.protocol`:

- `alpaca_eval` (the paper's): alpaca_eval 0.6.6's `weighted_alpaca_eval_gpt4_turbo`
  annotator (see alpaca_judge.py): its prompt, one slot order per prompt drawn as alpaca_eval
  draws it, its logprob parser, no text fallback.
- `both_orders` (xlexp's, beyond the paper): our A/B prompt, which adds a wrong-language rule;
  every prompt is judged in both slot orders and the two preferences averaged, which cancels
  the judge's position bias. Labels "A" and "B" are single tokens in the GPT-4o, Llama 3,
  Qwen 2.5, Gemma and SmolLM tokenizers, so the first generated token's top-k logprobs give a
  probability; the text is parsed only when that token is not a label.

Under both protocols, identical outputs are a tie (0.5) without a judge call (as alpaca_eval
does), and a missing output (a failed response, stored as null) is never shown to the judge:
its row is counted as failed, not judged.

Conventions: `p_b` is P(output B is better). A request's `order` says which output sits in
which slot: "sr" = system in A, reference in B; "rs" = reference in A, system in B (for
alpaca_eval: slot A is its `output_1`, "m"). The preference of a row is P(system output is
better) in [0, 1]; 0.5 is a tie.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from xlexp.evaluate import prompt

PROTOCOLS = ("alpaca_eval", "both_orders")
LABELS = ("A", "B")
ORDERS = ("sr", "rs")
# Everything the judge is shown but the data (for cache keys), and the verdict parser's
# version: bump it when parsing changes so stored judgements are recomputed.
PROMPT = prompt("pairwise_system") + "\n" + prompt("pairwise")
PARSER_VERSION = 2  # 2: the text fallback reads verdicts, not the first mention of a label

# Row statuses: judged (a preference from the judge), identical (tie, no call), failed (an
# output is missing: never judged), malformed (the judge gave no usable verdict).
JUDGED, IDENTICAL, FAILED, MALFORMED = "judged", "identical", "failed", "malformed"

# Characters that may wrap a label token: whitespace, SentencePiece/BPE space markers, markdown.
_WRAP = " \t\r\n\u2581\u0120\u010a*_`\"'()[]{}<>.:,;!"
_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
# A label as a verdict names it: wrapped in markup or quotes, or bare and not part of a word.
_LABEL = r"(?:\*\*|[(\[\"'`])?\s*(?:(?:output|response|answer|option)\s+)?(?:\*\*|[(\[\"'`])?([AB])(?![\w'])"
_NOUN = r"(?:output|response|answer|option|assistant)"
_BETTER = r"(?:clearly\s+|much\s+|slightly\s+|definitely\s+)?(?:better|superior|preferred|preferable|the\s+better\s+one|the\s+best)"
# What a verdict looks like in free text. A mere mention ("Output A is worse than Output B",
# "Response A is vague") is none: the patterns need a verdict word or a judgement of "better".
_VERDICTS = [
    # "B", "**B**", "(B)", "B.", "Output B", "B is better", at the very start of the answer.
    re.compile(r"^\s*" + _LABEL + r"\s*(?:[.!]\s*(?:$|\n)|$|\n|[.:]\s|\s+is\s+" + _BETTER + r")", re.I),
    # "Verdict: B", "Final answer: **A**", "Winner - (B)", "Best output: B", "Answer: b".
    re.compile(r"\b(?:final\s+)?(?:verdict|answer|winner|choice|decision|best\s+" + _NOUN + r")\s*(?:is\s*)?[:=\-]\s*" + _LABEL, re.I),
    # "The better output is (A)", "the best response is B".
    re.compile(r"\b(?:better|best|preferred|winning)\s+" + _NOUN + r"\s+is\s+" + _LABEL, re.I),
    # "Output B is better", "Response (A) is clearly superior".
    re.compile(r"\b" + _NOUN + r"\s*(?:\*\*|[(\[\"'`])?([AB])(?![\w'])(?:\*\*|[)\]\"'`])?\s+is\s+" + _BETTER, re.I),
    # "I prefer Output B", "I would choose A".
    re.compile(r"\bI\s+(?:would\s+)?(?:prefer|choose|pick|select|go\s+with)\s+" + _LABEL, re.I),
]


def check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown judge protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    return protocol


def prompt_digest_input(protocol: str) -> str:
    """The prompt text a protocol shows the judge (for the judge artifact's key)."""
    if check_protocol(protocol) == "alpaca_eval":
        from xlexp.evaluate import alpaca_judge

        return alpaca_judge.ANNOTATOR + "\n" + alpaca_judge.prompt_template()
    return PROMPT


def sampling_kwargs(protocol: str) -> dict:
    """The judge call's sampling: alpaca_eval's annotator settings, or ours (greedy, 4 tokens, top-20)."""
    if check_protocol(protocol) == "alpaca_eval":
        from xlexp.evaluate import alpaca_judge

        return alpaca_judge.completion_kwargs()
    return {"temperature": 0.0, "max_tokens": 4, "logprobs": 20}


def pairwise_conversation(instruction: str, output_a: str, output_b: str) -> list[dict]:
    """System + user messages asking which of two outputs is better for the instruction."""
    user = prompt("pairwise").format(instruction=instruction, output_a=output_a, output_b=output_b)
    return [
        {"role": "system", "content": prompt("pairwise_system").strip()},
        {"role": "user", "content": user},
    ]


def _missing(output: Any) -> bool:
    """A failed response: stored as null (or a NaN from pandas), never a string."""
    return not isinstance(output, str)


def plan(
    protocol: str,
    rows: Sequence[dict],
    system_outputs: Sequence[Any],
    reference_outputs: Sequence[Any],
) -> list[dict]:
    """One entry per row: `{id, lang, requests: [{order, conversation, switched?}], status}`.

    `status` is None for rows that go to the judge, IDENTICAL for identical outputs (a tie,
    no call) and FAILED when either output is missing (with `reason`). The requests of all
    entries, in order, are what the shell sends (see `conversations`).
    """
    check_protocol(protocol)
    if not (len(rows) == len(system_outputs) == len(reference_outputs)):
        raise ValueError(
            f"{len(rows)} rows, {len(system_outputs)} system and {len(reference_outputs)} reference outputs"
        )
    entries: list[dict] = []
    for row, sys_out, ref_out in zip(rows, system_outputs, reference_outputs, strict=True):
        entry: dict = {"id": row["id"], "lang": row["lang"], "requests": [], "status": None}
        if _missing(sys_out) or _missing(ref_out):
            entry["status"] = FAILED
            entry["reason"] = "missing system output" if _missing(sys_out) else "missing reference output"
        elif sys_out == ref_out:
            entry["status"] = IDENTICAL
        elif protocol == "both_orders":
            for order in ORDERS:
                a, b = (sys_out, ref_out) if order == "sr" else (ref_out, sys_out)
                entry["requests"].append({"order": order, "conversation": pairwise_conversation(row["instruction"], a, b)})
        entries.append(entry)
    if protocol == "alpaca_eval":
        from xlexp.evaluate import alpaca_judge

        todo = [i for i, e in enumerate(entries) if e["status"] is None]
        prepared = alpaca_judge.prepare(
            [rows[i]["instruction"] for i in todo], [reference_outputs[i] for i in todo], [system_outputs[i] for i in todo]
        )
        for i, req in zip(todo, prepared, strict=True):
            # Unswitched, output_1 (slot "m", our A) is the reference: order "rs".
            order = "sr" if req["switched"] else "rs"
            entries[i]["requests"].append({"order": order, "switched": req["switched"], "conversation": req["conversation"]})
    return entries


def conversations(entries: Sequence[dict]) -> list[list[dict]]:
    """The judge calls of a plan, in the order `combine` expects their completions."""
    return [req["conversation"] for e in entries for req in e["requests"]]


def _label_of(token: str) -> str | None:
    core = token.strip(_WRAP).upper()
    return core if core in LABELS else None


def _finite_top(top: dict[str, Any]) -> dict[str, float]:
    return {t: float(lp) for t, lp in top.items() if isinstance(lp, int | float) and math.isfinite(lp)}


def _from_logprobs(logprobs: list[dict[str, float]]) -> float | None:
    """P(B) renormalised over the label variants at the first non-blank generated token.

    None when that token's most likely candidate is not a label (e.g. "The better ..."): the
    text parse decides then, since label probabilities deep in the top-k mean little. NaN and
    -inf logprobs are no candidates (a NaN must not win `max`, -inf only gives 0/0).
    """
    for raw in logprobs:
        top = _finite_top(raw or {})
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
            if label is not None:
                mass[label] += math.exp(lp - peak)
        return mass["B"] / (mass["A"] + mass["B"])
    return None


def _from_text(text: str) -> tuple[str | None, str]:
    """(label, "text") for a verdict the text states, else (None, reason)."""
    text = _THINK.sub("", text).strip()
    if not text:
        return None, "empty verdict"
    if _label_of(text) is not None:
        return _label_of(text), "text"
    found = {m.group(m.lastindex).upper() for pattern in _VERDICTS for m in pattern.finditer(text)}
    if len(found) == 1:
        return found.pop(), "text"
    return None, "conflicting verdicts" if found else "no verdict in text"


def _verdict(text: str, logprobs: list[dict[str, float]] | None) -> tuple[float | None, str]:
    """(P(B), "logprobs" | "text") or (None, reason)."""
    if logprobs:
        p_b = _from_logprobs(logprobs)
        if p_b is not None:
            return p_b, "logprobs"
    label, how = _from_text(text or "")
    if label is None:
        return None, how
    return (1.0 if label == "B" else 0.0), how


def parse_verdict(text: str, logprobs: list[dict[str, float]] | None) -> tuple[float | None, str | None]:
    """P(output B is better) under `both_orders`, from the first token's top logprobs when
    present, else the verdict the text states.

    Returns `(p_b, None)`, or `(None, reason)` when there is no verdict (a mention of a label
    is not one; two different verdicts are "conflicting verdicts").
    """
    p_b, how = _verdict(text, logprobs)
    return (p_b, None) if p_b is not None else (None, how)


def _get(completion: Any, name: str) -> Any:
    if isinstance(completion, dict):
        return completion.get(name)
    return getattr(completion, name, None)


def combine(protocol: str, entries: Sequence[dict], completions: Sequence[Any]) -> list[dict]:
    """One stored verdict row per plan entry:
    `{id, lang, protocol, status, preference, verdicts, malformed[, reason]}`.

    `completions` (Completion objects or dicts with text/logprobs/error) align with
    `conversations(entries)`. A request's preference is P(system better); a row's is the
    mean over its requests that gave a verdict, 0.5 for identical outputs, and None (never a
    guess) for failed rows and rows where no request gave a verdict (status MALFORMED).
    """
    check_protocol(protocol)
    n_requests = sum(len(e["requests"]) for e in entries)
    if n_requests != len(completions):
        raise ValueError(f"{n_requests} judge requests but {len(completions)} completions")
    comps = iter(completions)
    out = []
    for entry in entries:
        row = {"id": entry["id"], "lang": entry["lang"], "protocol": protocol, "status": entry["status"],
               "preference": None, "verdicts": [], "malformed": []}
        if entry["status"] == FAILED:
            row["reason"] = entry["reason"]
        elif entry["status"] == IDENTICAL:
            row["preference"] = 0.5
        for req in entry["requests"]:
            comp = next(comps)
            order = req["order"]
            if order not in ORDERS:
                raise ValueError(f"unknown order {order!r}; expected one of {ORDERS}")
            text = _get(comp, "text") or ""
            error = _get(comp, "error")
            if error:
                row["malformed"].append({"order": order, "reason": f"backend error: {error}", "text": text})
                continue
            if protocol == "alpaca_eval":
                from xlexp.evaluate import alpaca_judge

                pref, reason = alpaca_judge.parse(_get(comp, "logprobs"), bool(req["switched"]))
                if pref is None:
                    row["malformed"].append({"order": order, "reason": reason, "text": text})
                    continue
                row["verdicts"].append({"order": order, "preference": pref, "source": "logprobs", "text": text})
                continue
            p_b, how = _verdict(text, _get(comp, "logprobs"))
            if p_b is None:
                row["malformed"].append({"order": order, "reason": how, "text": text})
                continue
            pref = p_b if order == "rs" else 1.0 - p_b
            row["verdicts"].append({"order": order, "p_b": p_b, "preference": pref, "source": how, "text": text})
        if entry["status"] is None:
            if row["verdicts"]:
                row["status"] = JUDGED
                row["preference"] = sum(v["preference"] for v in row["verdicts"]) / len(row["verdicts"])
            else:
                row["status"] = MALFORMED
        out.append(row)
    return out

"""Pairwise LLM judge (paper section 3, AlpacaEval-style): which output follows the instruction
better. A protocol is an entry of `JUDGE_PROTOCOLS`, chosen by `eval.judge_protocol`; it declares
its judge calls per prompt, the prompt text and sampling (both in the judge artifact's key), the
requests for a prompt and the verdict of one answer. Two are built in:

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
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from xlexp.evaluate import prompt
from xlexp.registry import Registry
from xlexp.store import digest

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
_LABEL = (
    r"(?:\*\*|[(\[\"'`])?\s*(?:(?:output|response|answer|option)\s+)?"
    r"(?:\*\*|[(\[\"'`])?([AB])(?![\w'])"
)
_NOUN = r"(?:output|response|answer|option|assistant)"
_BETTER = (
    r"(?:clearly\s+|much\s+|slightly\s+|definitely\s+)?"
    r"(?:better|superior|preferred|preferable|the\s+better\s+one|the\s+best)"
)
# What a verdict looks like in free text. A mere mention ("Output A is worse than Output B",
# "Response A is vague") is none: the patterns need a verdict word or a judgement of "better".
_VERDICTS = [
    # "B", "**B**", "(B)", "B.", "Output B", "B is better", at the very start of the answer.
    re.compile(
        r"^\s*" + _LABEL + r"\s*(?:[.!]\s*(?:$|\n)|$|\n|[.:]\s|\s+is\s+" + _BETTER + r")", re.I
    ),
    # "Verdict: B", "Final answer: **A**", "Winner - (B)", "Best output: B", "Answer: b".
    re.compile(
        r"\b(?:final\s+)?(?:verdict|answer|winner|choice|decision|best\s+"
        + _NOUN
        + r")\s*(?:is\s*)?[:=\-]\s*"
        + _LABEL,
        re.I,
    ),
    # "The better output is (A)", "the best response is B".
    re.compile(r"\b(?:better|best|preferred|winning)\s+" + _NOUN + r"\s+is\s+" + _LABEL, re.I),
    # "Output B is better", "Response (A) is clearly superior".
    re.compile(
        r"\b"
        + _NOUN
        + r"\s*(?:\*\*|[(\[\"'`])?([AB])(?![\w'])(?:\*\*|[)\]\"'`])?\s+is\s+"
        + _BETTER,
        re.I,
    ),
    # "I prefer Output B", "I would choose A".
    re.compile(r"\bI\s+(?:would\s+)?(?:prefer|choose|pick|select|go\s+with)\s+" + _LABEL, re.I),
]


class JudgeProtocol(ABC):
    """How the judge compares a system's answer with the reference's. `requests` gets only the
    prompts that go to the judge (both outputs present and different) and gives each exactly
    `calls_per_prompt` requests `{order, conversation, ...}`; `verdict` reads one answer."""

    name: str = ""
    calls_per_prompt: int = 1  # judge calls per judged prompt (the cost plan counts them)
    # The Completion field `verdict` reads: "logprobs" (per token the sampled token first, then
    # the listed alternatives) or "top_logprobs" (only what the server listed).
    logprobs_field: str = "logprobs"
    parser_version: int = PARSER_VERSION  # in the judge artifact's key: bump when parsing changes
    # Every judged prompt in both slot orders (its verdicts carry "sr" and "rs"): the judge's
    # position consistency is defined (see agreement.flip_rate).
    judges_both_orders: bool = False

    @abstractmethod
    def prompt_text(self) -> str:
        """Everything the judge is shown but the data (for the judge artifact's key)."""

    @abstractmethod
    def sampling(self) -> dict:
        """The judge call's sampling settings (in the judge artifact's key)."""

    @abstractmethod
    def requests(
        self, rows: Sequence[dict], systems: Sequence[str], references: Sequence[str]
    ) -> list[list[dict]]:
        """The judge requests of each prompt, aligned with `rows`."""

    @abstractmethod
    def verdict(self, request: dict, text: str, logprobs: Any) -> tuple[dict | None, str | None]:
        """(`{preference, source, ...}`, None) from one answer to `request`, or (None, reason).
        `preference` is P(system better)."""


# eval.judge_protocol -> a JudgeProtocol; alpaca_eval's is imported only when a config names it.
JUDGE_PROTOCOLS: Registry[JudgeProtocol] = Registry("judge protocol")


def judge_protocol(name: str) -> JudgeProtocol:
    """The registered protocol `name`; a ConfigError naming eval.judge_protocol if none is."""
    return JUDGE_PROTOCOLS.get(name, "eval.judge_protocol")


def prompt_digest_input(name: str) -> str:
    """The prompt text a protocol shows the judge (for the judge artifact's key)."""
    return judge_protocol(name).prompt_text()


def sampling_kwargs(name: str) -> dict:
    """The judge call's sampling under a protocol."""
    return judge_protocol(name).sampling()


def key_info(name: str) -> dict:
    """What of a protocol determines the judge artifact (its key, beside the judge's card)."""
    return {
        "protocol": name,
        "prompt": digest(prompt_digest_input(name)),
        "sampling": sampling_kwargs(name),
        "parser": judge_protocol(name).parser_version,
    }


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
    judging = judge_protocol(protocol)
    if not (len(rows) == len(system_outputs) == len(reference_outputs)):
        raise ValueError(
            f"{len(rows)} rows, "
            f"{len(system_outputs)} system and {len(reference_outputs)} reference outputs"
        )
    entries: list[dict] = []
    for row, sys_out, ref_out in zip(rows, system_outputs, reference_outputs, strict=True):
        entry: dict = {"id": row["id"], "lang": row["lang"], "requests": [], "status": None}
        if _missing(sys_out) or _missing(ref_out):
            entry["status"] = FAILED
            entry["reason"] = (
                "missing system output" if _missing(sys_out) else "missing reference output"
            )
        elif sys_out == ref_out:
            entry["status"] = IDENTICAL
        entries.append(entry)
    todo = [i for i, e in enumerate(entries) if e["status"] is None]
    made = judging.requests([rows[i] for i in todo], [system_outputs[i] for i in todo],
                            [reference_outputs[i] for i in todo])
    for i, requests in zip(todo, made, strict=True):
        # The cost plan counts calls_per_prompt calls per judged prompt: a protocol keeps its word.
        if len(requests) != judging.calls_per_prompt:
            raise ValueError(f"judge protocol {protocol!r} made {len(requests)} requests for a "
                             f"prompt, declares {judging.calls_per_prompt}")
        entries[i]["requests"] = requests
    return entries


def conversations(entries: Sequence[dict]) -> list[list[dict]]:
    """The judge calls of a plan, in the order `combine` expects their completions."""
    return [req["conversation"] for e in entries for req in e["requests"]]


def _label_of(token: str) -> str | None:
    core = token.strip(_WRAP).upper()
    return core if core in LABELS else None


def _finite_top(top: dict[str, Any]) -> dict[str, float]:
    return {
        t: float(lp) for t, lp in top.items() if isinstance(lp, int | float) and math.isfinite(lp)
    }


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


def parse_verdict(
    text: str, logprobs: list[dict[str, float]] | None
) -> tuple[float | None, str | None]:
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
    judging = judge_protocol(protocol)
    n_requests = sum(len(e["requests"]) for e in entries)
    if n_requests != len(completions):
        raise ValueError(f"{n_requests} judge requests but {len(completions)} completions")
    comps = iter(completions)
    out = []
    for entry in entries:
        row = {
            "id": entry["id"],
            "lang": entry["lang"],
            "protocol": protocol,
            "status": entry["status"],
            "preference": None,
            "verdicts": [],
            "malformed": [],
        }
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
                row["malformed"].append(
                    {"order": order, "reason": f"backend error: {error}", "text": text}
                )
                continue
            verdict, reason = judging.verdict(req, text, _get(comp, judging.logprobs_field))
            if verdict is None:
                row["malformed"].append({"order": order, "reason": reason, "text": text})
                continue
            row["verdicts"].append({"order": order, **verdict, "text": text})
        if entry["status"] is None:
            if row["verdicts"]:
                row["status"] = JUDGED
                row["preference"] = sum(v["preference"] for v in row["verdicts"]) / len(
                    row["verdicts"]
                )
            else:
                row["status"] = MALFORMED
        out.append(row)
    return out


class BothOrders(JudgeProtocol):
    """xlexp's: our A/B prompt in both slot orders, the two preferences averaged.

    Its own reading, not alpaca_eval's: `logprobs` (the sampled token with its logprob, then
    the listed alternatives), at the first non-blank token; when that token's most likely
    candidate is a label, P(B) is renormalised over the label variants among them, else the
    verdict the text states decides. At temperature 0 the sampled token is the most likely one,
    so adding it changes nothing there; it lets a label sampled outside the top-k still count.
    """

    name = "both_orders"
    calls_per_prompt = 2
    judges_both_orders = True

    def prompt_text(self) -> str:
        return PROMPT

    def sampling(self) -> dict:
        return {"temperature": 0.0, "max_tokens": 4, "logprobs": 20}  # greedy, a label, top-20

    def requests(
        self, rows: Sequence[dict], systems: Sequence[str], references: Sequence[str]
    ) -> list[list[dict]]:
        out = []
        for row, sys_out, ref_out in zip(rows, systems, references, strict=True):
            slots = {"sr": (sys_out, ref_out), "rs": (ref_out, sys_out)}
            out.append([{"order": order,
                         "conversation": pairwise_conversation(row["instruction"], *slots[order])}
                        for order in ORDERS])
        return out

    def verdict(self, request: dict, text: str, logprobs: Any) -> tuple[dict | None, str | None]:
        p_b, how = _verdict(text, logprobs)
        if p_b is None:
            return None, how
        pref = p_b if request["order"] == "rs" else 1.0 - p_b
        return {"p_b": p_b, "preference": pref, "source": how}, None


JUDGE_PROTOCOLS.register("alpaca_eval", "xlexp.evaluate.alpaca_judge:PROTOCOL")
JUDGE_PROTOCOLS.register("both_orders", BothOrders())

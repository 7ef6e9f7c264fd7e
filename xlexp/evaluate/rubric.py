"""Fine-grained rubric scores (paper section 5 "Fine-Grained Evaluation", Figure 3, Table 8).

The judge scores one system output on one criterion (precision, informativeness, naturalness,
objectivity) on a 1-5 scale, each criterion's rubric a plain text file
`prompts/rubric_<criterion>.txt`. The score is the expectation over the digit tokens 1-5 at the
first generated token when the backend gives logprobs, the parsed digit otherwise; an answer
with no digit is recorded as malformed and counted, never guessed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from xlexp import langs as langtable
from xlexp.evaluate import prompt

CRITERIA = ("precision", "informativeness", "naturalness", "objectivity")
DIGITS = "12345"
PARSER_VERSION = 1
_WRAP = " \t\r\n\u2581\u0120\u010a*_`\"'()[]{}<>.:,;!"
_DIGIT = re.compile(r"(?<![\d.])([1-5])(?!\d)(?!\.\d)")  # a lone 1-5: not 10, 4.5 or 2.0


def prompt_text(criteria: Sequence[str]) -> str:
    """Everything the judge is shown but the data, for cache keys."""
    return "\n".join(
        [prompt("rubric_system"), prompt("rubric")] + [prompt(f"rubric_{c}") for c in criteria]
    )


def conversation(criterion: str, instruction: str, output: str, lang: str) -> list[dict]:
    """System + user messages asking for a 1-5 score of `output` on `criterion`."""
    if criterion not in CRITERIA:
        raise ValueError(f"unknown rubric criterion {criterion!r} ({', '.join(CRITERIA)})")
    name = langtable.name(lang)
    rubric = prompt(f"rubric_{criterion}").strip().replace("{language}", name)
    user = prompt("rubric").format(
        language=name, criterion=rubric, instruction=instruction, output=output
    )
    return [
        {"role": "system", "content": prompt("rubric_system").strip()},
        {"role": "user", "content": user},
    ]


def plan(rows: Sequence[dict], criteria: Sequence[str]) -> list[dict]:
    """Requests `{id, lang, criterion, conversation}` for alpaca_eval-format output rows.

    A failed response (output null) is not scored: the judge never sees a missing answer."""
    return [
        {
            "id": r["id"],
            "lang": r["lang"],
            "criterion": c,
            "conversation": conversation(c, r["instruction"], r["output"], r["lang"]),
        }
        for r in rows
        if isinstance(r["output"], str)
        for c in criteria
    ]


def _get(completion: Any, name: str) -> Any:
    return completion.get(name) if isinstance(completion, dict) else getattr(completion, name, None)


def _from_logprobs(logprobs: list[dict[str, float]]) -> float | None:
    for top in logprobs:
        if not top:
            continue
        best = max(top, key=top.__getitem__)
        if not best.strip(_WRAP):
            continue  # leading blank/markdown token: the digit comes next
        core = best.strip(_WRAP)
        if len(core) != 1 or core not in DIGITS:
            return None  # "Score", "10", ...: the text decides
        peak = top[best]
        mass: dict[int, float] = {}
        for token, lp in top.items():
            core = token.strip(_WRAP)
            if len(core) == 1 and core in DIGITS and lp is not None and math.isfinite(lp):
                mass[int(core)] = mass.get(int(core), 0.0) + math.exp(lp - peak)
        total = sum(mass.values())
        return sum(d * p for d, p in mass.items()) / total
    return None


def parse_score(text: str, logprobs: list[dict[str, float]] | None) -> tuple[float | None, str]:
    """(score in [1, 5], "logprobs" | "text") or (None, reason)."""
    if logprobs:
        score = _from_logprobs(logprobs)
        if score is not None:
            return score, "logprobs"
    m = _DIGIT.search(text or "")
    if m:
        return float(m.group(1)), "text"
    return None, "empty answer" if not (text or "").strip() else "no 1-5 score in answer"


def combine(plan_rows: Sequence[dict], completions: Sequence[Any]) -> list[dict]:
    """One row per request: `{id, lang, criterion, score, source | reason, text}`."""
    if len(plan_rows) != len(completions):
        raise ValueError(f"{len(plan_rows)} rubric requests but {len(completions)} completions")
    out = []
    for req, comp in zip(plan_rows, completions, strict=True):
        row = {
            "id": req["id"],
            "lang": req["lang"],
            "criterion": req["criterion"],
            "score": None,
            "text": _get(comp, "text") or "",
        }
        error = _get(comp, "error")
        if error:
            row["reason"] = f"backend error: {error}"
        else:
            score, how = parse_score(row["text"], _get(comp, "logprobs"))
            row.update({"score": score, "source": how} if score is not None else {"reason": how})
        out.append(row)
    return out


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def summarize(rows: Sequence[dict], criteria: Sequence[str]) -> dict[str, dict]:
    """`{lang: {<criterion>: mean, average, n_malformed}, "avg": ...}`.

    A language's `average` is the mean of its criterion means (Table 8's "Average"); "avg" macro
    averages the languages, as the paper's Figure 3 does.
    """
    langs = list(dict.fromkeys(r["lang"] for r in rows))
    table: dict[str, dict] = {}
    for lang in langs:
        entry: dict[str, Any] = {}
        for c in criteria:
            scores = [
                r["score"]
                for r in rows
                if r["lang"] == lang and r["criterion"] == c and r["score"] is not None
            ]
            entry[c] = _mean(scores)
        entry["average"] = _mean([entry[c] for c in criteria if not math.isnan(entry[c])])
        entry["n"] = sum(1 for r in rows if r["lang"] == lang and r["score"] is not None)
        entry["n_malformed"] = sum(1 for r in rows if r["lang"] == lang and r["score"] is None)
        table[lang] = entry
    avg: dict[str, Any] = {}
    for key in (*criteria, "average"):
        avg[key] = _mean([table[lang][key] for lang in langs if not math.isnan(table[lang][key])])
    avg["n"] = sum(table[lang]["n"] for lang in langs)
    avg["n_malformed"] = sum(table[lang]["n_malformed"] for lang in langs)
    table["avg"] = avg
    return table

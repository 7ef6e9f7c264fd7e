"""One judge's verdicts on every language: its calls (all languages in one window) and the rows
and counts it stores. The main judge's artifact and each extra judge's (trust.py) use it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from xlexp.config import Config
from xlexp.evaluate import judge, pairing
from xlexp.evaluate.config import eval_codes
from xlexp.llm import ChatModel
from xlexp.store import Artifact, write_jsonl


def chat_by_lang(
    model: ChatModel, convs: dict[str, list], sampling: Any = None, adapter: str | None = None
) -> dict[str, list]:
    """Every language's conversations in one call (one window over all of them, no wait per
    language); the completions handed back per language, in order."""
    answers = iter(
        model.chat([c for per_lang in convs.values() for c in per_lang], sampling, adapter=adapter)
    )
    return {code: [next(answers) for _ in per_lang] for code, per_lang in convs.items()}


def outputs(respond: Artifact, code: str) -> list[dict]:
    return json.loads(respond.file(f"{code}.json").read_text())


STATUSES = (judge.JUDGED, judge.IDENTICAL, judge.FAILED, judge.MALFORMED)


def judge_langs(
    cfg: Config, model: ChatModel, system: Artifact, reference: Artifact, work: Path
) -> dict:
    """One judge's verdicts on every language, `<lang>.jsonl` under `work` (all languages in
    one call); the prompt counts per status, per language and in total."""
    protocol = cfg.eval.judge_protocol
    sampling = model.sampling(**judge.sampling_kwargs(protocol))
    counts = {}
    plans = {}
    for code in eval_codes(cfg):
        sys_rows = outputs(system, code)
        # Both answers of a prompt in one request: the same prompts in the same order or no call.
        plans[code] = judge.plan(
            protocol, sys_rows, *pairing.for_judge(sys_rows, outputs(reference, code), code)
        )
    answers = chat_by_lang(
        model, {code: judge.conversations(entries) for code, entries in plans.items()}, sampling
    )
    for code, entries in plans.items():
        combined = judge.combine(protocol, entries, answers[code])
        write_jsonl(work / f"{code}.jsonl", combined)
        found = [r["status"] for r in combined]
        counts[code] = {s: found.count(s) for s in STATUSES}
    total = {s: sum(c[s] for c in counts.values()) for s in STATUSES}
    # Counts are prompts: `malformed` = prompts the judge gave no usable verdict for.
    return {"per_lang": counts, "rows": sum(total.values()), **total}

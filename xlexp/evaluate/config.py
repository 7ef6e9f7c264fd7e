"""Evaluation settings (paper sections 3, 5, 6) and their checks."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from xlexp.errors import ConfigError
from xlexp.evaluate.benchmarks import benchmark
from xlexp.evaluate.rubric import CRITERIA
from xlexp.ranges import knob

RTT_MODES = ("one_prompt", "two_step")


@dataclass
class EvalConfig:
    # A name in xlexp.evaluate.benchmarks.BENCHMARKS: demo (shipped prompts) | xl_alpacaeval
    # (built from an AlpacaEval file) | xl_alpacaeval_release (the authors' files) |
    # m_alpacaeval (prompts machine-translated by eval.translator)
    benchmark: str = "demo"
    path: str | None = None
    limit: int | None = knob(None, ge=1)
    langs: list[str] | None = None  # None: langs.codes
    exclude_ids: list[int] = field(default_factory=list)
    templates: list[str] = field(default_factory=lambda: ["Answer in {language}."])
    # How the judge compares: alpaca_eval (the paper's: alpaca_eval 0.6.6's
    # weighted_alpaca_eval_gpt4_turbo annotator, one order per prompt) | both_orders (xlexp's
    # A/B prompt in both orders, averaged: cancels position bias). See xlexp/evaluate/judge.py.
    judge_protocol: str = "alpaca_eval"
    bootstrap: int = knob(1000, ge=0)  # 0: no interval
    # Bootstrap replicates of the LC fit for its s.e. (each refits alpaca_eval's GLM with its
    # CV, ~50 ms at 800 prompts); 0: no LC s.e.
    lc_bootstrap: int = knob(50, ge=0)
    # Prompt sources. prompts: demo (shipped) | null (eval.path if set, else the hub file).
    prompts: str | None = None
    # dataset repo holding alpaca_eval.json (its script is broken)
    hub_repo: str = "tatsu-lab/alpaca_eval"
    hub_file: str = "alpaca_eval.json"
    hub_revision: str | None = None
    release_repo: str = "viyer98/XL-AlpacaEval"
    rewrites: str | None = "paper"
    # m_alpacaeval: the model card translating prompts (GPT-4o in the paper, section 6)
    translator: Any = None
    translate_max_tokens: int = knob(2048, ge=1)
    english: bool = True
    # Table 2 reason-then-translate baseline: one_prompt | two_step; null: answer directly
    rtt: str | None = None
    # per step; null: the model card's sampling.max_tokens
    rtt_max_tokens: int | None = knob(None, ge=1)
    rubric: bool = False  # Table 8 fine-grained 1-5 scores by the judge
    rubric_criteria: list[str] = field(default_factory=lambda: list(CRITERIA))


def eval_codes(cfg: Any) -> list[str]:
    """Languages evaluated: eval.langs (else langs.codes), as the benchmark takes them (plus
    `eng` for m-AlpacaEval's English column)."""
    return benchmark(cfg).codes(cfg)


def roles(cfg: Any) -> dict[str, Any]:
    """Model roles evaluation calls, keyed by config path."""
    roles = {"model": cfg.model, "reference": cfg.reference, "judge": cfg.judge}
    return {**roles, **benchmark(cfg).roles(cfg)}


def validate(cfg: Any, runs: bool) -> None:
    """Evaluation settings; with `runs`, prompt sources are resolved now (a hub download fails
    here, naming eval.path or eval.hub_repo, before any model loads)."""
    ev = cfg.eval
    from xlexp.evaluate.judge import judge_protocol

    judge_protocol(ev.judge_protocol)  # ConfigError naming eval.judge_protocol and the known ones
    bench = benchmark(cfg)  # ConfigError naming eval.benchmark and the known ones
    if ev.prompts not in (None, "demo"):
        raise ConfigError(
            "eval.prompts", f"must be demo or null (eval.path, else the hub), not {ev.prompts!r}"
        )
    if ev.rtt not in (None, *RTT_MODES):
        raise ConfigError(
            "eval.rtt",
            f"unknown reason-then-translate mode {ev.rtt!r} ({', '.join(RTT_MODES)} or null)",
        )
    for i, name in enumerate(ev.rubric_criteria):
        if name not in CRITERIA:
            raise ConfigError(
                f"eval.rubric_criteria[{i}]", f"unknown criterion {name!r} ({', '.join(CRITERIA)})"
            )
    if ev.rubric and not ev.rubric_criteria:
        raise ConfigError("eval.rubric_criteria", "eval.rubric is on but no criterion is listed")
    if ev.path and not os.path.exists(ev.path):
        raise ConfigError("eval.path", f"AlpacaEval prompts file not found: {ev.path!r}")
    if runs:
        from xlexp.evaluate.sources import check_eval_inputs

        check_eval_inputs(ev)  # UTF-8 JSON/JSONL prompts, each with an instruction; limit >= 1
    bench.check(ev, runs)  # its own sources (rewrites, the prompt file or the hub's)

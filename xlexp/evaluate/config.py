"""Evaluation settings (paper sections 3, 5, 6) and their checks."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

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
    # Extra judges beside `judge` (the paper has one): names of `judge` group cards
    # (conf/judge/<name>.yaml, e.g. [smollm2] or [gpt-4o, claude-x]) or cards written inline.
    # Same protocol and prompts, cached and priced like the main judge; their win rates, the
    # panel's and their agreement with the main judge are a table of their own (agreement.py).
    judges: list[Any] = field(default_factory=list)
    # Human preference labels for a sample (.csv or .jsonl: id, lang, preferred = system |
    # reference | tie): each judge's agreement with them per language.
    human_labels: str | None = None


def eval_codes(cfg: Any) -> list[str]:
    """Languages evaluated: eval.langs (else langs.codes), as the benchmark takes them (plus
    `eng` for m-AlpacaEval's English column)."""
    return benchmark(cfg).codes(cfg)


def roles(cfg: Any) -> dict[str, Any]:
    """Model roles evaluation calls, keyed by config path."""
    roles = {"model": cfg.model, "reference": cfg.reference, "judge": cfg.judge}
    extra = {f"eval.judges[{i}]": card for i, card in enumerate(extra_judges(cfg).values())}
    return {**roles, **extra, **benchmark(cfg).roles(cfg)}


CONF = Path(__file__).resolve().parents[2] / "conf"


@cache
def _group_card(name: str) -> Any:
    """The card `judge=<name>` composes to (conf/judge/<name>.yaml and the defaults it names),
    through the running app's search path where Hydra runs, else xlexp's conf/."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose(overrides=[f"+judge={name}"]).judge
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(overrides=[f"+judge={name}"]).judge


def _card(entry: Any, key: str) -> tuple[str, Any]:
    """(the judge's name, its card) for one entry of eval.judges."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from xlexp.llm.card import LLMConfig

    if isinstance(entry, str):
        try:
            found = _group_card(entry)
        except HydraException:
            known = ", ".join(sorted(p.stem for p in (CONF / "judge").glob("*.yaml")))
            raise ConfigError(key, f"unknown judge card {entry!r} (known: {known}; a card of "
                                   "your own: conf/judge/<name>.yaml)") from None
        name = entry
    elif OmegaConf.is_dict(entry) or isinstance(entry, dict):
        found, name = entry, str(entry.get("name") or "")
    else:
        raise ConfigError(key, f"a judge card's name or a card, not {entry!r}")
    try:
        card = OmegaConf.merge(OmegaConf.structured(LLMConfig), found)
    except OmegaConfBaseException as e:
        raise ConfigError(key, f"not a model card: {e.msg.splitlines()[0]}") from None
    missing = sorted(OmegaConf.missing_keys(card))
    if missing:
        raise ConfigError(f"{key}.{missing[0]}", "must be set (a judge card needs it)")
    OmegaConf.set_readonly(card, True)
    return name, card


def extra_judges(cfg: Any) -> dict[str, Any]:
    """The extra judges of eval.judges by name, in order (ConfigError naming the entry when one
    is unknown, not a card, or listed twice)."""
    out: dict[str, Any] = {}
    main = OmegaConf.select(cfg, "judge.name", default=None)
    for i, entry in enumerate(cfg.eval.get("judges") or []):
        name, card = _card(entry, f"eval.judges[{i}]")
        if name in out:
            raise ConfigError(f"eval.judges[{i}]", f"judge {name!r} is listed twice")
        if name == main:  # the table names each judge once
            raise ConfigError(f"eval.judges[{i}]", f"{name!r} is the main judge's name (judge."
                              "name): an extra judge needs a name of its own (its card file's, "
                              "or `name` in a card written inline)")
        out[name] = card
    return out


def wants_agreement(cfg: Any) -> bool:
    """The agreement table is made when there is something to agree on: extra judges, human
    labels, or a protocol that judges both slot orders (each judge's position consistency)."""
    from xlexp.evaluate.judge import judge_protocol

    ev = cfg.eval
    both = judge_protocol(ev.judge_protocol).judges_both_orders
    return bool(ev.get("judges") or ev.get("human_labels") or both)


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
    extra_judges(cfg)  # each names a card (or is one), none twice
    if ev.get("human_labels"):
        from xlexp.evaluate import human_labels

        labels = human_labels.read(ev.human_labels, eval_codes(cfg))  # file:line of a bad row
        if runs and not bench.stored:  # prompts built from the config: their ids are known now
            ids = {code: [r["id"] for r in rows] for code, rows in bench.rows(cfg).items()}
            human_labels.check_ids(ev.human_labels, labels, ids)

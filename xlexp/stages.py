"""The stages of a run, declared as data, and the one summary a run hands to report and W&B.

`run` walks `STAGES` in order and runs each one the config names (or one a later stage needs:
SFT on generated data needs the generate stage's dataset). A new stage is a package with a
shell function and one `Stage` entry here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from xlexp.config import runs_generate
from xlexp.store import Artifact

log = logging.getLogger("xlexp")


class RunSummary(TypedDict, total=False):
    """What a run produced: written as results.json, printed, logged to W&B."""

    note: str
    store: str
    run_dir: str
    stages: dict[str, dict]  # stage -> artifact keys and counts, seconds
    generation_stats: dict
    metrics: dict  # lang -> column -> value (the metrics artifact)
    columns: list  # (key, label) of the metric columns, in table order
    rubric: dict
    system: dict  # labels of the judged system, for `python -m xlexp.report <sweep dir>`
    warnings: list  # stages whose content-reject share passed reject_warn_share
    backend_calls: int
    cost: dict  # the ledger: tokens, calls and dollars per stage and role
    seconds: float
    results: dict[str, str]  # results.json / results.md paths


@dataclass
class RunContext:
    cfg: Any
    run_dir: Path
    store: Any  # a LedgerStore
    models: Any  # roles.Models
    tracker: Any
    summary: RunSummary
    arts: dict[str, Artifact] = field(default_factory=dict)
    started: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Stage:
    name: str
    wanted: Callable[[Any], bool]  # cfg -> does this run need the stage
    run: Callable[[RunContext], dict[str, Artifact]]  # the artifacts it produced, by name
    summarize: Callable[[RunContext, dict[str, Artifact]], dict] = lambda ctx, arts: {}


def _generate(ctx: RunContext) -> dict[str, Artifact]:
    from xlexp.generate.stage import run_generate

    return run_generate(ctx.cfg, ctx.store, ctx.models)


def _generate_summary(ctx: RunContext, arts: dict[str, Artifact]) -> dict:
    from xlexp.generate.stage import generation_stats

    ctx.summary["generation_stats"] = generation_stats(arts)
    ctx.tracker.log_generation_stats(ctx.summary["generation_stats"])
    return {name: {"key": a.key, **a.meta["counts"]} for name, a in arts.items()}


def _sft(ctx: RunContext) -> dict[str, Artifact]:
    from xlexp.sft.stage import run_sft, sft_dataset

    dataset = sft_dataset(ctx.cfg, ctx.store, ctx.arts)
    return {"sft": run_sft(ctx.cfg, ctx.store, dataset)}


def _sft_summary(ctx: RunContext, arts: dict[str, Artifact]) -> dict:
    return {"key": arts["sft"].key, **arts["sft"].meta["counts"]}


def _evaluate(ctx: RunContext) -> dict[str, Artifact]:
    from xlexp.evaluate.stage import run_evaluate

    return run_evaluate(ctx.cfg, ctx.store, ctx.models, ctx.arts.get("sft"))


def _evaluate_summary(ctx: RunContext, arts: dict[str, Artifact]) -> dict:
    from xlexp import track
    from xlexp.report import load_json

    ctx.summary["metrics"] = load_json(arts["metrics"], "metrics.json")
    ctx.summary["columns"] = load_json(arts["metrics"], "columns.json")
    if "rubric" in arts:  # Table 8 fine-grained scores
        ctx.summary["rubric"] = load_json(arts["rubric"], "metrics.json")
        ctx.tracker.log_metrics({lang: {f"rubric_{k}": v for k, v in row.items()} for lang, row in ctx.summary["rubric"].items()})
    ctx.tracker.log_metrics(ctx.summary["metrics"], ctx.cfg.eval.judge_protocol)
    labels = arts["judge"].meta.get("system") or {}
    exp = track.hydra_context().get("exp") or ctx.cfg.logger.group
    ctx.summary["system"] = {**labels, "exp": exp, "judge_key": arts["judge"].key}
    return {name: a.key for name, a in arts.items()}


def _totals(ctx: RunContext) -> None:
    ctx.summary["backend_calls"] = ctx.models.backend_calls()
    ctx.summary["cost"] = ctx.store.ledger.summary()
    ctx.summary["seconds"] = round(time.time() - ctx.started, 1)


def _report(ctx: RunContext) -> dict[str, Artifact]:
    from xlexp import report

    _totals(ctx)
    paths = report.write_results(ctx.run_dir, ctx.summary, ctx.cfg)
    ctx.summary["results"] = {k: str(v) for k, v in paths.items()}
    ctx.tracker.log_files(paths)
    return {}


STAGES: dict[str, Stage] = {
    "generate": Stage(
        "generate",
        runs_generate,
        _generate,
        _generate_summary,
    ),
    "sft": Stage("sft", lambda cfg: "sft" in cfg.stages, _sft, _sft_summary),
    "evaluate": Stage("evaluate", lambda cfg: "evaluate" in cfg.stages, _evaluate, _evaluate_summary),
    "report": Stage("report", lambda cfg: "report" in cfg.stages, _report),
}


def preflight(cfg: Any) -> None:
    """Check every OpenAI-compatible role the run may call (PreflightError naming each one that
    cannot work). A run whose every artifact that calls a model is already in the store (a rerun
    for tables, offline, or after the server is gone) needs no server: a failed check is then a
    warning. Which artifacts are present is the cost plan's read-only probe of the store."""
    from xlexp.config import preflight_roles
    from xlexp.llm.preflight import PreflightError, check_roles

    try:
        check_roles(preflight_roles(cfg))
    except PreflightError as e:
        from xlexp.plan import plan_job

        try:
            needs_calls = any(row.calls for row in plan_job(cfg, [], {}, probe=True).counts)
        except Exception:  # noqa: BLE001 (the probe cannot tell: the preflight's verdict stands)
            needs_calls = True
        if needs_calls:
            raise
        log.warning("%s\n  every artifact that calls a model is in the store: going on without them", e)


def run(cfg: Any, run_dir: Path) -> RunSummary:
    """Validate, run the configured stages in order, report; returns the run's summary."""
    from xlexp import progress, track
    from xlexp.config import validate
    from xlexp.ledger import LedgerStore
    from xlexp.roles import Models

    validate(cfg)  # fail before any model loads
    if cfg.preflight:  # each OpenAI-compatible role: server up, key accepted, model served
        preflight(cfg)
    store = LedgerStore(cfg.store_dir)  # a Store that measures each stage's tokens and dollars
    models = Models(store)
    store.ledger.models = models
    summary: RunSummary = {"note": cfg.note, "store": str(store.root), "run_dir": str(run_dir), "stages": {}, "warnings": []}
    ctx = RunContext(cfg, Path(run_dir), store, models, track.start(cfg, run_dir), summary)
    try:
        for stage in STAGES.values():
            if not stage.wanted(cfg):
                continue
            t = time.time()
            measured = len(store.ledger.entries)
            arts = stage.run(ctx)
            if not arts:
                continue
            ctx.arts.update(arts)
            summary["stages"][stage.name] = {**stage.summarize(ctx, arts), "seconds": round(time.time() - t, 1)}
            ctx.tracker.log_stage(stage.name, arts)
            counts = {name: a.meta.get("counts", {}) for name, a in arts.items()}
            warnings = progress.reject_warnings(counts, cfg.reject_warn_share)
            summary["warnings"] += [f"{stage.name}: {w}" for w in warnings]
            line = progress.stage_line(stage.name, arts, time.time() - t, store.ledger.total_since(measured), cfg.reject_warn_share)
            (log.warning if warnings else log.info)(line)
        if "results" not in summary:
            _totals(ctx)
        ctx.tracker.finish(summary)
    finally:
        models.close()
    return summary

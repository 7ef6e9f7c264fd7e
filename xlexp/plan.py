"""Know the cost before spending it: `python -m xlexp.plan <the same arguments as python -m xlexp>`.

    python -m xlexp.plan +exp=grid_instruct -m
    python -m xlexp.plan +exp=scaling -m data_size=32,256,2k,8k --train-tokens-per-s 2500

For every job of the command (a multirun expands as Hydra's basic sweeper would) and in total:
the model calls and tokens each role would make, GPU-hours (SFT tokens over a training
throughput; local-model tokens over a generation throughput) and dollars from the cards' prices,
with and without the Batch API. Work a sweep shares (the generated dataset, the reference answers,
the benchmark) is counted once, by the config slice that determines it. Nothing is loaded and no
model is called: counts come from the config and the local inputs (seed files, prompt files);
where a count depends on model output not made yet (refine after reverse rejects, sentences per
response), the ratio measured in the store's finished artifacts is used, else a default, and the
row says `estimate`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xlexp.argv import multirun_flag_first
from xlexp.config import Config
from xlexp.errors import ConfigError
from xlexp.parallel import is_remote
from xlexp.run import probe, wanted_stages
from xlexp.stage import Measured, RoleCount, Stage

CONF = Path(__file__).resolve().parents[1] / "conf"
# Without a measurement in the store: tokens per call (prompt, completion) for a role whose card
# caps completions at max_tokens.
DEFAULT_PROMPT_TOKENS = 400
DEFAULT_COMPLETION_SHARE = 0.5  # of sampling.max_tokens

__all__ = [
    "JobPlan",
    "Measured",
    "RoleCount",
    "expand_jobs",
    "plan",
    "plan_job",
    "render",
    "totals",
]


@dataclass
class JobPlan:
    overrides: list[str]
    stages: list[str]
    counts: list[RoleCount] = field(default_factory=list)
    sft_tokens: float = 0.0  # training tokens of the job's training artifacts
    sft_exact: bool = True
    sft_tokens_per_s: float | None = None  # the student card's train_tokens_per_s
    shards: int = 1  # generate.shards: the generation spread over that many jobs (nodes)
    notes: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)  # artifacts the store already holds
    to_build: dict[str, str] = field(
        default_factory=dict
    )  # artifact -> why (missing key, after another)


# ---------------------------------------------------------------- jobs of a command line


def compose_job(overrides: list[str], hydra: bool = False) -> Any:
    from hydra import compose, initialize_config_dir

    from xlexp.config import register

    register()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


def expand_jobs(args: list[str]) -> list[list[str]]:
    """The overrides of each job `python -m xlexp ARGS` runs: one job without -m; with -m, the
    experiment's `hydra.sweeper.params` then the command line's values, combined as Hydra's basic
    sweeper does (the command line last, so it wins on a shared key)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser

    cli = get_args_parser().parse_args(multirun_flag_first(list(args)))
    if not cli.multirun:
        return [list(cli.overrides)]
    parser = OverridesParser.create()
    fixed = [
        o.input_line
        for o in parser.parse_overrides(list(cli.overrides))
        if not o.is_sweep_override()
    ]
    params = compose_job(fixed, hydra=True).hydra.sweeper.params or {}
    parsed = parser.parse_overrides([f"{k}={v}" for k, v in params.items()] + list(cli.overrides))
    return [
        job for batch in BasicSweeper.split_arguments(parsed, max_batch_size=None) for job in batch
    ]


# ---------------------------------------------------------------- counts per job


def _kind(stages: list[Stage], artifact: str) -> str:
    for stage in stages:
        for spec in stage.artifacts:
            if spec.name == artifact:
                return spec.store_kind
    return artifact


def _tokens(row: RoleCount, kind: str, measured: Measured) -> RoleCount:
    prompt = measured.per_call(kind, row.role, "prompt_tokens")
    completion = measured.per_call(kind, row.role, "completion_tokens")
    max_tokens = float(getattr(getattr(row.card, "sampling", None), "max_tokens", 256) or 256)
    if prompt is None:
        prompt = row.prompt_tokens_per_call or DEFAULT_PROMPT_TOKENS
    if completion is None:
        completion = row.completion_tokens_per_call or max_tokens * DEFAULT_COMPLETION_SHARE
    row.prompt_tokens = row.calls * prompt
    row.completion_tokens = row.calls * completion
    return row


def plan_job(
    cfg: Config, overrides: list[str], measured: Measured, probe_store: bool = True
) -> JobPlan:
    """What one job would call and train: each stage it runs says what its config implies
    (`Stage.expected`); with `probe_store`, the artifacts already in the store cost nothing."""
    job = JobPlan(overrides=list(overrides), stages=list(cfg.stages))
    stages = wanted_stages(cfg)
    if any(stage.name == "generate" for stage in stages):
        job.shards = int(cfg.generate.shards)
    trained: set[str] = set()
    for stage in stages:
        expected = stage.expected(cfg, measured)
        for row in expected.calls:
            job.counts.append(
                _tokens(row, row.measured_kind or _kind(stages, row.artifact), measured)
            )
        for work in expected.training:
            trained.add(work.artifact)
            job.sft_tokens += work.tokens
            job.sft_exact = job.sft_exact and work.exact
            job.sft_tokens_per_s = job.sft_tokens_per_s or work.tokens_per_s
        job.notes += expected.notes
    if probe_store:
        try:
            present, built = probe(cfg)
        except ConfigError as e:  # what the run itself would stop on, before any model loads
            present, built = [], {}
            job.notes.append(f"the run would stop: {e}")
        job.present, job.to_build = present, built
        for row in job.counts:
            if row.artifact in present:
                row.calls = row.prompt_tokens = row.completion_tokens = 0.0
                row.exact = row.present = True
        if trained and trained <= set(present):
            job.sft_tokens, job.sft_exact = 0.0, True
    return job


# ---------------------------------------------------------------- totals and the printout


def totals(
    jobs: list[JobPlan], generate_tps: float
) -> tuple[dict[tuple[str, str], RoleCount], float]:
    """Per (artifact, role) over the jobs, shared work (the same signature) counted once; and the
    GPU-seconds of local models (hf, vllm) among them: their tokens at the card's
    `tokens_per_s`, else at `generate_tps`."""
    seen: set[tuple[str, str, str | None]] = set()
    out: dict[tuple[str, str], RoleCount] = {}
    local = 0.0
    for job in jobs:
        for row in job.counts:
            mark = (row.artifact, row.role, row.shared)
            if row.shared is not None and mark in seen:
                continue
            seen.add(mark)
            if not is_remote(row.card):  # a local engine: its tokens take GPU time
                local += (row.prompt_tokens + row.completion_tokens) / (
                    getattr(row.card, "tokens_per_s", None) or generate_tps
                )
            into = out.setdefault(
                (row.artifact, row.role),
                RoleCount(row.artifact, row.role, row.card, 0, summed_usd=(0.0, 0.0)),
            )
            into.summed_usd = (into.usd(False) + row.usd(False), into.usd(True) + row.usd(True))
            if getattr(into.card, "name", None) != getattr(row.card, "name", None):
                into.card = _Several()
            into.calls += row.calls
            into.exact = into.exact and row.exact
            into.prompt_tokens += row.prompt_tokens
            into.completion_tokens += row.completion_tokens
    return out, local


class _Several:
    """Several cards in one total row (its dollars are the sum of its rows')."""

    name = "several"


def sft_hours(job: JobPlan, train_tps: float) -> float:
    """The job's SFT tokens at its student card's `train_tokens_per_s`, else at `train_tps`."""
    return job.sft_tokens / (job.sft_tokens_per_s or train_tps) / 3600


def render(
    jobs: list[JobPlan], train_tps: float, generate_tps: float, gpu_usd_per_hour: float
) -> str:
    lines = []
    for i, job in enumerate(jobs):
        lines.append(
            f"## job {i}: {' '.join(job.overrides) or '(defaults)'}  stages={','.join(job.stages)}"
        )
        lines.append(f"in the store: {', '.join(job.present) or 'nothing'}")
        lines.append(
            "to build: " + (", ".join(f"{k} ({v})" for k, v in job.to_build.items()) or "nothing")
        )
        lines.append(
            "| artifact | role | model | calls | tokens in | tokens out | USD | USD (Batch API) |"
        )
        lines.append("|---|---|---|---:|---:|---:|---:|---:|")
        for r in job.counts:
            lines.append(_row(r))
        if job.sft_tokens:
            est = "" if job.sft_exact else " (estimate: no finished SFT in the store)"
            lines.append(
                f"SFT: {job.sft_tokens:,.0f} training tokens, "
                f"{sft_hours(job, train_tps):.2f} GPU-hours{est}"
            )
        lines.extend(f"note: {n}" for n in job.notes)
        lines.extend(shard_lines(job, generate_tps))
        lines.append("")
    total, local_seconds = totals(jobs, generate_tps)
    lines.append("## total (work shared by jobs counted once)")
    lines.append(
        "| artifact | role | model | calls | tokens in | tokens out | USD | USD (Batch API) |"
    )
    lines.append("|---|---|---|---:|---:|---:|---:|---:|")
    for r in total.values():
        lines.append(_row(r))
    hours = sum(sft_hours(j, train_tps) for j in jobs) + local_seconds / 3600
    api = sum(r.usd(False) for r in total.values())
    api_batch = sum(r.usd(True) for r in total.values())
    lines.append(
        f"GPU-hours: {hours:.2f} (SFT at {train_tps:,.0f} tokens/s, "
        f"local models at {generate_tps:,.0f} tokens/s, unless a card names its own)"
    )
    lines.append(
        f"dollars: API {api:.2f} "
        f"(Batch API {api_batch:.2f}) + GPU {hours * gpu_usd_per_hour:.2f} at {gpu_usd_per_hour}/h"
    )
    return "\n".join(lines) + "\n"


def shard_lines(job: JobPlan, generate_tps: float) -> list[str]:
    """What one generation shard costs (the seed set splits evenly by the id hash, so about
    1/N of every generation count) and the wall time on N nodes at the cards' throughputs:
    each node runs one shard's stages one after another, as one node runs all of them."""
    if job.shards <= 1:
        return []
    from xlexp.stage import STAGES

    names = {spec.name for spec in STAGES.get("generate", "stages").artifacts}
    rows = [r for r in job.counts if r.artifact in names]
    n = job.shards
    calls = sum(r.calls for r in rows) / n
    tokens = sum(r.prompt_tokens + r.completion_tokens for r in rows) / n
    hours = sum(
        (r.prompt_tokens + r.completion_tokens) / (getattr(r.card, "tokens_per_s", None)
                                                   or generate_tps)
        for r in rows
        if not is_remote(r.card)
    ) / n / 3600
    return [
        f"shards: generate.shards={n}: per shard about {calls:,.0f} calls, {tokens:,.0f} tokens, "
        f"{hours:.2f} GPU-hours of local models; wall time about {hours:.2f} h on {n} nodes "
        f"(one shard each, then the merge) instead of {hours * n:.2f} h on one; remote roles "
        "answer as fast as their servers"
    ]


def _row(r: RoleCount) -> str:
    calls = (
        "0 (in the store)" if r.present else f"{r.calls:,.0f}" + ("" if r.exact else " (estimate)")
    )
    name = getattr(r.card, "name", "?")
    return (
        f"| {r.artifact} | {r.role} | {name} | {calls} | {r.prompt_tokens:,.0f} "
        f"| {r.completion_tokens:,.0f} | {r.usd(False):.2f} | {r.usd(True):.2f} |"
    )


def plan(args: list[str]) -> list[JobPlan]:
    jobs = expand_jobs(args)
    cfgs = [compose_job(job) for job in jobs]
    measured = Measured(Path(str(cfgs[0].store_dir))) if cfgs else Measured(Path("."))
    return [plan_job(cfg, job, measured) for cfg, job in zip(cfgs, jobs, strict=True)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m xlexp.plan",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--train-tokens-per-s",
        type=float,
        default=3000.0,
        help="LoRA SFT throughput of one GPU (benchmarks/sft_throughput.py)",
    )
    parser.add_argument(
        "--generate-tokens-per-s",
        type=float,
        default=2500.0,
        help="local model (hf/vllm) tokens per second per GPU",
    )
    parser.add_argument("--gpu-usd-per-hour", type=float, default=2.0, help="price of one GPU-hour")
    parser.add_argument("--json", action="store_true", help="print the per-job counts as JSON")
    known, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    jobs = plan(rest)
    if known.json:
        print(
            json.dumps(
                [
                    {
                        "overrides": j.overrides,
                        "counts": [
                            {
                                "artifact": r.artifact,
                                "role": r.role,
                                "calls": r.calls,
                                "exact": r.exact,
                            }
                            for r in j.counts
                        ],
                        "sft_tokens": j.sft_tokens,
                    }
                    for j in jobs
                ],
                indent=2,
            )
        )
    else:
        print(f"# plan: python -m xlexp {shlex.join(rest)}\n")
        print(
            render(
                jobs, known.train_tokens_per_s, known.generate_tokens_per_s, known.gpu_usd_per_hour
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

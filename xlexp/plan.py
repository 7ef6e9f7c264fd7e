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
import math
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xlexp.argv import multirun_flag_first
from xlexp.probe import measured, present_stages

CONF = Path(__file__).resolve().parents[1] / "conf"
# Without a measurement in the store: sentences a refined response is split into, and tokens per
# call (prompt, completion) for a role whose card caps completions at max_tokens.
DEFAULT_SENTENCES_PER_RESPONSE = 10.0
DEFAULT_PROMPT_TOKENS = 400
DEFAULT_COMPLETION_SHARE = 0.5  # of sampling.max_tokens


@dataclass
class RoleCount:
    """Calls and tokens of one role in one stage; `exact` when no ratio had to be assumed."""

    stage: str
    role: str
    card: Any
    calls: float
    exact: bool = True
    prompt_tokens: float = 0.0
    completion_tokens: float = 0.0
    shared: str | None = None  # a signature: the same work in another job is counted once
    present: bool = False  # the stage's artifact is in the store: no call
    summed_usd: tuple[float, float] | None = None  # a total over rows of several cards

    def usd(self, batch: bool) -> float:
        if self.summed_usd is not None:
            return self.summed_usd[1 if batch else 0]
        price_in = float(getattr(self.card, "price_in_per_mtok", 0.0) or 0.0)
        price_out = float(getattr(self.card, "price_out_per_mtok", 0.0) or 0.0)
        factor = float(getattr(self.card, "batch_price_factor", 0.5)) if batch else 1.0
        return (self.prompt_tokens * price_in + self.completion_tokens * price_out) / 1e6 * factor


@dataclass
class JobPlan:
    overrides: list[str]
    stages: list[str]
    counts: list[RoleCount] = field(default_factory=list)
    sft_tokens: float = 0.0
    sft_exact: bool = True
    sft_tokens_per_s: float | None = None  # the student card's train_tokens_per_s
    notes: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)  # stage artifacts the store already holds
    to_build: dict[str, str] = field(default_factory=dict)  # stage -> why (missing key, after a stage)


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
    fixed = [o.input_line for o in parser.parse_overrides(list(cli.overrides)) if not o.is_sweep_override()]
    params = compose_job(fixed, hydra=True).hydra.sweeper.params or {}
    parsed = parser.parse_overrides([f"{k}={v}" for k, v in params.items()] + list(cli.overrides))
    return [job for batch in BasicSweeper.split_arguments(parsed, max_batch_size=None) for job in batch]


# ---------------------------------------------------------------- counts per job


def _tokens(row: RoleCount, ratios: dict[str, float]) -> RoleCount:
    base = row.role.split(":")[0]
    prompt = ratios.get(f"{row.stage}/{row.role}/prompt_tokens", ratios.get(f"{row.stage}/{base}/prompt_tokens"))
    completion = ratios.get(f"{row.stage}/{row.role}/completion_tokens", ratios.get(f"{row.stage}/{base}/completion_tokens"))
    max_tokens = float(getattr(getattr(row.card, "sampling", None), "max_tokens", 256) or 256)
    row.prompt_tokens = row.calls * (prompt if prompt is not None else DEFAULT_PROMPT_TOKENS)
    row.completion_tokens = row.calls * (completion if completion is not None else max_tokens * DEFAULT_COMPLETION_SHARE)
    return row


def _signature(*parts: Any) -> str:
    from omegaconf import OmegaConf

    plain = [OmegaConf.to_container(p, resolve=True) if OmegaConf.is_config(p) else p for p in parts]
    return json.dumps(plain, sort_keys=True, default=str)


def seed_count(cfg: Any) -> tuple[int, bool]:
    """Seed passages: exact for local sources (the seed core reads the file; no model), else n."""
    from xlexp.generate import seed

    if str(cfg.seed_data.source) == "hf":
        return int(cfg.seed_data.n), False
    rows, _ = seed.take(seed.stream(cfg.seed_data, cfg.seed), cfg.seed_data)
    return len(rows), True


def eval_prompt_rows(cfg: Any) -> tuple[int, bool]:
    """Prompts times languages of the evaluation: exact when the prompts are local."""
    from xlexp.evaluate import build_xl
    from xlexp.evaluate.config import eval_codes

    codes = eval_codes(cfg)
    if cfg.eval.benchmark == "xl_alpacaeval_release":
        per = cfg.eval.limit if cfg.eval.limit is not None else 805
        return int(per) * len(codes), False
    try:
        from xlexp.evaluate import sources

        prompts = build_xl.select_prompts(sources.english_prompts(cfg.eval), cfg.eval.exclude_ids, cfg.eval.limit)
    except Exception:  # the hub file (offline, or not fetched yet): AlpacaEval has 805 prompts
        per = cfg.eval.limit if cfg.eval.limit is not None else 805
        return int(per) * len(codes), False
    return len(prompts) * len(codes), True


def plan_job(cfg: Any, overrides: list[str], ratios: dict[str, float], probe: bool = True) -> JobPlan:
    from xlexp.generate.config import translator_cards
    from xlexp.sft.config import parse_data_size

    job = JobPlan(overrides=list(overrides), stages=list(cfg.stages))
    generated = "generate" in cfg.stages or ("sft" in cfg.stages and cfg.sft.source == "generated")
    if generated:
        gen_sig = _signature(cfg.seed_data, cfg.seed, cfg.teacher, cfg.langs, cfg.generate, cfg.splitter, cfg.qe, cfg.k, cfg.translators)
        seeds, exact = seed_count(cfg)
        if cfg.generate.get("target_rows"):
            job.notes.append("generate.target_rows: more seeds may be drawn until the target is kept")
            exact = False
        job.counts.append(RoleCount("reverse", "teacher", cfg.teacher, seeds, exact, shared=gen_sig))
        pairs_yield = ratios.get("reverse_yield")
        pairs = seeds * (pairs_yield if pairs_yield is not None else 1.0)
        job.counts.append(RoleCount("refine", "teacher", cfg.teacher, pairs, exact and pairs_yield == 1.0, shared=gen_sig))
        refine_yield = ratios.get("refine_yield", 1.0)
        items = pairs * refine_yield * (len(cfg.langs.codes) if cfg.langs.assign == "all" else 1)
        spr = ratios.get("sentences_per_item", DEFAULT_SENTENCES_PER_RESPONSE)
        jobs = math.ceil(items * spr)
        for name, card in translator_cards(cfg):
            job.counts.append(RoleCount("translate", f"translator:{name}", card, jobs, False, shared=gen_sig))
        if cfg.qe.kind == "llm":
            job.counts.append(RoleCount("qe", "qe", cfg.qe.llm, jobs * len(translator_cards(cfg)), False, shared=gen_sig))
        elif cfg.qe.kind == "comet":
            job.notes.append(f"QE by {cfg.qe.model}: {jobs * len(translator_cards(cfg))} segments on the GPU, no model calls")
    if "sft" in cfg.stages:
        n = parse_data_size(cfg.data_size)
        per_row = ratios.get("sft_tokens_per_row")
        job.sft_exact = per_row is not None
        job.sft_tokens = n * float(cfg.sft.epochs) * (per_row if per_row is not None else int(cfg.sft.max_seq_len) / 2)
        job.sft_tokens_per_s = getattr(cfg.model, "train_tokens_per_s", None)
    if "evaluate" in cfg.stages:
        rows, exact = eval_prompt_rows(cfg)
        bench_sig = _signature(cfg.eval, cfg.langs.codes, cfg.seed)
        system_sig = _signature(cfg.model, cfg.data_size if "sft" in cfg.stages else None, cfg.sft, cfg.generate, bench_sig)
        respond_calls = rows * (2 if cfg.eval.rtt == "two_step" else 1)
        job.counts.append(RoleCount("respond", "model", cfg.model, respond_calls, exact and cfg.eval.rtt != "two_step", shared=system_sig))
        job.counts.append(RoleCount("respond", "reference", cfg.reference, rows, exact, shared=_signature(cfg.reference, bench_sig)))
        judged = rows * (2 if cfg.eval.judge_protocol == "both_orders" else 1)
        job.counts.append(RoleCount("judge", "judge", cfg.judge, judged, exact, shared=_signature(cfg.judge, system_sig)))
        if cfg.eval.benchmark == "m_alpacaeval":
            translated = rows - (rows // len(_codes(cfg)) if "eng" in _codes(cfg) else 0)
            job.counts.append(RoleCount("mtranslate", "eval.translator", cfg.eval.translator, translated, exact, shared=_signature(cfg.eval.translator, bench_sig)))
        if cfg.eval.rubric:
            criteria = len(cfg.eval.rubric_criteria)
            job.counts.append(RoleCount("rubric", "judge", cfg.judge, rows * criteria, False, shared=_signature("rubric", cfg.judge, system_sig)))
    for row in job.counts:
        _tokens(row, ratios)
    if probe:
        from xlexp.errors import ConfigError

        try:
            present, built = present_stages(cfg)
        except ConfigError as e:  # what the run itself would stop on, before any model loads
            present, built = set(), {}
            job.notes.append(f"the run would stop: {e}")
        job.present, job.to_build = sorted(present), built
        for row in job.counts:
            if _probe_name(row) in present:
                row.calls = row.prompt_tokens = row.completion_tokens = 0.0
                row.exact = True
                row.present = True
        if "sft" in present:
            job.sft_tokens, job.sft_exact = 0.0, True
    return job


def _probe_name(row: RoleCount) -> str:
    if row.stage == "respond":
        return f"respond:{row.role}"
    return row.stage


def _codes(cfg: Any) -> list[str]:
    from xlexp.evaluate.config import eval_codes

    return eval_codes(cfg)


# ---------------------------------------------------------------- totals and the printout


def totals(jobs: list[JobPlan], generate_tps: float) -> tuple[dict[tuple[str, str], RoleCount], float]:
    """Per (stage, role) over the jobs, shared work (the same signature) counted once; and the
    GPU-seconds of local models (hf, vllm) among them: their tokens at the card's
    `tokens_per_s`, else at `generate_tps`."""
    seen: set[tuple[str, str, str | None]] = set()
    out: dict[tuple[str, str], RoleCount] = {}
    local = 0.0
    for job in jobs:
        for row in job.counts:
            mark = (row.stage, row.role, row.shared)
            if row.shared is not None and mark in seen:
                continue
            seen.add(mark)
            if getattr(row.card, "backend", "") in ("hf", "vllm"):
                local += (row.prompt_tokens + row.completion_tokens) / (getattr(row.card, "tokens_per_s", None) or generate_tps)
            into = out.setdefault((row.stage, row.role), RoleCount(row.stage, row.role, row.card, 0, summed_usd=(0.0, 0.0)))
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


def render(jobs: list[JobPlan], train_tps: float, generate_tps: float, gpu_usd_per_hour: float) -> str:
    lines = []
    for i, job in enumerate(jobs):
        lines.append(f"## job {i}: {' '.join(job.overrides) or '(defaults)'}  stages={','.join(job.stages)}")
        lines.append(f"in the store: {', '.join(job.present) or 'nothing'}")
        lines.append("to build: " + (", ".join(f"{k} ({v})" for k, v in job.to_build.items()) or "nothing"))
        lines.append("| stage | role | model | calls | tokens in | tokens out | USD | USD (Batch API) |")
        lines.append("|---|---|---|---:|---:|---:|---:|---:|")
        for r in job.counts:
            lines.append(_row(r))
        if job.sft_tokens:
            est = "" if job.sft_exact else " (estimate: no finished SFT in the store)"
            lines.append(f"SFT: {job.sft_tokens:,.0f} training tokens, {sft_hours(job, train_tps):.2f} GPU-hours{est}")
        lines.extend(f"note: {n}" for n in job.notes)
        lines.append("")
    total, local_seconds = totals(jobs, generate_tps)
    lines.append("## total (work shared by jobs counted once)")
    lines.append("| stage | role | model | calls | tokens in | tokens out | USD | USD (Batch API) |")
    lines.append("|---|---|---|---:|---:|---:|---:|---:|")
    for r in total.values():
        lines.append(_row(r))
    hours = sum(sft_hours(j, train_tps) for j in jobs) + local_seconds / 3600
    api = sum(r.usd(False) for r in total.values())
    api_batch = sum(r.usd(True) for r in total.values())
    lines.append(
        f"GPU-hours: {hours:.2f} (SFT at {train_tps:,.0f} tokens/s, local models at {generate_tps:,.0f} tokens/s, "
        "unless a card names its own)"
    )
    lines.append(
        f"dollars: API {api:.2f} (Batch API {api_batch:.2f}) + GPU {hours * gpu_usd_per_hour:.2f} at {gpu_usd_per_hour}/h"
    )
    return "\n".join(lines) + "\n"


def _row(r: RoleCount) -> str:
    calls = "0 (in the store)" if r.present else f"{r.calls:,.0f}" + ("" if r.exact else " (estimate)")
    name = getattr(r.card, "name", "?")
    return (
        f"| {r.stage} | {r.role} | {name} | {calls} | {r.prompt_tokens:,.0f} | {r.completion_tokens:,.0f} "
        f"| {r.usd(False):.2f} | {r.usd(True):.2f} |"
    )


def plan(args: list[str]) -> list[JobPlan]:
    jobs = expand_jobs(args)
    cfgs = [compose_job(job) for job in jobs]
    ratios = measured(Path(str(cfgs[0].store_dir))) if cfgs else {}
    return [plan_job(cfg, job, ratios) for cfg, job in zip(cfgs, jobs, strict=True)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xlexp.plan", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-tokens-per-s", type=float, default=3000.0, help="LoRA SFT throughput of one GPU (benchmarks/sft_throughput.py)")
    parser.add_argument("--generate-tokens-per-s", type=float, default=2500.0, help="local model (hf/vllm) tokens per second per GPU")
    parser.add_argument("--gpu-usd-per-hour", type=float, default=2.0, help="price of one GPU-hour")
    parser.add_argument("--json", action="store_true", help="print the per-job counts as JSON")
    known, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    jobs = plan(rest)
    if known.json:
        print(json.dumps([{"overrides": j.overrides, "counts": [{"stage": r.stage, "role": r.role, "calls": r.calls, "exact": r.exact} for r in j.counts], "sft_tokens": j.sft_tokens} for j in jobs], indent=2))
    else:
        print(f"# plan: python -m xlexp {shlex.join(rest)}\n")
        print(render(jobs, known.train_tokens_per_s, known.generate_tokens_per_s, known.gpu_usd_per_hour))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

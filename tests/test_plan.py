"""`python -m xlexp.plan`: per job, what the store holds and what would be built, calls per role;
checked against what the tiny run then really makes (the cost ledger of its results.json)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fakeserver import FakeOpenAI
from test_chain import Teacher, compose_cfg, overrides

from xlexp import plan
from xlexp.__main__ import run

ROOT = Path(__file__).resolve().parents[1]


def requests_made(summary: dict) -> dict[tuple[str, str], int]:
    """(artifact, role) -> requests the run issued (backend calls + cache hits), from its ledger
    (which names the reference's `respond` build by its role, as the evaluate stage names it)."""
    out = {}
    for stage, row in summary["cost"]["stages"].items():
        for role, r in row["roles"].items():
            out[(stage, role)] = r["calls"] + r["cache_hits"]
    return out


def planned(job: plan.JobPlan) -> dict[tuple[str, str], float]:
    return {(r.artifact, r.role): r.calls for r in job.counts}


def test_plan_counts_equal_the_tiny_runs_calls(tmp_path: Path, tiny_model_dir: Path) -> None:
    teacher = Teacher()
    with FakeOpenAI(teacher) as srv:
        args = overrides(srv.base_url, tiny_model_dir, tmp_path / "store")
        (cold,) = plan.plan(args)
        assert cold.present == [] and {"seed", "adapter", "reference", "judge"} <= set(
            cold.to_build
        )
        assert not (tmp_path / "store").exists()  # planning wrote nothing, not even the store dir
        first = run(compose_cfg(args), tmp_path / "run1")
        made = requests_made(first)
        # Counts the config and local inputs decide are exact and equal what the run made.
        exact = {
            k: v
            for k, v in planned(cold).items()
            if next(r for r in cold.counts if (r.artifact, r.role) == k).exact
        }
        assert {
            ("reverse", "teacher"),
            ("respond", "model"),
            ("reference", "reference"),
            ("judge", "judge"),
        } <= set(exact)
        for k, v in exact.items():
            assert made[k] == v, (k, made[k], v)
        # The rest were estimates; with the first run measured, the same plan is exact.
        (measured,) = [
            plan.plan_job(
                compose_cfg(args), args, plan.Measured(tmp_path / "store"), probe_store=False
            )
        ]
        for k, v in planned(measured).items():
            assert made[k] == round(v), (k, made[k], v)

        # Warm store: everything of this job is there, nothing is called.
        (warm,) = plan.plan(args)
        assert set(warm.to_build) == set() and {"select", "adapter", "judge"} <= set(warm.present)
        assert all(r.calls == 0 for r in warm.counts) and warm.sft_tokens == 0

        # A new data size reuses the generation and the reference answers; the plan says which.
        bigger = [a for a in args if not a.startswith("data_size=")] + ["data_size=2"]
        (job,) = plan.plan(bigger)
        assert {"seed", "reverse", "refine", "translate", "qe", "select", "reference"} <= set(
            job.present
        )
        # (agreement: the judge's position consistency, as both_orders judges both orders)
        assert set(job.to_build) == {"adapter", "respond", "judge", "metrics", "agreement"}
        second = run(compose_cfg(bigger), tmp_path / "run2")
        made = requests_made(second)
        for (stage, role), calls in planned(job).items():
            assert made.get((stage, role), 0) == calls, (stage, role)
        assert (
            made.get(("reverse", "teacher"), 0) == 0
            and made.get(("reference", "reference"), 0) == 0
        )


def test_cli_prints_per_job_and_total(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "xlexp.plan", "+exp=grid_instruct", "profile=tiny", "-m",
           "model=smollm2", "data_size=2,4", f"store_dir={tmp_path / 'store'}",
           "--gpu-usd-per-hour", "3"]  # fmt: skip
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert text.count("## job ") == 2 and "## total" in text
    assert (
        "| reverse | teacher |" in text
        and "| judge | judge |" in text
        and "GPU-hours:" in text
        and "at 3.0/h" in text
    )
    # The generation is shared by both jobs: its calls appear once in the total.
    total = text.split("## total")[1]
    per_job = [
        line
        for line in text.split("## total")[0].splitlines()
        if line.startswith("| reverse | teacher |")
    ]
    assert len(per_job) == 2 and per_job[0].split("|")[4] == next(
        line for line in total.splitlines() if line.startswith("| reverse | teacher |")
    ).split("|")[4]


def test_gpu_hours_use_the_cards_throughput_where_it_names_one() -> None:
    from omegaconf import OmegaConf

    from xlexp.llm.card import LLMConfig

    def card(**kw):
        return OmegaConf.merge(
            OmegaConf.structured(LLMConfig), {"name": "m", "backend": "hf", "model": "m", **kw}
        )

    rows = [
        plan.RoleCount("reverse", "teacher", card(), 10, prompt_tokens=3e6, completion_tokens=6e5),
        plan.RoleCount(
            "respond",
            "model",
            card(tokens_per_s=100.0),
            10,
            prompt_tokens=3e5,
            completion_tokens=6e4,
        ),
        plan.RoleCount("judge", "judge", card(backend="openai"), 10, prompt_tokens=9e6),
    ]  # an API: no GPU
    job = plan.JobPlan(overrides=[], stages=["generate", "evaluate"], counts=rows, sft_tokens=7.2e6)
    _, seconds = plan.totals([job], generate_tps=1200.0)
    assert (
        seconds == 3.6e6 / 1200 + 3.6e5 / 100
    )  # the teacher at the flag's rate, the model at its card's
    assert plan.sft_hours(job, train_tps=3600.0) == 7.2e6 / 3600 / 3600
    job.sft_tokens_per_s = 7200.0  # the student card's train_tokens_per_s
    assert plan.sft_hours(job, train_tps=3600.0) == 7.2e6 / 7200 / 3600
    assert "GPU-hours: 2.11 " in plan.render([job], 3600.0, 1200.0, 2.0)  # (1000 + 3000 + 3600) s


def test_judge_tokens_come_from_the_protocols_template_and_the_answers(tmp_path: Path) -> None:
    from xlexp.evaluate.judge import judge_protocol
    from xlexp.stage import Measured

    cfg = plan.compose_job(["profile=paper", f"store_dir={tmp_path}", "stages=[evaluate]"])
    job = plan.plan_job(cfg, [], Measured(tmp_path), probe_store=False)
    (row,) = [r for r in job.counts if r.artifact == "judge"]
    template = len(judge_protocol("alpaca_eval").prompt_text()) / 4
    answers = 0.5 * (cfg.model.sampling.max_tokens + cfg.reference.sampling.max_tokens)
    assert row.prompt_tokens / row.calls == template + 60 + answers  # was 400
    assert row.prompt_tokens / row.calls > 3 * 400
    assert row.completion_tokens / row.calls == 1  # alpaca_eval's max_tokens, not the card's


def test_a_sharded_generation_is_planned_per_shard_and_as_wall_time_on_its_nodes() -> None:
    from omegaconf import OmegaConf

    from xlexp.llm.card import LLMConfig

    local = OmegaConf.merge(
        OmegaConf.structured(LLMConfig),
        {"name": "t", "backend": "vllm", "model": "m", "tokens_per_s": 1000.0},
    )
    rows = [
        plan.RoleCount("reverse", "teacher", local, 400, prompt_tokens=3.2e6,
                       completion_tokens=8e5),
        plan.RoleCount("respond", "model", local, 100, prompt_tokens=1e6),  # not generation
    ]
    job = plan.JobPlan(overrides=[], stages=["generate", "evaluate"], counts=rows, shards=4)
    (line,) = plan.shard_lines(job, generate_tps=1200.0)
    # 4e6 tokens at 1000 tokens/s = 4000 GPU-s in all: 1000 s (0.28 h) per shard and node.
    assert line.startswith("shards: generate.shards=4: per shard about 100 calls, 1,000,000 tokens")
    assert "0.28 GPU-hours" in line and "about 0.28 h on 4 nodes" in line
    assert "1.11 h on one" in line
    assert "generate.shards=4" in plan.render([job], 3600.0, 1200.0, 2.0)
    job.shards = 1
    assert plan.shard_lines(job, 1200.0) == []


def test_the_plan_cli_reads_the_shard_count(tmp_path: Path) -> None:
    cfg = plan.compose_job(["stages=[generate]", "generate.shards=3", f"store_dir={tmp_path}"])
    job = plan.plan_job(cfg, [], plan.Measured(tmp_path), probe_store=False)
    assert job.shards == 3 and plan.shard_lines(job, 2500.0)[0].startswith(
        "shards: generate.shards=3: per shard about"
    )

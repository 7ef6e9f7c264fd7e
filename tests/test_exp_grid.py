"""Every job of every experiment sweep composes (what `--cfg job` prints for each job), the model
grid of Fig. 2 / Table 6 and the systems of Table 3 and Table 10 expand to the paper's rows, and
the tiny profile runs the instruct grid sweep end to end."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from fakeserver import FakeOpenAI
from hydra import compose, initialize_config_dir
from sweeps import job_results, run_sweep
from test_chain import Teacher, overrides

from xlexp.config import parse_data_size, register
from xlexp.plan import expand_jobs

ROOT = Path(__file__).resolve().parents[1]
EXPS = sorted(p.stem for p in (ROOT / "conf" / "exp").glob("*.yaml"))
register()


def compose_job(job: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=job, return_hydra_config=True)


def jobs_of(command: str) -> list[list[str]]:
    """The override list of each job of `python -m xlexp ...` (xlexp.plan expands it as Hydra's
    basic sweeper does: the experiment's sweeper params, then the command line's)."""
    args = shlex.split(command)
    assert args[:3] == ["python", "-m", "xlexp"], command
    return expand_jobs(args[3:])


def documented_commands(exp: str) -> list[str]:
    """The `python -m xlexp ...` lines of an experiment file's header, without trailing comments."""
    lines = (ROOT / "conf" / "exp" / f"{exp}.yaml").read_text().splitlines()
    found = []
    for line in lines:
        if not line.startswith("#"):
            break
        text = re.split(r"\s#|\s\(", line.lstrip("# "))[0].strip()  # drop trailing notes
        if text.startswith("python -m xlexp ") and "+exp=" in text:
            found.append(text)
    return found


def system(job: list[str]) -> tuple[str, int | None]:
    """(model card, SFT rows or None for the model as is) of a job."""
    cfg = compose_job(job)
    return cfg.model.name, parse_data_size(cfg.data_size) if "sft" in cfg.stages else None


@pytest.mark.parametrize("exp", EXPS)
def test_every_job_of_every_sweep_composes(exp: str) -> None:
    commands = documented_commands(exp) or [f"python -m xlexp +exp={exp} -m"]
    for command in {*commands, f"python -m xlexp +exp={exp} -m"}:
        for job in jobs_of(command):
            cfg = compose_job(job)  # the config `--cfg job` prints for this job
            assert cfg.hydra.runtime.choices.exp == exp, (command, job)
            parse_data_size(cfg.data_size)
            assert cfg.model.model and cfg.langs.codes and cfg.stages


def test_fig2_base_grid_is_two_models_by_three_sizes() -> None:
    jobs = jobs_of("python -m xlexp +exp=grid_base -m")
    assert sorted(system(j) for j in jobs) == sorted(
        (m, n) for m in ("eurollm-9b", "qwen2.5-7b") for n in (2000, 8000, 32000)
    )
    as_is = jobs_of("python -m xlexp +exp=grid_base stages=[evaluate,report] -m data_size=8k")
    assert sorted((system(j) for j in as_is), key=str) == [
        ("eurollm-9b", None),
        ("qwen2.5-7b", None),
    ]
    assert {compose_job(j).hydra.runtime.choices.profile for j in jobs} == {"paper"}


def test_fig2_instruct_grid_is_three_models_by_four_sizes() -> None:
    jobs = jobs_of("python -m xlexp +exp=grid_instruct -m")
    models = ("eurollm-9b-instruct", "qwen2.5-7b-instruct", "aya-expanse-8b")
    assert sorted(system(j) for j in jobs) == sorted(
        (m, n) for m in models for n in (32, 256, 2000, 8000)
    )
    # The seed corpus does not depend on the size: one generated dataset serves every job.
    assert len({str(compose_job(j).seed_data) for j in jobs}) == 1


def test_table3_rows_are_the_papers() -> None:
    jobs = jobs_of("python -m xlexp +exp=mtransfer -m")
    expected = [
        ("eurollm-9b", None), ("eurollm-9b", 8000),
        ("eurollm-9b-instruct", None), ("eurollm-9b-instruct", 8000),
        ("qwen2.5-7b", None), ("qwen2.5-7b", 8000),
        ("qwen2.5-7b-instruct", None), ("qwen2.5-7b-instruct", 32),
        ("aya-expanse-8b", None), ("aya-expanse-8b", 32),
    ]  # fmt: skip
    assert sorted((system(j) for j in jobs), key=str) == sorted(expected, key=str)
    assert {compose_job(j).eval.benchmark for j in jobs} == {"m_alpacaeval"}


def test_table10_instruct_row_sweeps_the_strategies_at_32() -> None:
    jobs = jobs_of("python -m xlexp +exp=selection_instruct -m")
    cfgs = [compose_job(j) for j in jobs]
    assert sorted(c.generate.selection for c in cfgs) == ["best_of_k", "naive", "random"]
    assert {(c.model.name, parse_data_size(c.data_size)) for c in cfgs} == {
        ("eurollm-9b-instruct", 32)
    }


def test_the_command_line_wins_over_the_grid_on_the_tiny_profile() -> None:
    jobs = jobs_of("python -m xlexp +exp=grid_instruct profile=tiny -m model=smollm2 data_size=2,4")
    assert [system(j) for j in jobs] == [("smollm2-135m", 2), ("smollm2-135m", 4)]


@pytest.mark.slow  # a sweep: the slow lane
def test_tiny_instruct_grid_sweep_runs_end_to_end(tmp_path: Path, tiny_model_dir: Path) -> None:
    import sys

    teacher = Teacher()
    with FakeOpenAI(teacher) as srv:
        job = [
            o
            for o in overrides(srv.base_url, tiny_model_dir, tmp_path / "store")
            if not o.startswith("data_size=")
        ]
        cmd = [sys.executable, "-m", "xlexp", "+exp=grid_instruct", "profile=tiny", "-m",
               "model=smollm2", "data_size=2,4", *job,
               f"hydra.sweep.dir={tmp_path / 'sweep'}"]  # fmt: skip
        run_sweep(cmd, timeout=1500)
    results = job_results(tmp_path / "sweep")
    assert sorted(results) == [0, 1]
    assert [results[n]["stages"]["sft"]["adapter"]["rows"] for n in (0, 1)] == [2, 4]
    assert all(results[n]["metrics"]["avg"]["win_rate"] is not None for n in (0, 1))
    assert {results[n]["system"]["model"] for n in (0, 1)} == {"smollm2-135m"}
    report = (
        tmp_path / "sweep" / "report" / "tables.md"
    ).read_text()  # the sweep's report callback
    assert "+2 instructions" in report and "+4 instructions" in report

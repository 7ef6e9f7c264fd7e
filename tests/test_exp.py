"""Experiment configs (conf/exp/*.yaml) compose, and sweeps expand the way Hydra will launch them.

Files are globbed, so an experiment added later is covered without touching this test.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.utils import get_args_parser
from hydra.core.override_parser.overrides_parser import OverridesParser

from xlexp.argv import multirun_flag_first
from xlexp.config import parse_data_size, register, validate

ROOT = Path(__file__).resolve().parents[1]
EXPS = sorted(p.stem for p in (ROOT / "conf" / "exp").glob("*.yaml"))
# the paper's command, verbatim
SCALING_COMMAND = "python -m xlexp +exp=scaling -m data_size=32,256,2k,8k"
register()


def compose_cfg(overrides: list[str], hydra: bool = True):
    """The job's config; with `hydra`, also the hydra node (choices), which validate() must not
    see."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=hydra)


def sweep_jobs(command: str) -> list[list[str]]:
    """The override list of each job Hydra's basic sweeper launches for
    `python -m xlexp ... -m ...`."""
    args = shlex.split(command)
    assert args[:3] == ["python", "-m", "xlexp"], command
    # Hydra's own argument parser, on the argv xlexp/__main__.py hands it.
    cli = get_args_parser().parse_args(multirun_flag_first(args[3:]))
    assert cli.multirun, command
    parsed = OverridesParser.create().parse_overrides(cli.overrides)
    batches = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    return [job for batch in batches for job in batch]


def test_hydra_alone_rejects_the_verbatim_command_so_xlexp_moves_the_multirun_flag(capsys):
    args = shlex.split(SCALING_COMMAND)[3:]
    with pytest.raises(SystemExit):  # argparse: "unrecognized arguments: data_size=32,256,2k,8k"
        get_args_parser().parse_args(args)
    assert "unrecognized arguments: data_size=32,256,2k,8k" in capsys.readouterr().err
    assert multirun_flag_first(args) == ["-m", "+exp=scaling", "data_size=32,256,2k,8k"]
    assert multirun_flag_first(["a=1", "b=2"]) == ["a=1", "b=2"]


def test_there_are_experiments():
    assert "scaling" in EXPS


@pytest.mark.parametrize("exp", EXPS)
def test_experiment_file_is_global_and_says_what_it_reproduces(exp):
    lines = (ROOT / "conf" / "exp" / f"{exp}.yaml").read_text().splitlines()
    header = lines[
        : next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    ]
    assert "# @package _global_" in header, (
        f"conf/exp/{exp}.yaml: its header must say '# @package _global_'"
    )
    assert any(("Table" in line or "Fig" in line) for line in header), (
        f"conf/exp/{exp}.yaml: its header needs a comment line naming the paper's table/figure"
    )


@pytest.mark.parametrize("exp", EXPS)
def test_experiment_composes_on_the_paper_profile(exp):
    cfg = compose_cfg([f"+exp={exp}"])
    assert cfg.hydra.runtime.choices.exp == exp
    parse_data_size(cfg.data_size)
    assert cfg.langs.codes and cfg.stages


@pytest.mark.parametrize("exp", EXPS)
def test_experiment_composes_and_validates_on_the_tiny_profile(exp):
    cfg = compose_cfg([f"+exp={exp}", "profile=tiny"])
    assert cfg.hydra.runtime.choices.profile == "tiny"
    assert cfg.model.backend == "hf"  # the command line's profile wins over the experiment's
    validate(compose_cfg([f"+exp={exp}", "profile=tiny"], hydra=False), cuda=False)


def test_the_verbatim_scaling_command_is_documented_and_expands_to_four_jobs():
    assert SCALING_COMMAND in (ROOT / "conf" / "exp" / "scaling.yaml").read_text()
    assert SCALING_COMMAND in (ROOT / "README.md").read_text()
    jobs = sweep_jobs(SCALING_COMMAND)
    assert jobs == [["+exp=scaling", f"data_size={s}"] for s in ("32", "256", "2k", "8k")]
    cfgs = [compose_cfg(job) for job in jobs]
    assert [parse_data_size(c.data_size) for c in cfgs] == [32, 256, 2000, 8000]
    for cfg in cfgs:  # the paper's models, only data_size differs
        assert cfg.hydra.runtime.choices.profile == "paper"
        assert (
            cfg.teacher.model == "Qwen/Qwen2.5-72B-Instruct"
            and cfg.model.model == "utter-project/EuroLLM-9B"
        )
        assert cfg.logger.group == "scaling"
    first = {k: v for k, v in cfgs[0].items() if k not in ("data_size", "hydra")}
    assert all(
        {k: v for k, v in c.items() if k not in ("data_size", "hydra")} == first for c in cfgs[1:]
    )


def test_the_tiny_scaling_sweep_expands_on_the_tiny_profile():
    jobs = sweep_jobs("python -m xlexp +exp=scaling profile=tiny -m data_size=2,4")
    cfgs = [compose_cfg(job) for job in jobs]
    assert [c.data_size for c in cfgs] == ["2", "4"]
    assert {c.hydra.runtime.choices.profile for c in cfgs} == {"tiny"}
    for job in jobs:
        validate(compose_cfg(job, hydra=False), cuda=False)

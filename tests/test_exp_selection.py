"""conf/exp/selection.yaml (paper Table 10): composes with the tiny profile and sweeps the three
selection strategies under `-m`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

from xlexp.config import register, validate

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ["best_of_k", "naive", "random"]
register()


def compose_exp(*overrides: str, hydra_cfg: bool = False):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(
            "config", overrides=["+exp=selection", *overrides], return_hydra_config=hydra_cfg
        )


def test_sweep_params_name_the_three_strategies():
    cfg = compose_exp("profile=tiny", hydra_cfg=True)
    params = cfg.hydra.sweeper.params
    (sweep,) = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    assert (
        sweep.key_or_group == "generate.selection"
        and list(sweep.sweep_string_iterator()) == STRATEGIES
    )
    assert cfg.logger.group == "selection"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_job_of_the_sweep_is_valid_on_the_tiny_profile(strategy):
    cfg = compose_exp("profile=tiny", f"generate.selection={strategy}")
    validate(cfg, cuda=False)
    assert cfg.generate.selection == strategy and cfg.teacher.backend == "hf"


def test_paper_profile_by_default():
    cfg = compose_exp()
    assert cfg.k == 3 and len(cfg.translators) == 3 and cfg.qe.kind == "comet"


@pytest.mark.slow
def test_multirun_launches_one_job_per_strategy(tmp_path):
    env = {**os.environ, "WANDB_DISABLED": "true", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "xlexp", "+exp=selection", "profile=tiny", "stages=[report]",
           f"store_dir={tmp_path / 'store'}", f"hydra.sweep.dir={tmp_path / 'multi'}", "-m"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = sorted(p for p in (tmp_path / "multi").iterdir() if p.is_dir())
    chosen = [
        yaml.safe_load((j / ".hydra" / "config.yaml").read_text())["generate"]["selection"]
        for j in jobs
    ]
    assert chosen == STRATEGIES

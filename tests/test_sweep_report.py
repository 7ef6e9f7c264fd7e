"""A real Hydra multirun (basic launcher, a subprocess): each job's W&B run is grouped by the
experiment and its sweep and named by its overrides, and the sweep callback writes the report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import wandb_offline
from fakeserver import FakeOpenAI
from test_chain import Teacher, overrides

pytestmark = pytest.mark.slow  # whole runs: the slow lane

ROOT = Path(__file__).resolve().parents[1]


def test_multirun_groups_wandb_runs_by_sweep_and_writes_the_sweep_report(tmp_path, tiny_model_dir):
    sweep = tmp_path / "multirun" / "sweep-1"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "WANDB_DATA_DIR": str(tmp_path / "wandb-data"),
        "XLEXP_PROGRESS": "0",
    }
    env.pop("WANDB_API_KEY", None)
    env.pop("WANDB_DISABLED", None)
    with FakeOpenAI(Teacher()) as srv:
        args = overrides(
            srv.base_url, tiny_model_dir, tmp_path / "store", stages="[evaluate,report]"
        )
        # -m before the overrides: hydra-core 1.3.8's argparse drops overrides after a mid-line -m
        # (hydra#3053).
        cmd = [
            sys.executable,
            "-m",
            "xlexp",
            "-m",
            "+exp=scaling",
            "profile=tiny",
            "eval.limit=2,3",
            "logger=wandb",
            *[a for a in args if not a.startswith("eval.limit=")],
            f"hydra.sweep.dir={sweep}",
        ]
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    for num, limit in ((0, 2), (1, 3)):
        wb = wandb_offline.read(sweep / str(num))
        assert wb.run["runGroup"] == "scaling:multirun/sweep-1"
        assert (
            wb.run["displayName"]
            == f"{num} +exp=scaling,profile=tiny,logger=wandb,data_size=4,stages=[evaluate,report]"
        )
        assert "scaling" in wb.run["tags"]
        assert wb.config["xlexp"] == {"exp": "scaling", "sweep_dir": str(sweep), "job_num": num}
        assert (
            len(wb.table("eval/samples")["data"]) == 2 * limit
        )  # logger.samples (20) > rows: all of them

    tables = (sweep / "report" / "tables.md").read_text()
    # One row per job's judged system; the same model twice is told apart by its judge key.
    assert tables.count("| smollm2-135m [") == 2
    assert (sweep / "report" / "tables.csv").exists()
    assert "stage evaluate:" in (sweep / "0" / "__main__.log").read_text()  # Hydra's job log
    assert "Callback" not in done.stderr  # no callback warned or failed

"""hydra/launcher=slurm and slurm_gen: resources from the environment reach the sbatch script.

No cluster needed: submitit renders the batch file it would submit (the real submission is in
tests/test_slurm.py, which needs Slurm).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import submitit
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from xlexp.config import register

ROOT = Path(__file__).resolve().parents[1]
register()


def launcher_params(launcher: str) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    return OmegaConf.to_container(cfg.hydra.launcher, resolve=True)


# submitit renders the sbatch file only where it finds `srun` (it checks before writing it).
# XLEXP_SLURM_TEST=1 (CI, which starts Slurm) makes a missing srun a failure, not a skip.
needs_srun = pytest.mark.skipif(
    shutil.which("srun") is None and os.environ.get("XLEXP_SLURM_TEST") != "1",
    reason="submitit renders sbatch files only where srun is on PATH (Slurm; CI starts one)",
)


def sbatch_text(params: dict, folder: Path) -> str:
    """The batch file submitit writes for a 2-job array, built the way the Hydra plugin builds
    it."""
    params = {k: v for k, v in params.items() if k != "_target_"}
    executor = submitit.AutoExecutor(
        folder=folder, cluster="slurm", slurm_max_num_timeout=params.pop("max_num_timeout")
    )
    params.pop("submitit_folder")
    shared = {
        "timeout_min",
        "cpus_per_task",
        "gpus_per_node",
        "tasks_per_node",
        "mem_gb",
        "nodes",
        "name",
        "stderr_to_stdout",
    }
    executor.update_parameters(**{k if k in shared else f"slurm_{k}": v for k, v in params.items()})
    executor._executor.parameters["map_count"] = 2  # what map_array sets for a 2-point sweep
    return executor._executor._make_submission_file_text("python -m submitit.core._submit x", "uid")


@needs_srun
def test_slurm_launcher_takes_resources_from_the_environment(tmp_path, monkeypatch):
    for key, value in {
        "PARTITION": "gpu-a100",
        "ACCOUNT": "proj42",
        "GPUS": "2",
        "CPUS": "12",
        "MEM_GB": "96",
        "TIMEOUT_MIN": "600",
    }.items():
        monkeypatch.setenv(f"XLEXP_SLURM_{key}", value)
    params = launcher_params("slurm")
    assert params["_target_"].endswith("SlurmLauncher")
    assert (
        params["partition"],
        params["account"],
        params["gpus_per_node"],
        params["cpus_per_task"],
    ) == ("gpu-a100", "proj42", 2, 12)
    text = sbatch_text(params, tmp_path)
    for flag in (
        "--partition=gpu-a100",
        "--account=proj42",
        "--gpus-per-node=2",
        "--cpus-per-task=12",
        "--mem=96GB",
        "--time=600",
        "--array=0-1%2",
        "--signal=USR2@120",
        "--requeue",
    ):
        assert f"#SBATCH {flag}\n" in text, flag
    assert "--qos" not in text  # unset: the cluster's default


@needs_srun
def test_slurm_launcher_defaults_fit_a_lora_job_and_gpus_can_be_dropped(tmp_path, monkeypatch):
    for key in (
        "PARTITION",
        "ACCOUNT",
        "QOS",
        "GPUS",
        "CPUS",
        "MEM_GB",
        "TIMEOUT_MIN",
        "MAX_REQUEUES",
    ):
        monkeypatch.delenv(f"XLEXP_SLURM_{key}", raising=False)
    params = launcher_params("slurm")
    assert (
        params["gpus_per_node"],
        params["cpus_per_task"],
        params["mem_gb"],
        params["timeout_min"],
    ) == (1, 8, 64, 1440)
    assert (
        params["partition"] is None and params["max_num_timeout"] == 3
    )  # resumable jobs: requeue after a time-out
    monkeypatch.setenv("XLEXP_SLURM_GPUS", "null")
    text = sbatch_text(launcher_params("slurm"), tmp_path)
    assert "--gpus-per-node" not in text and "--partition" not in text


def test_generation_profile_asks_for_a_bigger_node_and_keeps_the_rest(monkeypatch):
    monkeypatch.setenv("XLEXP_SLURM_PARTITION", "big")
    monkeypatch.delenv("XLEXP_SLURM_GEN_GPUS", raising=False)
    gen, lora = launcher_params("slurm_gen"), launcher_params("slurm")
    assert (
        gen["gpus_per_node"] == 4
        and gen["mem_gb"] > lora["mem_gb"]
        and gen["timeout_min"] > lora["timeout_min"]
    )
    assert gen["partition"] == lora["partition"] == "big" and gen["_target_"] == lora["_target_"]


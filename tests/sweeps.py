"""Run `python -m xlexp +exp=scaling profile=tiny -m data_size=...` for real on a Hydra launcher.

Shared by the submitit_local test (tests/test_sweep.py) and the Slurm tests (tests/test_slurm.py):
the fake teacher/judge server runs in the test process, every job reaches it over 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from test_chain import overrides

ROOT = Path(__file__).resolve().parents[1]


def sweep_command(base_url: str, tiny_dir: Path, tmp: Path, sizes: str, *extra: str) -> list[str]:
    """The tiny scaling sweep over data_size=`sizes`, its store and sweep dir under `tmp`."""
    job = [
        o for o in overrides(base_url, tiny_dir, tmp / "store") if not o.startswith("data_size=")
    ]
    return [
        sys.executable, "-m", "xlexp", "+exp=scaling", "profile=tiny", "-m", f"data_size={sizes}",
        *job, f"hydra.sweep.dir={tmp / 'sweep'}", *extra,
    ]  # fmt: skip


def sweep_env(**extra: str) -> dict[str, str]:
    # Jobs import this checkout's xlexp, whatever the submitting process's cwd.
    return {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_DISABLED": "true", **extra}


def run_sweep(
    cmd: list[str], timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env or sweep_env(), capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def job_results(sweep_dir: Path) -> dict[int, dict]:
    """results.json of each job of a sweep, by job number (hydra.sweep.subdir = job num)."""
    return {int(p.parent.name): json.loads(p.read_text()) for p in sweep_dir.glob("*/results.json")}


def artifact_keys(store: Path, stage: str) -> list[str]:
    """Finished artifacts of a stage in the store (unfinished ones are hidden .partial-* dirs)."""
    return (
        sorted(p.name for p in (store / stage).iterdir() if not p.name.startswith("."))
        if (store / stage).exists()
        else []
    )

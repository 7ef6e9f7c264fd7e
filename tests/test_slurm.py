"""A real Slurm cluster: the tiny sweep through hydra/launcher=slurm, and preempted jobs resuming.

Runs when `sbatch` is on PATH or XLEXP_SLURM_TEST=1 (CI starts a one-node cluster on localhost
with launchers/local_slurm.sh; with XLEXP_SLURM_TEST=1 this module starts it if none answers).
Every submission has a hard timeout: without accounting, submitit waits forever for a job that
died without output.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakeserver import FakeOpenAI
from sweeps import ROOT, artifact_keys, job_results, run_sweep, sweep_command, sweep_env
from test_chain import Teacher, compose_cfg

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (shutil.which("sbatch") or os.environ.get("XLEXP_SLURM_TEST") == "1"),
        reason="needs Slurm: sbatch on PATH or XLEXP_SLURM_TEST=1 (launchers/local_slurm.sh start)",
    ),
]
# Tiny jobs: no GPU, one CPU each so both array tasks run at once on a 2-CPU node.
SLURM_ENV = {
    "XLEXP_SLURM_GPUS": "null",
    "XLEXP_SLURM_CPUS": "1",
    "XLEXP_SLURM_MEM_GB": "3",
    "XLEXP_SLURM_TIMEOUT_MIN": "30",
}
TIMEOUT_S = 900


def _controller_up() -> bool:
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "UP" in ping.stdout


@pytest.fixture(scope="module")
def slurm() -> None:
    if os.environ.get("XLEXP_SLURM_TEST") != "1":
        if not _controller_up():  # Slurm's client is installed, but no cluster runs here
            pytest.skip(
                "sbatch is on PATH but no slurmctld answers: launchers/local_slurm.sh start, "
                "or XLEXP_SLURM_TEST=1"
            )
        return
    if not _controller_up():
        subprocess.run(
            ["bash", str(ROOT / "launchers" / "local_slurm.sh"), "start"], check=True, timeout=600
        )
    assert _controller_up(), (
        "XLEXP_SLURM_TEST=1 but no slurmctld answers after launchers/local_slurm.sh start"
    )


def submitit_logs(sweep_dir: Path) -> dict[str, str]:
    """Each array task's submitit log (stdout, appended to by every attempt), by Slurm job id."""
    return {p.parent.name: p.read_text() for p in (sweep_dir / ".submitit").glob("*/*_log.out")}


def test_tiny_sweep_runs_as_one_slurm_array_job(tmp_path, tiny_model_dir, slurm):
    teacher = Teacher()
    with FakeOpenAI(teacher) as srv:
        cmd = sweep_command(srv.base_url, tiny_model_dir, tmp_path, "2,4", "hydra/launcher=slurm")
        started = time.time()
        run_sweep(cmd, timeout=TIMEOUT_S, env=sweep_env(**SLURM_ENV))
        print(f"2-point tiny sweep on Slurm: {time.time() - started:.1f} s")
    results = job_results(tmp_path / "sweep")
    assert [results[n]["stages"]["sft"]["adapter"]["rows"] for n in (0, 1)] == [2, 4]
    assert all(set(r["metrics"]) == {"deu", "fra", "avg"} for r in results.values())
    logs = submitit_logs(tmp_path / "sweep")
    array_ids = {job.split("_")[0] for job in logs}
    assert len(logs) == 2 and len(array_ids) == 1, (
        f"expected one array job with 2 tasks, got {sorted(logs)}"
    )
    assert len(artifact_keys(tmp_path / "store", "select")) == 1
    assert teacher.counts["reverse"] == 8 and teacher.counts["refine"] == 8


class SlowTeacher(Teacher):
    """Every answer takes `delay` seconds, so a signal lands in the middle of generation."""

    def __call__(self, body: dict):
        time.sleep(self.delay)
        return super().__call__(body)


@pytest.mark.parametrize("how", ["usr2", "scontrol-requeue"])
def test_preempted_job_is_requeued_and_resumes_from_the_store(tmp_path, tiny_model_dir, slurm, how):
    """usr2: the signal Slurm sends before a time limit (submitit checkpoints and requeues itself);
    scontrol-requeue: the job is requeued from outside, as preemption with PreemptMode=REQUEUE
    does."""
    # Slow enough that the job cannot finish within the cluster's KillWait (5 s) after a requeue:
    # on a quiet machine the whole generation otherwise takes ~12 s and completes before the kill.
    # A window of 2: the 8 reverse requests take 4 s in batches that finish one by one (with the
    # default window all 8 are in flight at once and the stage is done before it can be killed).
    teacher = SlowTeacher(delay=1.0)
    with FakeOpenAI(teacher) as srv:
        cmd = sweep_command(
            srv.base_url,
            tiny_model_dir,
            tmp_path,
            "2",
            "hydra/launcher=slurm",
            "stages=[generate,report]",
            "teacher.max_concurrency=2",
        )
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=sweep_env(**SLURM_ENV),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            parts = tmp_path / "store" / "reverse"
            deadline = time.time() + 300
            while time.time() < deadline and not list(parts.glob(".partial-*/parts/batch-*.jsonl")):
                assert proc.poll() is None, proc.stdout.read()[-3000:]
                time.sleep(0.1)
            assert list(parts.glob(".partial-*/parts/batch-*.jsonl")), (
                "the job never started the reverse stage"
            )
            (job_id,) = submitit_logs(tmp_path / "sweep")
            if how == "usr2":
                subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=30)
            else:
                subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=30)
            out, _ = proc.communicate(timeout=TIMEOUT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, out[-3000:]

    log = submitit_logs(tmp_path / "sweep")[job_id]
    assert log.count("Starting with JobEnvironment") == 2, log  # the same job id ran twice
    if how == "usr2":
        assert "Caught signal SIGUSR2" in log and f"Requeued job {job_id}" in log
    second = log.split("Starting with JobEnvironment")[2]
    assert re.search(r"seed \w+: reused", second), second  # finished artifacts are not redone
    (result,) = job_results(tmp_path / "sweep").values()
    assert result["stages"]["generate"]["select"]["rows"] >= 2
    # Each finished batch was kept: at most the batch in flight is asked again
    # (generate.batch_size=2 rows for reverse/refine, 4x that for QE).
    assert 8 <= teacher.counts["reverse"] <= 8 + 2 and 8 <= teacher.counts["refine"] <= 8 + 2
    qe = result["stages"]["generate"]["translate"]["translations"]
    assert qe <= teacher.counts["qe"] <= qe + 8


def _wait_gone(job_id: str, timeout: float = TIMEOUT_S) -> None:
    """Until Slurm no longer lists the job (or any task of an array) as pending or running."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = subprocess.run(
            ["squeue", "-h", "-j", job_id], capture_output=True, text=True, timeout=30
        ).stdout
        if not out.strip():
            return
        time.sleep(1)
    raise AssertionError(f"Slurm job {job_id} still queued after {timeout} s")


def test_generation_shards_run_as_an_array_then_the_merge_names_a_cancelled_shard(
    tmp_path, slurm
):
    """launchers/generate_shards.sh 4: a 4-task array and a merge job after it; task 2 is
    cancelled; the merge fails naming shard 2; that shard alone is run again (the others make no
    call); the merge then gives the unsharded run's dataset byte for byte."""
    from test_shards import Server, dataset_of, remote_args

    from xlexp.__main__ import run
    from xlexp.store_status import store_status

    server = Server()
    logs = tmp_path / "logs"
    with FakeOpenAI(server) as srv:
        whole = run(compose_cfg(remote_args(srv.base_url, tmp_path / "one")), tmp_path / "r1")
        store = tmp_path / "store"
        args = [a for a in remote_args(srv.base_url, store) if not a.startswith("stages=")]
        env = sweep_env(
            XLEXP_SLURM_GEN_GPUS="null",
            XLEXP_SLURM_GEN_CPUS="1",
            XLEXP_SLURM_GEN_MEM_GB="3",
            XLEXP_SLURM_GEN_TIMEOUT_MIN="30",
            XLEXP_SHARDS_LOGS=str(logs),
            XLEXP_PYTHON=sys.executable,
        )
        calls_before = dict(server.counts)
        submit = subprocess.run(
            ["bash", str(ROOT / "launchers" / "generate_shards.sh"), "4", *args],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert submit.returncode == 0, submit.stderr
        array = re.search(r"shards array (\d+)", submit.stdout).group(1)
        merge = re.search(r"merge job (\d+)", submit.stdout).group(1)
        # Two 1-CPU tasks run at once on the 2-CPU node: task 2 is still pending.
        subprocess.run(["scancel", f"{array}_2"], check=True, timeout=30)
        _wait_gone(merge)
        merge_log = (logs / f"merge-{merge}.out").read_text()
        assert "generate.shards: 1 of 4 shards not finished (missing: 2)" in merge_log, merge_log
        assert "generate.shard=2" in merge_log
        status = store_status(store)
        assert status[0].endswith("3 done, 0 in progress, 1 missing"), status
        assert not (store / "select").exists()

        array_calls = {k: v - calls_before.get(k, 0) for k, v in server.counts.items()}
        sharded = [*remote_args(srv.base_url, store), "generate.shards=4"]
        alone = run(compose_cfg([*sharded, "generate.shard=2"]), tmp_path / "s2")
        merged = run(compose_cfg(sharded), tmp_path / "merge")
        assert merged["backend_calls"] == 0
    # Shard 2 alone made its own calls only: with the array's, as many as the unsharded run.
    assert 0 < alone["backend_calls"] < sum(array_calls.values())
    total = {k: v - calls_before.get(k, 0) for k, v in server.counts.items()}
    assert total == calls_before, (array_calls, total, calls_before)
    assert dataset_of(merged, store) == dataset_of(whole, tmp_path / "one")


def test_a_hydra_multirun_over_the_shard_index_is_one_slurm_array(tmp_path, slurm):
    """`generate.shard=0,1 hydra/launcher=slurm_gen -m`: one array job of two tasks (submitit);
    the merge after it makes no call."""
    from test_shards import Server, remote_args

    from xlexp.__main__ import run

    server = Server()
    with FakeOpenAI(server) as srv:
        store = tmp_path / "store"
        sharded = [*remote_args(srv.base_url, store), "generate.shards=2"]
        sweep = f"hydra.sweep.dir={tmp_path / 'sweep'}"
        cmd = [sys.executable, "-m", "xlexp", *sharded, "generate.shard=0,1",
               "hydra/launcher=slurm_gen", sweep, "-m"]  # fmt: skip
        env = sweep_env(
            XLEXP_SLURM_GEN_GPUS="null",
            XLEXP_SLURM_GEN_CPUS="1",
            XLEXP_SLURM_GEN_MEM_GB="3",
            XLEXP_SLURM_GEN_TIMEOUT_MIN="30",
        )
        run_sweep(cmd, timeout=TIMEOUT_S, env=env)
        merged = run(compose_cfg(sharded), tmp_path / "merge")
    logs = submitit_logs(tmp_path / "sweep")
    assert len(logs) == 2 and len({job.split("_")[0] for job in logs}) == 1, sorted(logs)
    assert merged["backend_calls"] == 0 and merged["stages"]["generate"]["select"]["pieces"] == 2

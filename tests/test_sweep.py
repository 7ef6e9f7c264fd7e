"""A real 2-point multirun on hydra-submitit-launcher's local executor, end to end on tiny models.

Both jobs run at once as separate processes; they share the store, so the generated dataset is
produced once and no request reaches the teacher/judge server twice.
"""

from __future__ import annotations

import json

import pytest
from fakeserver import FakeOpenAI
from sweeps import artifact_keys, job_results, run_sweep, sweep_command
from test_chain import Teacher

pytestmark = pytest.mark.slow  # whole runs: the slow lane


def test_tiny_scaling_sweep_on_submitit_local_shares_the_generated_dataset(
    tmp_path, tiny_model_dir
):
    teacher = Teacher()
    with FakeOpenAI(teacher) as srv:
        cmd = sweep_command(
            srv.base_url, tiny_model_dir, tmp_path, "2,4", "hydra/launcher=submitit_local"
        )
        proc = run_sweep(cmd, timeout=900)
        requests = [json.dumps(r, sort_keys=True) for r in srv.requests]
    assert "Submitit 'local' sweep output dir" in proc.stderr + proc.stdout

    results = job_results(tmp_path / "sweep")
    assert sorted(results) == [0, 1]
    assert [results[n]["stages"]["sft"]["adapter"]["rows"] for n in (0, 1)] == [
        2,
        4,
    ]  # data_size=2,4
    assert all(set(r["metrics"]) == {"deu", "fra", "avg"} for r in results.values())

    store = tmp_path / "store"
    generated = {
        stage: artifact_keys(store, stage)
        for stage in ("seed", "reverse", "refine", "translate", "qe", "select")
    }
    assert all(len(keys) == 1 for keys in generated.values()), (
        generated
    )  # produced once, used by both
    assert {r["stages"]["generate"]["select"]["key"] for r in results.values()} == set(
        generated["select"]
    )
    assert len(artifact_keys(store, "sft")) == 2
    # One teacher call per seed passage and one QE call per translation, as in a single job.
    assert teacher.counts["reverse"] == 8 and teacher.counts["refine"] == 8
    assert teacher.counts["qe"] == results[0]["stages"]["generate"]["translate"]["translations"]
    assert len(requests) == len(set(requests)), "a request reached the server twice"

"""launchers/vllm_replicas.sbatch starts one server per Slurm task and prints the base_url list
a role points at; a role on that list spreads its calls over the replicas.

As in test_vllm_server_script.py, `vllm.entrypoints.openai.api_server` is a stand-in that serves
the test suite's OpenAI-compatible server; `srun` is a stand-in too (SLURM_NTASKS copies of the
command on this machine, each with its SLURM_LOCALID), so the script runs unchanged without a
cluster.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from xlexp.config import register
from xlexp.roles import Models
from xlexp.store import Store

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
register()

# `python -m vllm.entrypoints.openai.api_server --model MODEL ... --port N`: an echo server named
# MODEL on port N that records its arguments and GPUs; on XLEXP_STAND_IN_FAIL_PORT it dies first.
API_SERVER_STAND_IN = f"""
import json, os, sys
sys.path.insert(0, {str(TESTS)!r})
import fakeserver
args = sys.argv[1:]
port = int(args[args.index("--port") + 1])
if str(port) == os.environ.get("XLEXP_STAND_IN_FAIL_PORT"):
    sys.exit("CUDA out of memory (stand-in)")
with open(os.path.join(os.environ["XLEXP_STAND_IN_DIR"], f"{{port}}.json"), "w") as f:
    json.dump({{"args": args, "gpus": os.environ.get("CUDA_VISIBLE_DEVICES")}}, f)
model = args[args.index("--model") + 1]
fake = fakeserver.FakeOpenAI(model=model, served=[model])
fake._httpd = fakeserver._Server(("0.0.0.0", port), fakeserver._RequestHandler)
fake._httpd.fake = fake
fake._httpd.serve_forever()
"""

# srun: the command (after srun's options) once per task, SLURM_NTASKS tasks, all on this node.
SRUN_STAND_IN = """#!/usr/bin/env bash
while [[ $1 == --* ]]; do shift; done
pids=()
for (( i = 0; i < ${SLURM_NTASKS:-1}; i++ )); do
  SLURM_LOCALID=$i SLURM_PROCID=$i "$@" &
  pids+=($!)
done
wait "${pids[@]}"
"""


def free_ports(n: int) -> int:
    """A port p with p .. p+n-1 free."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("", 0))
            base = s.getsockname()[1]
        if base + n < 65536 and not any(port_open(base + i) for i in range(1, n)):
            return base
    raise RuntimeError("no run of free ports")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_replica_set_prints_a_list_that_a_role_spreads_its_calls_over(tmp_path):
    stand_in = tmp_path / "stand_in" / "vllm" / "entrypoints" / "openai"
    stand_in.mkdir(parents=True)
    for d in (stand_in, stand_in.parent, stand_in.parent.parent):
        (d / "__init__.py").write_text("")
    (stand_in / "api_server.py").write_text(API_SERVER_STAND_IN)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(SRUN_STAND_IN)
    (bin_dir / "srun").chmod(0o755)
    started = tmp_path / "started"
    started.mkdir()
    port = free_ports(3)
    script = subprocess.Popen(
        ["bash", str(ROOT / "launchers" / "vllm_replicas.sbatch"), "Qwen/Qwen2.5-7B-Instruct",
         "2", str(port)],
        env={
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "SLURM_NTASKS": "3",
            "SLURM_SUBMIT_DIR": str(ROOT),
            "CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5",  # the node's six GPUs, seen by every task
            "XLEXP_VLLM_PYTHON": sys.executable,
            "XLEXP_VLLM_HOST": "127.0.0.1",
            "PYTHONPATH": str(tmp_path / "stand_in"),
            "XLEXP_STAND_IN_DIR": str(started),
            "XLEXP_STAND_IN_FAIL_PORT": str(port + 1),  # the second replica dies at start
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the job's process group: ended as Slurm ends a job
    )
    try:
        lines: list[str] = []
        deadline = time.time() + 60
        while time.time() < deadline and not any(x.startswith("xlexp: e.g.") for x in lines):
            line = script.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
        text = "\n".join(lines)
        assert "xlexp: starting 3 replicas of Qwen/Qwen2.5-7B-Instruct (2 GPU each)" in text, text
        assert "xlexp: 1 of 3 replicas did not start" in text, text
        urls = [f"http://127.0.0.1:{port}/v1", f"http://127.0.0.1:{port + 2}/v1"]
        assert f"xlexp: replicas ready (2): [{','.join(urls)}]" in lines, text
        (hint,) = [x for x in lines if x.startswith("xlexp: e.g.")]
        # The hint is what a user pastes: the list, the served model, no key.
        pasted = shlex.split(hint.removeprefix("xlexp: e.g. "))
        assert pasted == [
            f"teacher.base_url=[{','.join(urls)}]",
            "teacher.model=Qwen/Qwen2.5-7B-Instruct",
            "teacher.api_key_env=null",
        ]
        # Each task took its own port and its own two of the node's GPUs.
        gpus = {
            int(p.stem): json.loads(p.read_text())["gpus"] for p in started.glob("*.json")
        }
        assert gpus == {port: "0,1", port + 2: "4,5"}, gpus
        args = json.loads((started / f"{port}.json").read_text())["args"]
        assert args[args.index("--tensor-parallel-size") + 1] == "2"

        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose(
                "config",
                overrides=["profile=paper", "teacher.backend=openai", *pasted,
                           "teacher.max_concurrency=2"],
            )
        assert list(cfg.teacher.base_url) == urls
        models = Models(Store(tmp_path / "store"))
        teacher = models.role("teacher", cfg.teacher)
        answers = teacher.chat([[{"role": "user", "content": f"Frage {i}"}] for i in range(20)])
        models.close()
        assert [a.text for a in answers] == [f"Frage {i}" for i in range(20)]
        assert set(teacher.usage.replicas) == set(urls), teacher.usage.replicas
        assert sum(teacher.usage.replicas.values()) == 20
    finally:
        os.killpg(script.pid, signal.SIGTERM)
        script.wait(timeout=30)
    deadline = time.time() + 10
    while time.time() < deadline and (port_open(port) or port_open(port + 2)):
        time.sleep(0.1)
    assert not port_open(port) and not port_open(port + 2), "the job's end stops its servers"

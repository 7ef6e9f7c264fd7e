"""launchers/vllm_server.sbatch prints an address a role's base_url can point at.

vLLM needs a GPU, so `vllm` on PATH is a stand-in that serves the test suite's OpenAI-compatible
server (tests/fakeserver.py) on the port the script passes; the script itself runs unchanged
(as sbatch runs it: a bash script whose #SBATCH lines are comments).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from xlexp.config import register
from xlexp.roles import Models
from xlexp.store import Store

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
register()
pytestmark = pytest.mark.slow  # whole runs: the slow lane

VLLM_STAND_IN = f"""#!{sys.executable}
# `vllm serve MODEL ... --port N`: an OpenAI-compatible echo server named MODEL on 0.0.0.0:N.
import json, sys
sys.path.insert(0, {str(TESTS)!r})
import fakeserver
args = sys.argv[1:]
with open(__file__ + ".args", "w") as f:
    json.dump(args, f)
fake = fakeserver.FakeOpenAI(model=args[1], served=[args[1]])  # as vLLM, it lists what it serves
fake._httpd = fakeserver._Server(("0.0.0.0", int(args[args.index("--port") + 1])), fakeserver._RequestHandler)
fake._httpd.fake = fake
fake._httpd.serve_forever()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_script_prints_a_ready_address_that_a_teacher_can_use(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "vllm").write_text(VLLM_STAND_IN)
    (bin_dir / "vllm").chmod(0o755)
    port = free_port()
    script = subprocess.Popen(
        ["bash", str(ROOT / "launchers" / "vllm_server.sbatch"), "Qwen/Qwen2.5-72B-Instruct", "4", str(port)],
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        deadline = time.time() + 60
        while time.time() < deadline and not (lines and lines[-1].startswith("xlexp: ready at ")):
            lines.append(script.stdout.readline().strip())
        assert lines[0] == f"xlexp: serving Qwen/Qwen2.5-72B-Instruct at {lines[-1].removeprefix('xlexp: ready at ')}"
        url = re.fullmatch(r"xlexp: ready at (http://\S+:(\d+)/v1)", lines[-1])
        assert url and int(url.group(2)) == port, lines
        args = (bin_dir / "vllm.args").read_text()
        assert '"--tensor-parallel-size", "4"' in args and f'"--port", "{port}"' in args

        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose("config", overrides=["profile=paper", "teacher.backend=openai", f"teacher.base_url={url.group(1)}", "teacher.api_key_env=null"])
        assert cfg.teacher.model == "Qwen/Qwen2.5-72B-Instruct"  # the served name is the model argument
        models = Models(Store(tmp_path / "store"))
        (answer,) = models.role("teacher", cfg.teacher).chat([[{"role": "user", "content": "Wie geht es?"}]])
        models.close()
        assert answer.ok and answer.text == "Wie geht es?"
    finally:
        script.send_signal(signal.SIGTERM)
        script.wait(timeout=30)
    deadline = time.time() + 10
    while time.time() < deadline and port_open(port):
        time.sleep(0.1)
    assert not port_open(port), "the script's trap must stop the server with the job"

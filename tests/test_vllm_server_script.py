"""launchers/vllm_server.sbatch prints an address a role's base_url can point at.

Here `vllm.entrypoints.openai.api_server` is a stand-in module that serves the test suite's
OpenAI-compatible server (tests/fakeserver.py) on the port the script passes (.ci/run serves a real
vLLM); the script itself runs unchanged (as sbatch runs it: a bash script whose #SBATCH lines are
comments).
"""

from __future__ import annotations

import json
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
from xlexp.llm.openai import OpenAIBackend
from xlexp.roles import Models
from xlexp.store import Store

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
register()
pytestmark = pytest.mark.slow  # whole runs: the slow lane

# `python -m vllm.entrypoints.openai.api_server --model MODEL ... --port N`: an OpenAI-compatible
# echo server named MODEL on 0.0.0.0:N, with the LoRA modules it was given listed by /models.
API_SERVER_STAND_IN = f"""
import json, os, sys
sys.path.insert(0, {str(TESTS)!r})
import fakeserver
args = sys.argv[1:]
with open(os.environ["XLEXP_STAND_IN_ARGS"], "w") as f:
    json.dump(
        {{"args": args, "runtime_lora": os.environ.get("VLLM_ALLOW_RUNTIME_LORA_UPDATING")}}, f
    )
model = args[args.index("--model") + 1]
fake = fakeserver.FakeOpenAI(model=model, served=[model])  # as vLLM, it lists what it serves
if "--lora-modules" in args:
    for module in args[args.index("--lora-modules") + 1:]:
        if module.startswith("--"):
            break
        name, path = module.split("=", 1)
        fake.lora_modules[name] = path
fake._httpd = fakeserver._Server(
    ("0.0.0.0", int(args[args.index("--port") + 1])), fakeserver._RequestHandler
)
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
    stand_in = tmp_path / "stand_in" / "vllm" / "entrypoints" / "openai"
    stand_in.mkdir(parents=True)
    for d in (stand_in, stand_in.parent, stand_in.parent.parent):
        (d / "__init__.py").write_text("")
    (stand_in / "api_server.py").write_text(API_SERVER_STAND_IN)
    args_file = tmp_path / "args.json"
    adapter = tmp_path / "sft" / "adapter"
    port = free_port()
    script = subprocess.Popen(
        [
            "bash",
            str(ROOT / "launchers" / "vllm_server.sbatch"),
            "Qwen/Qwen2.5-72B-Instruct",
            "4",
            str(port),
        ],
        env={
            **os.environ,
            "XLEXP_VLLM_PYTHON": sys.executable,
            "PYTHONPATH": str(tmp_path / "stand_in"),
            "XLEXP_STAND_IN_ARGS": str(args_file),
            "XLEXP_LORA_MODULES": f"tuned={adapter}",
        },
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        deadline = time.time() + 60
        while time.time() < deadline and not (lines and lines[-1].startswith("xlexp: ready at ")):
            lines.append(script.stdout.readline().strip())
        assert lines[0] == (
            "xlexp: serving Qwen/Qwen2.5-72B-Instruct at "
            f"{lines[-1].removeprefix('xlexp: ready at ')}"
        )
        url = re.fullmatch(r"xlexp: ready at (http://\S+:(\d+)/v1)", lines[-1])
        assert url and int(url.group(2)) == port, lines
        started = json.loads(args_file.read_text())
        args = json.dumps(started["args"])
        assert '"--tensor-parallel-size", "4"' in args and f'"--port", "{port}"' in args
        assert '"--enable-lora"' in args and f'"--lora-modules", "tuned={adapter}"' in args
        assert started["runtime_lora"] == "True"  # adapters not given at start load at run time

        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose(
                "config",
                overrides=[
                    "profile=paper",
                    "teacher.backend=openai",
                    f"teacher.base_url={url.group(1)}",
                    "teacher.api_key_env=null",
                ],
            )
        assert (
            cfg.teacher.model == "Qwen/Qwen2.5-72B-Instruct"
        )  # the served name is the model argument
        models = Models(Store(tmp_path / "store"))
        (answer,) = models.role("teacher", cfg.teacher).chat(
            [[{"role": "user", "content": "Wie geht es?"}]]
        )
        models.close()
        assert answer.ok and answer.text == "Wie geht es?"
        # The adapter given at start is found by its path and named as the model.
        student = OpenAIBackend(cfg.teacher)
        assert student.served_adapter(str(adapter)) == "tuned"
        student.close()
    finally:
        script.send_signal(signal.SIGTERM)
        script.wait(timeout=30)
    deadline = time.time() + 10
    while time.time() < deadline and port_open(port):
        time.sleep(0.1)
    assert not port_open(port), "the script's trap must stop the server with the job"

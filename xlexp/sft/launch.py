"""Run `train_lora` in this process, or across processes with `accelerate launch` (DDP).

With more than one process (`sft.num_processes`: `auto` = one per visible CUDA GPU, or a count)
and not already inside a distributed launch, the training inputs are written to a spec file in
`out_dir/launch/` and `accelerate launch --num_processes N -m xlexp.sft.launch SPEC` runs every
rank; rank 0 writes the adapter and metrics.json, which are read back here. Without a GPU a
count > 1 runs CPU processes talking over gloo (`--cpu`), which is how the tests exercise it.

    python -m xlexp.sft.launch SPEC   # what each rank runs

The optimiser's batch does not depend on the process count: `sft.batch_size x sft.grad_accum`
is the global batch (the paper's 8, section 5) and `batch_plan` splits it into a per-device batch
(at most `sft.batch_size`, a memory cap) and gradient accumulation for the world size at hand, so
1 GPU, 2 GPUs or 8 GPUs take the same steps over the same examples and one adapter key fits all
(xlexp.sft.batch).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from xlexp.plain import plain
from xlexp.sft.batch import batch_plan
from xlexp.sft.train import train_lora

# Set by torchrun / accelerate launch in every rank: a launch here would nest.
_DISTRIBUTED_ENV = ("LOCAL_RANK", "ACCELERATE_PROCESS_ID")


def parse_num_processes(value: Any) -> int | None:
    """`auto` -> None (decided from the visible GPUs), else a positive count."""
    text = str(value).strip().lower()
    if text == "auto":
        return None
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise ValueError(f"must be auto or a count >= 1, not {value!r}")


def process_count(value: Any, cuda_devices: int | None = None) -> int:
    """How many training processes: `auto` is one per visible CUDA GPU (at least one)."""
    n = parse_num_processes(value)
    if n is not None:
        return n
    if cuda_devices is None:
        import torch

        cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return max(1, cuda_devices)


def inside_distributed_launch() -> bool:
    return any(k in os.environ for k in _DISTRIBUTED_ENV)


def _free_port() -> int:
    # Several jobs (and test runs) on one host must not all use accelerate's default 29500.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child_env(cpu: bool) -> dict[str, str]:
    """The ranks import the same xlexp as this process (a checkout may shadow an installed one)."""
    import xlexp

    root = str(Path(xlexp.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}
    if cpu:
        env["ACCELERATE_USE_CPU"] = "true"
    env.pop("WANDB_SERVICE", None)  # this process's wandb-core: the ranks start their own
    return env


def _wandb_env(report_to: str) -> dict[str, str]:
    """Rank 0 of a launch logs to W&B in a run of its own (a second process cannot write into
    this process's run): same project, directory, mode and group, job type `sft`."""
    if report_to != "wandb":
        return {}
    import wandb

    run = wandb.run
    if run is None:
        return {}
    env = {
        "WANDB_PROJECT": str(run.project),
        "WANDB_JOB_TYPE": "sft",
        "WANDB_DIR": str(Path(run.dir).parents[2]),
    }
    env["WANDB_MODE"] = "offline" if run.settings._offline else "online"
    if run.group:
        env["WANDB_RUN_GROUP"] = str(run.group)
    return env


def launch_command(spec: Path, num_processes: int, port: int) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        str(num_processes),
    ]
    cmd += ["--num_machines", "1", "--main_process_port", str(port), "--dynamo_backend", "no"]
    # Mixed precision is the trainer's business (SFTConfig bf16), not the launcher's.
    cmd += ["--mixed_precision", "no"]
    # Both go through torchrun (torch.distributed.run). `--cpu` would not: in accelerate 1.x it
    # selects the simple launcher, which starts ONE process and ignores --num_processes (several
    # CPU processes only with --mpirun_hostfile). CPU ranks are told apart by ACCELERATE_USE_CPU
    # (see _child_env) and then join a gloo process group (DistributedType.MULTI_CPU).
    cmd += ["--multi_gpu"]
    return cmd + ["-m", "xlexp.sft.launch", str(spec)]


def train(
    rows: list[dict],
    model_dir: str | Path,
    sft: Any,
    out_dir: Path,
    seed: int = 1,
    chat_template: str | None = None,
    report_to: str = "none",
    cuda_devices: int | None = None,
) -> dict:
    """`train_lora`, in-process for one process, else under `accelerate launch`; returns metrics."""
    out_dir = Path(out_dir)
    n = process_count(sft.num_processes, cuda_devices)
    if n == 1 or inside_distributed_launch():
        return train_lora(
            rows, model_dir, sft, out_dir, seed, chat_template=chat_template, report_to=report_to
        )
    metrics_path = out_dir / "metrics.json"
    if metrics_path.exists() and (out_dir / "adapter" / "adapter_config.json").exists():
        return json.loads(metrics_path.read_text())  # finished before: never retrained
    batch_plan(sft.batch_size, sft.grad_accum, n)  # an uneven split fails here, not in every rank
    spec_dir = out_dir / "launch"
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "rows.json").write_text(json.dumps(rows, ensure_ascii=False))
    spec = spec_dir / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "rows": str(spec_dir / "rows.json"),
                "model_dir": str(model_dir),
                "sft": dict(plain(sft)),
                "out_dir": str(out_dir),
                "seed": seed,
                "chat_template": chat_template,
                "report_to": report_to,
            },
            indent=2,
        )
    )
    if cuda_devices is None:
        import torch

        cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if 0 < cuda_devices < n:  # half on GPUs, half on CPU would be slow and is never meant
        raise ValueError(
            f"sft.num_processes: {n} processes but only {cuda_devices} GPUs are visible"
        )
    cpu = cuda_devices == 0
    cmd = launch_command(spec, n, port=_free_port())
    log_path = spec_dir / "launch.log"
    with log_path.open("w") as log:
        env = {**_child_env(cpu), **_wandb_env(report_to)}
        done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    if done.returncode != 0 or not metrics_path.exists():
        tail = log_path.read_text()[-4000:]
        raise RuntimeError(
            f"accelerate launch ({n} processes) failed with code {done.returncode}; "
            f"log {log_path}:\n{tail}"
        )
    return json.loads(metrics_path.read_text())


def main(argv: list[str] | None = None) -> None:
    from types import SimpleNamespace

    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(args[0]).read_text())
    rows = json.loads(Path(spec["rows"]).read_text())
    sft = SimpleNamespace(**spec["sft"])
    train_lora(
        rows,
        spec["model_dir"],
        sft,
        Path(spec["out_dir"]),
        spec["seed"],
        chat_template=spec["chat_template"],
        report_to=spec["report_to"],
    )
    if spec["report_to"] == "wandb":
        import wandb

        if wandb.run is not None:  # the Trainer never finishes its run; unflushed history is lost
            wandb.run.finish()


if __name__ == "__main__":
    main()

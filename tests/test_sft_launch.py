"""Multi-process SFT through `accelerate launch` (xlexp.sft.launch): a real 2-process gloo DDP run
of the tiny model on CPU whose adapter reloads, and the in-process path for one process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_sft import make_rows

from xlexp.config import SFTConfig
from xlexp.sft.batch import batch_plan
from xlexp.sft.launch import (
    inside_distributed_launch,
    launch_command,
    parse_num_processes,
    process_count,
    train,
)


@pytest.mark.parametrize(
    "value,gpus,expected", [("auto", 0, 1), ("auto", 1, 1), ("auto", 4, 4), ("2", 0, 2), (3, 8, 3)]
)
def test_process_count(value, gpus: int, expected: int) -> None:
    assert process_count(value, cuda_devices=gpus) == expected


@pytest.mark.parametrize(
    "batch_size,grad_accum,world,per_device,accum",
    [
        (8, 1, 1, 8, 1),
        (8, 1, 2, 4, 1),
        (8, 1, 8, 1, 1),
        (2, 4, 1, 2, 4),
        (2, 4, 2, 2, 2),
        (4, 2, 4, 2, 1),
        (3, 4, 2, 3, 2),
    ],
)
def test_batch_plan_keeps_the_global_batch(
    batch_size: int, grad_accum: int, world: int, per_device: int, accum: int
) -> None:
    plan = batch_plan(batch_size, grad_accum, world)
    assert (plan.per_device, plan.grad_accum) == (per_device, accum)
    assert plan.per_device * plan.grad_accum * world == batch_size * grad_accum == plan.global_batch
    assert plan.per_device <= batch_size  # the per-device cap (memory) holds


@pytest.mark.parametrize("batch_size,grad_accum,world", [(8, 1, 3), (3, 1, 2), (2, 3, 4)])
def test_batch_plan_refuses_an_uneven_split(batch_size: int, grad_accum: int, world: int) -> None:
    with pytest.raises(
        ValueError, match=r"sft.num_processes: the global batch .* cannot be split evenly"
    ):
        batch_plan(batch_size, grad_accum, world)


def test_uneven_split_fails_before_launching(tiny_model_dir: Path, tmp_path: Path) -> None:
    sft = SFTConfig(batch_size=8, num_processes="3")
    with pytest.raises(ValueError, match="cannot be split evenly over 3 processes"):
        train(make_rows(8), tiny_model_dir, sft, tmp_path, cuda_devices=0)
    assert not (tmp_path / "launch").exists()


@pytest.mark.parametrize("value", ["0", "-1", "many", "1.5"])
def test_bad_process_count(value) -> None:
    with pytest.raises(ValueError, match="auto or a count"):
        parse_num_processes(value)


def test_launch_command_goes_through_torchrun() -> None:
    cmd = launch_command(Path("/x/spec.json"), 4, port=12345)
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"]
    assert cmd[cmd.index("--num_processes") + 1] == "4" and "--multi_gpu" in cmd
    assert "--cpu" not in cmd  # --cpu would start a single process (accelerate's simple launcher)
    assert cmd[-3:] == ["-m", "xlexp.sft.launch", "/x/spec.json"]


def test_more_processes_than_gpus_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    sft = SFTConfig(batch_size=4, num_processes="4")
    with pytest.raises(ValueError, match="sft.num_processes: 4 processes but only 2 GPUs"):
        train(make_rows(8), tiny_model_dir, sft, tmp_path, cuda_devices=2)


def test_one_process_trains_in_process(tiny_model_dir: Path, tmp_path: Path) -> None:
    sft = SFTConfig(batch_size=4, save_steps=1000, num_processes="auto")
    metrics = train(make_rows(8), tiny_model_dir, sft, tmp_path, cuda_devices=0)
    assert metrics["world_size"] == 1 and metrics["steps"] == 2
    assert not (tmp_path / "launch").exists()  # no accelerate launch for one process
    assert not inside_distributed_launch()


@pytest.mark.slow
def test_two_cpu_processes_train_with_ddp_and_the_adapter_reloads(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wandb
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_DISABLED", raising=False)
    rows = make_rows(8)
    sft = SFTConfig(batch_size=4, lr=1e-2, save_steps=1, num_processes="2")
    out = tmp_path / "run"
    parent = wandb.init(project="xlexp-test", group="grid", dir=str(tmp_path), mode="offline")
    try:
        metrics = train(rows, tiny_model_dir, sft, out, cuda_devices=0, report_to="wandb")
    finally:
        parent.finish()
    log = (out / "launch" / "launch.log").read_text()
    assert metrics["world_size"] == 2, log[-3000:]
    assert metrics["steps"] == 2  # 8 rows / global batch 4 (2 per rank x 2 ranks)
    assert (metrics["global_batch"], metrics["per_device_batch"], metrics["grad_accum"]) == (
        4,
        2,
        1,
    )
    assert metrics["train_rows"] == 8 and metrics["tokens_seen"] > 0
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert log.count("'loss':") == 2  # rank 0 alone logs, once per step
    # Rank 0 logged to a W&B run of its own beside the parent's, in the same directory.
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 2
    blobs = [b"".join(p.read_bytes() for p in run.rglob("*") if p.is_file()) for run in runs]
    trained = [blob for blob in blobs if b"train/loss" in blob]
    assert len(trained) == 1 and b"grid" in trained[0]  # in the parent's group

    tok = AutoTokenizer.from_pretrained(out / "adapter")
    ids = tok.apply_chat_template(rows[0]["messages"], return_tensors="pt", return_dict=False)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with torch.no_grad():
        plain = base(input_ids=ids).logits
        tuned = PeftModel.from_pretrained(base, out / "adapter").eval()(input_ids=ids).logits
    assert torch.isfinite(tuned).all()
    assert (tuned - plain).abs().max() > 1e-4  # the DDP-trained LoRA weights were saved and load

    # Finished: a second call returns the metrics without launching again.
    (out / "launch" / "launch.log").unlink()
    assert train(rows, tiny_model_dir, sft, out, cuda_devices=0) == metrics
    assert not (out / "launch" / "launch.log").exists()


@pytest.mark.slow  # DDP: two processes: the slow lane
def test_one_and_two_processes_take_the_same_optimiser_steps(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Global batch 4 (batch_size 2 x grad_accum 2): one process accumulates 2 micro-batches of 2,
    two processes take 2 each. Same steps, same examples (tokens) in each step, same losses and
    the same trained weights, so one adapter key serves both."""
    from safetensors.torch import load_file

    rows = make_rows(12)
    runs = {}
    for n in ("1", "2"):
        # dropout 0: LoRA dropout draws differ per rank and would blur the comparison.
        sft = SFTConfig(
            batch_size=2, grad_accum=2, dropout=0.0, lr=1e-2, save_steps=1000, num_processes=n
        )
        runs[n] = train(rows, tiny_model_dir, sft, tmp_path / n, cuda_devices=0)
    one, two = runs["1"], runs["2"]
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert (one["per_device_batch"], one["grad_accum"]) == (2, 2)
    assert (two["per_device_batch"], two["grad_accum"]) == (2, 1)
    assert one["global_batch"] == two["global_batch"] == 4
    assert one["steps"] == two["steps"] == 3  # 12 rows / 4
    # Cumulative non-padding tokens after each step: the same examples went into each step.
    seen = {n: [h["num_input_tokens_seen"] for h in runs[n]["loss_history"]] for n in runs}
    assert seen["1"] == seen["2"] and len(set(seen["1"])) == 3
    losses = {n: [h["loss"] for h in runs[n]["loss_history"]] for n in runs}
    assert losses["1"] == pytest.approx(losses["2"], rel=1e-3)
    weights = {
        n: load_file(str(tmp_path / n / "adapter" / "adapter_model.safetensors")) for n in runs
    }
    assert weights["1"].keys() == weights["2"].keys()
    for name, w in weights["1"].items():
        assert torch.allclose(w, weights["2"][name], atol=1e-5), name

"""Multi-process SFT through `accelerate launch` (xlexp.sft.launch): a real 2-process gloo DDP run
of the tiny model on CPU whose adapter reloads, and the in-process path for one process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_sft import make_rows

from xlexp.config import SFTConfig
from xlexp.sft.launch import (
    inside_distributed_launch,
    launch_command,
    parse_num_processes,
    process_count,
    train,
)


@pytest.mark.parametrize("value,gpus,expected", [("auto", 0, 1), ("auto", 1, 1), ("auto", 4, 4), ("2", 0, 2), (3, 8, 3)])
def test_process_count(value, gpus: int, expected: int) -> None:
    assert process_count(value, cuda_devices=gpus) == expected


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
    sft = SFTConfig(batch_size=2, lr=1e-2, save_steps=1, num_processes="2")
    out = tmp_path / "run"
    parent = wandb.init(project="xlexp-test", group="grid", dir=str(tmp_path), mode="offline")
    try:
        metrics = train(rows, tiny_model_dir, sft, out, cuda_devices=0, report_to="wandb")
    finally:
        parent.finish()
    log = (out / "launch" / "launch.log").read_text()
    assert metrics["world_size"] == 2, log[-3000:]
    assert metrics["steps"] == 2  # 8 rows / (2 per rank x 2 ranks): the ranks split the data
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

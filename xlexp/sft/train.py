"""LoRA SFT with TRL's SFTTrainer (paper section 5), resumable from its own checkpoints.

Layout of `out_dir`:
  checkpoints/checkpoint-N/  Trainer checkpoints every `save_steps` (last 2 kept); a rerun resumes
  adapter/                   the final PEFT adapter (adapter_config.json, adapter_model.safetensors)
                             plus the tokenizer, renamed into place when complete
  trainer_state.json         the final Trainer state (log history, global step)
  metrics.json               loss history, steps, tokens, seconds; written last (= done)

The same code runs on CPU (fp32) and on CUDA (bf16); under `accelerate launch` every rank calls
`train_lora` and only rank 0 writes the adapter and metrics.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from xlexp.sft.batch import BatchPlan, batch_plan
from xlexp.sft.data import to_prompt_completion

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_LOGGED = (
    "step",
    "loss",
    "learning_rate",
    "grad_norm",
    "mean_token_accuracy",
    "num_input_tokens_seen",
)


def use_bf16(value: Any) -> bool:
    """`auto`: bf16 where a CUDA GPU supports it, fp32 elsewhere (CPU)."""
    text = str(value).strip().lower()
    if text == "auto":
        import torch

        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if text in ("true", "1", "yes", "bf16"):
        return True
    if text in ("false", "0", "no", "fp32", "none"):
        return False
    raise ValueError(f"sft.bf16: must be auto, true or false, not {value!r}")


def last_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest complete checkpoint; Trainer writes trainer_state.json last, so a checkpoint
    without it was cut off mid-save and is removed."""
    if not checkpoint_dir.is_dir():
        return None
    found = []
    for path in checkpoint_dir.iterdir():
        m = _CHECKPOINT.match(path.name)
        if m and path.is_dir():
            if (path / "trainer_state.json").exists():
                found.append((int(m.group(1)), path))
            else:
                shutil.rmtree(path, ignore_errors=True)  # ignore_errors: other ranks race on it
    return max(found)[1] if found else None


def build_trainer(
    rows: list[dict],
    model_dir: str | Path,
    sft: Any,
    out_dir: Path,
    seed: int = 1,
    overrides: dict[str, Any] | None = None,
    chat_template: str | None = None,
    report_to: str = "none",
):
    """An `SFTTrainer` for LoRA on `rows` (chat `messages`, assistant last); loss on the
    assistant completion only. `overrides` go to `trl.SFTConfig` (e.g. padding_free, packing).
    `report_to="wandb"` logs the training metrics (train/loss, learning rate, ...) to W&B: into
    the active run when there is one (the run's tracker), else a run of its own."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    bf16 = use_bf16(sft.bf16)
    cuda = torch.cuda.is_available()
    plan = rank_batch_plan(sft)
    warmup = float(sft.warmup_ratio)
    if not 0.0 <= warmup < 1.0:
        # transformers 5 reads a warmup_steps below 1 as a fraction of the steps, 1 and up as steps.
        raise ValueError(f"sft.warmup_ratio: {warmup} is not a fraction in [0, 1)")
    kwargs: dict[str, Any] = dict(
        output_dir=str(Path(out_dir) / "checkpoints"),
        num_train_epochs=float(sft.epochs),
        learning_rate=float(sft.lr),
        lr_scheduler_type=str(sft.scheduler),
        # transformers 5 dropped warmup_ratio; a float warmup_steps below 1 is that ratio.
        warmup_steps=warmup,
        # The global batch is the same on any process count (xlexp.sft.batch).
        per_device_train_batch_size=plan.per_device,
        gradient_accumulation_steps=plan.grad_accum,
        # The loss of a step is the mean over every completion token of the global batch, not a
        # mean of per-device means: the same gradient on 1 and on N processes.
        average_tokens_across_devices=True,
        max_length=int(sft.max_seq_len),
        # Prompt-completion data: TRL masks the prompt (labels -100) only with this set (None would
        # also pick it from the format; explicit so a format change cannot silently train on
        # prompts).
        completion_only_loss=True,
        bf16=bf16,
        fp16=False,
        # TRL defaults to checkpointing; it saves GPU memory but only costs time on CPU.
        gradient_checkpointing=cuda,
        save_strategy="steps",
        save_steps=int(sft.save_steps),
        save_total_limit=2,
        logging_strategy="steps",
        logging_steps=1,
        eval_strategy="no",
        report_to=report_to,
        push_to_hub=False,
        seed=seed,
        data_seed=seed,
        dataloader_num_workers=0,
        dataloader_pin_memory=cuda,
        dataset_num_proc=None,
        include_num_input_tokens_seen="non_padding",
    )
    args = SFTConfig(**{**kwargs, **(overrides or {})})
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if chat_template:  # base models ship none: the model card's (saved with the adapter)
        tokenizer.chat_template = chat_template
    if tokenizer.chat_template is None:
        raise ValueError(
            f"model.chat_template: the tokenizer in {model_dir} has no chat template; set one"
        )
    model = AutoModelForCausalLM.from_pretrained(
        str(model_dir), dtype=torch.bfloat16 if bf16 else torch.float32
    )
    lora = LoraConfig(
        task_type="CAUSAL_LM",
        r=int(sft.r),
        lora_alpha=int(sft.alpha),
        lora_dropout=float(sft.dropout),
        target_modules=list(sft.target_modules),
    )
    dataset = Dataset.from_list(to_prompt_completion(rows))
    return SFTTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=lora
    )


def rank_batch_plan(sft: Any) -> BatchPlan:
    """The batch split for this process's world (torchrun sets WORLD_SIZE in every rank)."""
    return batch_plan(sft.batch_size, sft.grad_accum, int(os.environ.get("WORLD_SIZE", "1")))


def _loss_tokens(dataset) -> int:
    return sum(sum(1 for x in labels if x != -100) for labels in dataset["labels"])


def train_lora(
    rows: list[dict],
    model_dir: str | Path,
    sft: Any,
    out_dir: Path,
    seed: int = 1,
    chat_template: str | None = None,
    report_to: str = "none",
) -> dict:
    """Train a LoRA adapter into `out_dir/adapter` and return its metrics; resumes from
    `out_dir/checkpoints` if a run was cut off; a finished `out_dir` (metrics.json) is returned."""
    out_dir = Path(out_dir)
    metrics_path = out_dir / "metrics.json"
    if metrics_path.exists() and (out_dir / "adapter" / "adapter_config.json").exists():
        return json.loads(metrics_path.read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    trainer = build_trainer(
        rows, model_dir, sft, out_dir, seed=seed, chat_template=chat_template, report_to=report_to
    )
    return fit(trainer, out_dir)


def fit(trainer, out_dir: Path) -> dict:
    """Train (resuming from the newest complete checkpoint), save the adapter, write metrics."""
    out_dir = Path(out_dir)
    metrics_path, adapter_dir = out_dir / "metrics.json", out_dir / "adapter"
    resume = last_checkpoint(out_dir / "checkpoints")
    start_step, start_tokens = 0, 0
    if resume is not None:
        state = json.loads((resume / "trainer_state.json").read_text())
        start_step, start_tokens = state["global_step"], state.get("num_input_tokens_seen", 0)

    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.perf_counter() - t0

    state = trainer.state
    history = state.log_history
    tokens = int(state.num_input_tokens_seen)
    metrics = {
        # Rows truncation left without completion tokens are dropped by TRL.
        "train_rows": len(trainer.train_dataset),
        "steps": state.global_step,
        "epochs": state.epoch,
        "resumed_from_step": start_step,
        "train_loss": next((h["train_loss"] for h in reversed(history) if "train_loss" in h), None),
        "first_loss": next((h["loss"] for h in history if "loss" in h), None),
        "last_loss": next((h["loss"] for h in reversed(history) if "loss" in h), None),
        "loss_history": [{k: h[k] for k in _LOGGED if k in h} for h in history if "loss" in h],
        "tokens_seen": tokens,  # prompt + completion tokens, padding excluded, all runs
        "loss_tokens_per_epoch": _loss_tokens(trainer.train_dataset),
        "seconds": seconds,  # this run only (a resumed run counts from the resume)
        "train_tokens_per_s": (tokens - start_tokens) / seconds if seconds > 0 else None,
        "bf16": bool(trainer.args.bf16),
        "world_size": trainer.args.world_size,
        "global_batch": trainer.args.per_device_train_batch_size
        * trainer.args.gradient_accumulation_steps
        * trainer.args.world_size,
        "per_device_batch": trainer.args.per_device_train_batch_size,
        "grad_accum": trainer.args.gradient_accumulation_steps,
    }
    # Build the adapter beside its final name and rename, so `adapter/` is never half-written.
    # save_model calls the PEFT model's save_pretrained (and the tokenizer's) on rank 0 only; every
    # rank must call it so sharded (FSDP/DeepSpeed) weights can be gathered.
    tmp = out_dir / ".adapter.tmp"
    if trainer.is_world_process_zero():
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))
    if trainer.is_world_process_zero():
        (tmp / "training_args.bin").unlink(missing_ok=True)
        shutil.rmtree(adapter_dir, ignore_errors=True)
        tmp.rename(adapter_dir)
        # The final trainer state (log history, steps, seen tokens): checkpoints, which also
        # hold it, are removed once the adapter is in the store.
        trainer.state.save_to_json(str(out_dir / "trainer_state.json"))
        tmp_metrics = out_dir / ".metrics.json.tmp"
        tmp_metrics.write_text(json.dumps(metrics, indent=2))
        tmp_metrics.replace(metrics_path)
    trainer.accelerator.wait_for_everyone()
    return metrics

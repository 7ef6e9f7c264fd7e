"""The SFT grid's bookkeeping: the adapter's store key (base model, data artifact, data_size,
selection, hyperparameters; nothing else), a rerun reuses a finished adapter, and training
metrics go to W&B when the logger is wandb (offline here) and nowhere otherwise."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from test_sft import make_rows

from xlexp import track
from xlexp.config import Config, LLMConfig, SFTConfig, register
from xlexp.sft import build_trainer, train_lora
from xlexp.sft.stage import report_to, run_sft, sft_key
from xlexp.sft.train import use_bf16
from xlexp.store import Artifact, Store, write_jsonl

CONF = str(Path(__file__).resolve().parents[1] / "conf")
register()


def make_cfg(model_dir: Path, tmp_path: Path):
    card = LLMConfig(name="tiny", backend="hf", model=str(model_dir))
    cfg = OmegaConf.structured(Config(teacher=card, model=card, judge=card, reference=card))
    cfg.store_dir = str(tmp_path / "store")
    cfg.data_size = "4"
    cfg.sft.batch_size, cfg.sft.max_seq_len, cfg.sft.save_steps = 2, 256, 1000
    return cfg


def make_dataset(store: Store, rows: list[dict], name: str = "a") -> Artifact:
    def produce(work: Path, parts) -> dict:
        write_jsonl(work / "dataset.jsonl", rows)
        return {"rows": len(rows)}

    return store.build("select", store.key("select", {"test": name}), produce)[0]


# Every input the adapter depends on; each must move the key.
KEYED = [
    ("model.model", "other/model"),
    ("model.revision", "abc123"),
    ("model.dtype", "bfloat16"),
    ("model.chat_template", "{{ messages }}"),
    ("data_size", "2"),
    ("sft.subset", "random"),
    ("generate.selection", "random"),  # the random-selection ablation samples randomly too
    ("seed", 2),
    ("sft.r", 16),
    ("sft.alpha", 32),
    ("sft.dropout", 0.1),
    ("sft.target_modules", ["q_proj", "k_proj", "v_proj"]),
    ("sft.epochs", 2.0),
    ("sft.lr", 2e-4),
    ("sft.scheduler", "linear"),
    ("sft.warmup_ratio", 0.1),
    ("sft.batch_size", 4),
    ("sft.grad_accum", 2),
    ("sft.max_seq_len", 512),
    ("sft.bf16", "true"),
]
# What does not change the adapter: checkpoint cadence, process count, eval-time sampling,
# generation batch size, the logger, and the source config (the data artifact key covers it).
UNKEYED = [
    ("sft.save_steps", 7),
    ("sft.num_processes", "4"),
    ("model.sampling.temperature", 0.7),
    ("model.sampling.max_tokens", 2048),
    ("model.batch_size", 32),
    ("logger.kind", "wandb"),
    ("sft.external.dataset", "org/other"),
]


def test_sft_key_moves_with_every_input_and_only_those(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    cfg = make_cfg(tiny_model_dir, tmp_path)
    store = Store(cfg.store_dir)
    dataset = make_dataset(store, make_rows(8))
    base = sft_key(cfg, store, dataset)
    keys = {base}
    for path, value in KEYED:
        changed = copy.deepcopy(cfg)
        OmegaConf.update(changed, path, value, merge=False)
        key = sft_key(changed, store, dataset)
        assert key != base, path
        keys.add(key)
    assert len(keys) == len(KEYED) + 1  # every change gives a key of its own
    other_data = make_dataset(store, make_rows(9), name="b")
    assert sft_key(cfg, store, other_data) != base  # the data artifact
    for path, value in UNKEYED:
        changed = copy.deepcopy(cfg)
        OmegaConf.update(changed, path, value, merge=False)
        assert sft_key(changed, store, dataset) == base, path


def test_a_finished_adapter_is_never_retrained(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = make_cfg(tiny_model_dir, tmp_path)
    store = Store(cfg.store_dir)
    dataset = make_dataset(store, make_rows(8))
    first = run_sft(cfg, store, dataset)
    weights = first.path / "adapter" / "adapter_model.safetensors"
    stamp, done = weights.stat().st_mtime_ns, (first.path / "DONE").read_text()
    assert first.meta["counts"]["rows"] == 4 and first.meta["counts"]["steps"] == 2
    assert not (first.path / "checkpoints").exists() and not (first.path / "launch").exists()
    state = json.loads((first.path / "trainer_state.json").read_text())  # kept beside the adapter
    assert state["global_step"] == 2 and [
        h["step"] for h in state["log_history"] if "loss" in h
    ] == [1, 2]
    # A rerun, and a run differing only in what the adapter does not depend on, reuse it.
    for path, value in [(None, None), ("sft.save_steps", 3), ("model.sampling.temperature", 0.7)]:
        again_cfg = copy.deepcopy(cfg)
        if path:
            OmegaConf.update(again_cfg, path, value, merge=False)
        again = run_sft(again_cfg, store, dataset)
        assert again.key == first.key and again.path == first.path
        assert weights.stat().st_mtime_ns == stamp and (again.path / "DONE").read_text() == done
    assert len([p for p in (store.root / "sft").iterdir() if not p.name.startswith(".")]) == 1


# ---------------------------------------------------------------- W&B


def test_report_to_follows_the_logger(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers.integrations import WandbCallback

    cfg = make_cfg(tiny_model_dir, tmp_path)
    assert report_to(cfg) == "none"
    cfg.logger.kind = "wandb"
    assert report_to(cfg) == "wandb"

    def callbacks(where: str) -> set[type]:
        trainer = build_trainer(
            make_rows(2), tiny_model_dir, SFTConfig(batch_size=2), tmp_path / where, report_to=where
        )
        return {type(cb) for cb in trainer.callback_handler.callbacks}

    assert WandbCallback in callbacks("wandb")
    assert WandbCallback not in callbacks("none")


def test_training_metrics_land_in_the_offline_wandb_run(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_DISABLED", raising=False)
    cfg = make_cfg(tiny_model_dir, tmp_path)
    cfg.logger.kind = "wandb"
    run_dir = tmp_path / "run"
    tracker = track.start(cfg, run_dir)
    sft = SFTConfig(batch_size=2, save_steps=1000)
    metrics = train_lora(
        make_rows(4), tiny_model_dir, sft, tmp_path / "sft", report_to=report_to(cfg)
    )
    tracker.finish({"seconds": 1.0})
    import wandb

    wandb.teardown()  # waits for wandb-core to write everything out (finish alone may return first)
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1  # the trainer logged into the pipeline's run, not a run of its own
    blob = b"".join(p.read_bytes() for p in runs[0].rglob("*") if p.is_file())
    for key in (b"train/loss", b"train/learning_rate", b"train/grad_norm", b"train/global_step"):
        assert key in blob, key
    assert metrics["steps"] == 2


# ---------------------------------------------------------------- paper defaults reach TRL/PEFT


def test_paper_sft_defaults_reach_the_trainer(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Paper section 5 through conf/sft/lora.yaml into the SFTTrainer and the LoRA model; the base
    model's card (EuroLLM-9B ships no chat template) supplies the template."""
    from transformers import AutoTokenizer

    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("config", overrides=["profile=paper"])
    assert cfg.model.model == "utter-project/EuroLLM-9B" and cfg.model.chat_template
    bare = tmp_path / "bare"  # the tiny model without a template, like a base model
    shutil.copytree(tiny_model_dir, bare)
    tok = AutoTokenizer.from_pretrained(bare)
    tok.chat_template = None
    tok.save_pretrained(bare)
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    trainer = build_trainer(
        make_rows(8),
        bare,
        cfg.sft,
        tmp_path / "t",
        seed=cfg.seed,
        chat_template=cfg.model.chat_template,
    )
    args = trainer.args
    # transformers 5: the warmup ratio travels as a float warmup_steps below 1.
    assert (
        args.num_train_epochs,
        args.learning_rate,
        args.lr_scheduler_type,
        args.warmup_steps,
    ) == (1.0, 1e-4, "cosine", 0.03)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps, args.seed) == (
        8,
        1,
        1,
    )
    assert args.bf16 is use_bf16("auto") and not args.fp16  # bf16 on a CUDA GPU, fp32 on CPU
    assert args.completion_only_loss is True
    lora = trainer.model.peft_config["default"]
    assert lora.r == 8 and set(lora.target_modules) == {"q_proj", "v_proj"}
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert {n.split(".")[-4] for n in trainable} == {"q_proj", "v_proj"}
    assert trainer.processing_class.chat_template == cfg.model.chat_template

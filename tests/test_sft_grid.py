"""The SFT grid's bookkeeping: the adapter's store key (base model, data artifact, data_size,
selection, hyperparameters; nothing else), a rerun reuses a finished adapter, and training
metrics go to W&B when the logger is wandb (offline here) and nowhere otherwise."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from test_sft import make_rows

from xlexp import track
from xlexp.config import Config, LLMConfig, SFTConfig
from xlexp.pipeline import report_to, run_sft, sft_key
from xlexp.sft import build_trainer, train_lora
from xlexp.store import Artifact, Store, write_jsonl


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


def test_sft_key_moves_with_every_input_and_only_those(tiny_model_dir: Path, tmp_path: Path) -> None:
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
        trainer = build_trainer(make_rows(2), tiny_model_dir, SFTConfig(batch_size=2), tmp_path / where, report_to=where)
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
    metrics = train_lora(make_rows(4), tiny_model_dir, sft, tmp_path / "sft", report_to=report_to(cfg))
    tracker.finish({"seconds": 1.0})
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1  # the trainer logged into the pipeline's run, not a run of its own
    blob = b"".join(p.read_bytes() for p in runs[0].rglob("*") if p.is_file())
    for key in (b"train/loss", b"train/learning_rate", b"train/grad_norm", b"train/global_step"):
        assert key in blob, key
    assert metrics["steps"] == 2

"""W&B offline run: config and metrics logged, secrets nowhere in the run files or Hydra outputs."""

from pathlib import Path

from omegaconf import OmegaConf

from xlexp import track
from xlexp.config import Config, LLMConfig

SECRET = "sk-live-THISMUSTNOTLEAK-1234567890"


def test_offline_run_files_have_metrics_and_no_secret(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_DISABLED", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    card = LLMConfig(name="judge", backend="openai", model="gpt-4o", api_key_env="OPENAI_API_KEY", base_url=f"http://x/{SECRET}")
    cfg = OmegaConf.structured(Config(teacher=card, model=card, judge=card, reference=card))
    cfg.logger.kind = "wandb"
    tracker = track.start(cfg, tmp_path)
    tracker.log_metrics({"deu": {"win_rate": 42.5, "n": 3}, "avg": {"win_rate": 42.5}})
    tracker.finish({"seconds": 1.0, "backend_calls": 7, "note": SECRET, "cost": {"total": {"usd": 0.012345}}})
    files = [p for p in Path(tmp_path, "wandb").rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files), "an offline run was written"
    blob = b"".join(p.read_bytes() for p in files)
    assert b"eval/deu/win_rate" in blob and b"eval/avg/win_rate" in blob
    assert b"0.012345" in blob  # the cost ledger reaches the run summary
    assert b"OPENAI_API_KEY" in blob  # the env var's name is logged, its value never
    assert SECRET.encode() not in blob


def test_redact_masks_keys_and_values():
    out = track.redact({"api_key": "abc", "nested": [{"token": "t", "url": f"http://h/{SECRET}"}]}, [SECRET])
    assert out == {"api_key": "***", "nested": [{"token": "***", "url": "http://h/***"}]}

"""W&B offline run: config and metrics logged, secrets nowhere in the run files or Hydra outputs."""

import hashlib
import json
from pathlib import Path

import pytest
import wandb_offline
from omegaconf import DictConfig, OmegaConf

from xlexp import track
from xlexp.config import Config, LLMConfig
from xlexp.stage import STAGES
from xlexp.store import Artifact, Store

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
    tracker.finish(
        {"seconds": 1.0, "backend_calls": 7, "note": SECRET, "cost": {"total": {"usd": 0.012345}}}
    )
    wandb_offline.read(tmp_path)  # waits until wandb-core has written the whole run
    files = [p for p in Path(tmp_path, "wandb").rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files), "an offline run was written"
    blob = b"".join(p.read_bytes() for p in files)
    assert b"eval/deu/win_rate" in blob and b"eval/avg/win_rate" in blob
    assert b"0.012345" in blob  # the cost ledger reaches the run summary
    assert b"OPENAI_API_KEY" in blob  # the env var's name is logged, its value never
    assert SECRET.encode() not in blob


def test_redact_masks_keys_and_values():
    out = track.redact(
        {"api_key": "abc", "nested": [{"token": "t", "url": f"http://h/{SECRET}"}]}, [SECRET]
    )
    assert out == {"api_key": "***", "nested": [{"token": "***", "url": "http://h/***"}]}


# -------------------------------------------------------- run files read back with wandb's reader


def _artifact(store: Store, stage: str, files: dict[str, str | bytes]) -> Artifact:
    """A finished store artifact holding `files` (relative path -> content)."""

    def produce(work: Path, parts) -> dict:
        for name, content in files.items():
            path = work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return {"rows": 2, "rejects": 1, "reject_reasons": {"no question": 1}}

    digests = {
        n: hashlib.sha256(c if isinstance(c, bytes) else c.encode()).hexdigest()
        for n, c in files.items()
    }
    return store.build(stage, store.key(stage, digests), produce)[0]


def _eval_artifacts(store: Store) -> dict[str, Artifact]:
    prompts = [
        {"id": 1, "instruction": "Why is the sky blue? Answer in German."},
        {"id": 2, "instruction": "Name a bee."},
    ]
    system = [
        {**p, "output": f"system says {p['id']} {SECRET if p['id'] == 2 else ''}", "lang": "deu"}
        for p in prompts
    ]
    reference = [{**p, "output": f"reference says {p['id']}", "lang": "deu"} for p in prompts]
    judged = [
        {"id": 1, "lang": "deu", "preference": 0.75, "verdicts": [], "malformed": []},
        {
            "id": 2,
            "lang": "deu",
            "preference": None,
            "verdicts": [],
            "malformed": [{"order": "sr", "reason": "no label in verdict"}],
        },
    ]
    return {
        "respond": _artifact(store, "respond", {"deu.json": json.dumps(system)}),
        "reference": _artifact(store, "respond", {"deu.json": json.dumps(reference)}),
        "judge": _artifact(
            store,
            "judge",
            {"deu.jsonl": "\n".join(json.dumps(r) for r in judged), "metrics.json": "{}"},
        ),
    }


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_DISABLED", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv(
        "WANDB_DATA_DIR", str(tmp_path / "wandb-data")
    )  # artifact staging, not ~/.local
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))


def _cfg(**logger) -> DictConfig:
    card = LLMConfig(name="judge", backend="openai", model="gpt-4o", api_key_env="OPENAI_API_KEY")
    cfg = OmegaConf.structured(Config(teacher=card, model=card, judge=card, reference=card))
    cfg.logger.kind = "wandb"
    cfg.logger.update(logger)
    return cfg


def test_offline_run_has_group_job_type_artifacts_and_sample_table(tmp_path, wandb_env):
    store = Store(tmp_path / "store")
    dataset = _artifact(
        store, "select", {"dataset.jsonl": '{"messages": []}\n' * 150, "stats.json": "{}"}
    )
    adapter = _artifact(
        store,
        "sft",
        {"adapter/adapter_config.json": "{}", "adapter/adapter_model.safetensors": b"\0" * 64},
    )
    ev = _eval_artifacts(store)
    # The dataset (2.5 kB) is over copy_max_mb: a reference; the adapter (64 B and its DONE record,
    # under 1 kB) is under it: copied.
    cfg = _cfg(group="scaling", samples=5, copy_max_mb=0.002, tags=["t1"])
    cfg.stages = ["generate", "sft", "evaluate"]
    tracker = track.start(cfg, tmp_path / "run")
    tracker.log_stage(STAGES.get("generate"), {"select": dataset})
    tracker.log_stage(STAGES.get("sft"), {"adapter": adapter})
    tracker.log_metrics(
        {"deu": {"win_rate": 75.0, "n": 1, "lc_win_rate": None}, "avg": {"win_rate": 75.0}},
        "alpaca_eval",
    )
    tracker.log_stage(STAGES.get("evaluate"), ev)
    tracker.log_samples(
        track.sample_rows(ev["respond"], ev["reference"], ev["judge"], cfg.logger.samples)
    )
    tracker.finish({"seconds": 1.0, "backend_calls": 3})

    run = wandb_offline.read(tmp_path / "run")
    assert run.run["runGroup"] == "scaling" and run.run["jobType"] == "generate,sft,evaluate"
    assert {"t1", "judge:alpaca_eval"} <= set(run.run["tags"])
    # The judge protocol is part of every metric's key: two protocols never share a chart.
    assert {
        "eval/alpaca_eval/deu/win_rate",
        "eval/alpaca_eval/avg/win_rate",
        "generate/select/rows",
        "sft/adapter/rejects",
    } <= run.history_keys()
    assert (
        "eval/alpaca_eval/deu/lc_win_rate" not in run.history_keys()
    )  # absent values are not logged
    assert "generate/select/reject_reasons/no question" in run.history_keys()
    assert run.summary["eval/alpaca_eval/deu/win_rate"] == 75.0
    assert (
        run.config["judge"]["api_key_env"] == "OPENAI_API_KEY"
        and run.config["logger"]["group"] == "scaling"
    )

    ds = run.artifact(f"dataset-{dataset.key}")
    assert ds["type"] == "dataset" and json.loads(ds["metadata"])["key"] == dataset.key
    refs = {c["path"]: c.get("ref") for c in ds["manifest"]["contents"]}
    assert refs["dataset.jsonl"] == dataset.file("dataset.jsonl").resolve().as_uri()
    assert all(ref and ref.startswith("file://") for ref in refs.values())  # nothing copied
    ad = run.artifact(f"adapter-{adapter.key}")
    contents = {c["path"]: c for c in ad["manifest"]["contents"]}
    assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors", "DONE"} == set(
        contents
    )
    assert not any("ref" in c for c in contents.values())  # small: copied into the artifact
    assert int(contents["adapter/adapter_model.safetensors"]["size"]) == 64

    table = run.table("eval/samples")
    assert table["columns"] == track.SAMPLE_COLUMNS
    rows = [dict(zip(table["columns"], r, strict=True)) for r in table["data"]]
    assert [(r["id"], r["lang"], r["preference"]) for r in rows] == [
        (1, "deu", 0.75),
        (2, "deu", None),
    ]
    assert (
        rows[0]["instruction"].startswith("Why is the sky blue")
        and rows[0]["reference_output"] == "reference says 1"
    )
    assert (
        rows[1]["malformed"] == "no label in verdict"
        and rows[1]["system_output"] == "system says 2 ***"
    )

    files = [p for p in (tmp_path / "run").rglob("*") if p.is_file()] + [
        p for p in (tmp_path / "wandb-data").rglob("*") if p.is_file()
    ]
    assert SECRET.encode() not in b"".join(p.read_bytes() for p in files)


def test_run_group_names_experiment_and_sweep():
    assert track.run_group("scaling", "other", None) == "scaling"
    assert track.run_group(None, "scaling", None) == "scaling"
    assert track.run_group(None, None, None) is None
    # Jobs of one sweep share a group; another sweep of the same experiment gets its own.
    a = track.run_group(None, "scaling", "outputs/multirun/2026-11-23/12-00-00")
    assert a == "scaling:2026-11-23/12-00-00"
    assert a != track.run_group(None, "scaling", "outputs/multirun/2026-11-23/13-00-00")


def test_logger_none_writes_no_wandb_files(tmp_path, wandb_env):
    cfg = _cfg()
    cfg.logger.kind = "none"
    tracker = track.start(cfg, tmp_path / "run")
    assert isinstance(tracker, track.NullTracker) and not isinstance(tracker, track.WandbTracker)
    store = Store(tmp_path / "store")
    tracker.log_stage(STAGES.get("evaluate"), _eval_artifacts(store))
    tracker.log_metrics({"deu": {"win_rate": 1.0}})
    tracker.finish({})
    assert not (tmp_path / "run").exists() and not (tmp_path / "wandb-data").exists()


def test_job_name_keeps_top_level_overrides_and_no_secret(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    overrides = [
        "+exp=scaling",
        "judge.base_url=http://h/v1",
        f"note={SECRET}",
        "data_size=2k",
        "hydra.verbose=true",
    ]
    assert track.job_name(3, overrides) == "3 +exp=scaling,note=***,data_size=2k"

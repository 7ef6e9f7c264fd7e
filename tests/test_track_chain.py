"""run() with W&B on: the evaluate stage through a real tiny model and a fake judge server logs
per-language metrics and the judged samples, writes labelled results.json the report reads, and
logs a one-line summary per stage."""

from __future__ import annotations

import logging

import pytest
import wandb_offline
from fakeserver import FakeOpenAI
from test_chain import Teacher, compose_cfg, overrides

from xlexp import report
from xlexp.__main__ import run

SECRET = "sk-live-THISMUSTNOTLEAK-0987654321"


def test_evaluate_with_wandb_logs_samples_and_feeds_the_report(tmp_path, tiny_model_dir, monkeypatch, caplog):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_DISABLED", raising=False)
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
    monkeypatch.setenv("FAKE_JUDGE_KEY", SECRET)
    with FakeOpenAI(Teacher()) as srv:
        args = overrides(srv.base_url, tiny_model_dir, tmp_path / "store", stages="[evaluate,report]")
        args += ["logger=wandb", "logger.group=tiny-eval", "logger.samples=2", "judge.api_key_env=FAKE_JUDGE_KEY"]
        with caplog.at_level(logging.INFO, logger="xlexp"):
            summary = run(compose_cfg(args), tmp_path / "run")

    line = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stage evaluate:")]
    assert len(line) == 1 and "calls" in line[0] and "$0.0000" in line[0], line
    # respond + reference: 3 prompts x 2 languages each; judge: both orders of 6 rows.
    assert "respond rows 6 | reference rows 6 | judge rows 6 |" in line[0]
    calls = sum(u["calls"] for u in summary["usage"].values())
    assert f"{calls} calls (0 cached)" in line[0]

    wb = wandb_offline.read(tmp_path / "run")
    assert wb.run["runGroup"] == "tiny-eval" and wb.run["jobType"] == "evaluate,report"
    assert {"eval/deu/win_rate", "eval/fra/win_rate", "eval/avg/win_rate", "eval/deu/lang_fidelity"} <= wb.history_keys()
    table = wb.table("eval/samples")
    rows = [dict(zip(table["columns"], r, strict=True)) for r in table["data"]]
    assert [r["lang"] for r in rows] == ["deu", "deu", "fra", "fra"]  # logger.samples=2 per language
    assert all(r["preference"] == pytest.approx(0.5) and r["instruction"] for r in rows)  # the judge always says B
    assert wb.config["judge"]["api_key_env"] == "FAKE_JUDGE_KEY"
    blob = b"".join(p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file())
    assert SECRET.encode() not in blob

    assert summary["system"]["model"] == "smollm2-135m" and summary["system"]["data_size"] is None
    assert summary["system"]["exp"] == "tiny-eval"
    rows = report.collect(tmp_path / "run")
    md = report.paper_table(rows)
    assert md.splitlines()[0] == "| Model | Avg | deu | fra |"
    assert md.splitlines()[2] == "| smollm2-135m | **50.00** | **50.00** | **50.00** |"

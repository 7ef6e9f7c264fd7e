"""run() with W&B on, the whole chain on a real tiny model and a fake teacher/judge server: the
offline run holds per-stage counts, per-language metrics, the judged samples, the dataset (a
copied) and the adapter (a file:// reference) as artifacts, and no secret; results.json carries
the labels the report reads; each stage logs a one-line summary."""

from __future__ import annotations

import logging

import pytest
import wandb_offline
from fakeserver import FakeOpenAI
from test_chain import Teacher, compose_cfg, overrides

from xlexp import report
from xlexp.__main__ import run

pytestmark = pytest.mark.slow  # whole runs: the slow lane

SECRET = "sk-live-THISMUSTNOTLEAK-0987654321"


def test_chain_with_wandb_logs_artifacts_samples_and_feeds_the_report(
    tmp_path, tiny_model_dir, monkeypatch, caplog
):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_DISABLED", raising=False)
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
    monkeypatch.setenv("FAKE_JUDGE_KEY", SECRET)
    with FakeOpenAI(Teacher()) as srv:
        args = overrides(srv.base_url, tiny_model_dir, tmp_path / "store")
        args += [
            "logger=wandb",
            "logger.group=tiny-eval",
            "logger.samples=2",
            "judge.api_key_env=FAKE_JUDGE_KEY",
        ]
        args += [
            "logger.copy_max_mb=0.02"
        ]  # the dataset (~7 kB) is copied, the adapter (~46 kB) referenced
        with caplog.at_level(logging.INFO, logger="xlexp"):
            summary = run(compose_cfg(args), tmp_path / "run")

    lines = {
        m.split(":")[0]: m
        for m in (r.getMessage() for r in caplog.records)
        if m.startswith("stage ")
    }
    assert set(lines) == {"stage generate", "stage sft", "stage evaluate"}
    assert "seed 8->8 | reverse 8->8 | refine 8->8 |" in lines["stage generate"]
    assert (
        "adapter rows 4 |" in lines["stage sft"]
        and "0 calls (0 cached), $0.0000" in lines["stage sft"]
    )
    # respond + reference: 3 prompts x 2 languages each; judge: 6 rows, both orders each.
    assert "respond rows 6 | reference rows 6 | judge rows 6 |" in lines["stage evaluate"]
    calls = [int(m.split(" calls")[0].rsplit(" ", 1)[1]) for m in lines.values()]
    assert sum(calls) == summary["backend_calls"]

    wb = wandb_offline.read(tmp_path / "run")
    assert wb.run["runGroup"] == "tiny-eval" and wb.run["jobType"] == "generate,sft,evaluate,report"
    assert {
        "eval/both_orders/deu/win_rate",
        "eval/both_orders/fra/win_rate",
        "eval/both_orders/avg/win_rate",
        "eval/both_orders/deu/n_undetermined",
    } <= wb.history_keys()
    # Fidelity is logged when the random tiny student wrote enough prose to identify, never as NaN.
    fidelity = summary["metrics"]["deu"]["lang_fidelity"]
    assert ("eval/both_orders/deu/lang_fidelity" in wb.history_keys()) == (fidelity is not None)
    assert {
        "generate/reverse/out",
        "generate/select/rows",
        "sft/adapter/rows",
        "evaluate/judge/malformed",
    } <= wb.history_keys()
    gen = summary["stages"]["generate"]
    dataset = wb.artifact(f"dataset-{gen['select']['key']}")
    copied = {c["path"]: c for c in dataset["manifest"]["contents"]}
    assert {"dataset.jsonl", "stats.json", "DONE"} == set(copied) and not any(
        "ref" in c for c in copied.values()
    )
    adapter = wb.artifact(f"adapter-{summary['stages']['sft']['adapter']['key']}")
    refs = {c["path"]: c.get("ref") for c in adapter["manifest"]["contents"]}
    sft_dir = tmp_path / "store" / "sft" / summary["stages"]["sft"]["adapter"]["key"]
    assert (
        refs["adapter/adapter_model.safetensors"]
        == (sft_dir / "adapter" / "adapter_model.safetensors").as_uri()
    )
    assert all(ref and ref.startswith("file://") for ref in refs.values())
    table = wb.table("eval/samples")
    rows = [dict(zip(table["columns"], r, strict=True)) for r in table["data"]]
    assert [r["lang"] for r in rows] == [
        "deu",
        "deu",
        "fra",
        "fra",
    ]  # logger.samples=2 per language
    assert all(
        r["preference"] == pytest.approx(0.5) and r["instruction"] for r in rows
    )  # the judge always says B
    assert wb.config["judge"]["api_key_env"] == "FAKE_JUDGE_KEY"
    blob = b"".join(p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file())
    assert SECRET.encode() not in blob

    assert summary["system"]["model"] == "smollm2-135m" and summary["system"]["data_size"] == 4
    assert summary["system"]["exp"] == "tiny-eval"
    rows = report.collect(tmp_path / "run")
    md = report.paper_table(rows)
    assert md.splitlines()[0] == "| Model | Avg | deu | fra |"
    assert (
        md.splitlines()[2] == "| smollm2-135m +4 instructions | **50.00** | **50.00** | **50.00** |"
    )

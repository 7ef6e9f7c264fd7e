"""Paper tables and the Fig. 2 plot from a store alone, or from a sweep dir's results.json files."""

from __future__ import annotations

import csv
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from xlexp import report
from xlexp.store import Store, write_json

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# (model, data_size, deu, zho): known win rates; avg = their mean.
SYSTEMS = [
    ("EuroLLM 9B", None, 9.96, 8.97),
    ("EuroLLM 9B", 32, 20.0, 18.5),
    ("EuroLLM 9B", 2000, 26.76, 21.24),
    ("Qwen 2.5 7B", None, 12.5, 34.29),
    ("Qwen 2.5 7B", 32, 30.0, 30.0),
]

EXPECTED = """### vs gpt-4o-mini, judged by gpt-4o on xl_alpacaeval

| Model | Avg | deu | zho |
|---|---:|---:|---:|
| EuroLLM 9B | 9.46 | 9.96 | 8.97 |
| +32 instructions | 19.25 | 20.00 | 18.50 |
| +2K instructions | 24.00 | 26.76 | 21.24 |
| Qwen 2.5 7B | 23.39 | 12.50 | **34.29** |
| +32 instructions | **30.00** | **30.00** | 30.00 |
"""


def metrics(deu: float, zho: float) -> dict:
    return {
        "deu": {"win_rate": deu, "n": 10},
        "zho": {"win_rate": zho, "n": 10},
        "avg": {"win_rate": (deu + zho) / 2, "n": 20},
    }


def labels(model: str, n: int | None, reference: str = "gpt-4o-mini") -> dict:
    return {
        "model": model,
        "data_size": n,
        "selection": "best_of_k" if n else None,
        "reference": reference,
        "judge": "gpt-4o",
        "benchmark": "xl_alpacaeval",
    }


def judge_artifact(
    store: Store, model: str, n: int | None, deu: float, zho: float, reference: str = "gpt-4o-mini"
) -> str:
    """The metrics of a judged system as run_metrics writes them: metrics.json + the judged
    system's labels and judge key in DONE. Returns the judge key."""
    judge_key = store.key("judge", {"model": model, "n": n, "reference": reference})
    metrics_artifact(store, judge_key, labels(model, n, reference), metrics(deu, zho))
    return judge_key


def metrics_artifact(store: Store, judge_key: str, system: dict, table: dict) -> None:
    def produce(work: Path, parts) -> dict:
        write_json(work / "metrics.json", table)
        return {"langs": 2}

    key = store.key("metrics", {"metrics": ["win_rate"]}, [judge_key])
    store.build("metrics", key, produce, info={"system": {**system, "judge_key": judge_key}})


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_store_alone_rebuilds_the_paper_table_csv_and_plot(tmp_path):
    store = Store(tmp_path / "store")
    for system in SYSTEMS:
        judge_artifact(store, *system)
    paths = report.build_report(tmp_path / "store", tmp_path / "out")

    md = paths["markdown"].read_text()
    assert EXPECTED in md
    with paths["csv"].open() as f:
        rows = list(csv.DictReader(f))
    assert [r["system"] for r in rows] == [
        "EuroLLM 9B",
        "EuroLLM 9B +32 instructions",
        "EuroLLM 9B +2K instructions",
        "Qwen 2.5 7B",
        "Qwen 2.5 7B +32 instructions",
    ]
    assert rows[2]["data_size"] == "2000" and float(rows[2]["avg"]) == pytest.approx(24.0)
    assert float(rows[3]["zho"]) == pytest.approx(34.29) and rows[0]["data_size"] == ""
    width, height = png_size(paths["scaling"])
    assert paths["scaling"].stat().st_size > 10_000 and (width, height) == (900, 600)
    assert "![" in md and "scaling.png" in md


def test_other_references_get_their_own_table(tmp_path):
    store = Store(tmp_path / "store")
    judge_artifact(store, "EuroLLM 9B", None, 10.0, 20.0)
    judge_artifact(store, "EuroLLM 9B", None, 50.0, 60.0, reference="gpt-4o")
    tables = report.group_tables(report.collect(tmp_path / "store"))
    assert list(tables) == [
        "vs gpt-4o, judged by gpt-4o on xl_alpacaeval",
        "vs gpt-4o-mini, judged by gpt-4o on xl_alpacaeval",
    ]
    # Alone in its table, each row is the best of every column.
    md = report.paper_table(tables["vs gpt-4o, judged by gpt-4o on xl_alpacaeval"])
    assert "| EuroLLM 9B | **55.00** | **50.00** | **60.00** |" in md


def test_sweep_dir_results_json_and_missing_cells(tmp_path):
    """A multirun dir: one results.json per job (written by the report stage) with labels +
    metrics."""
    sweep = tmp_path / "multirun" / "2026-01-01" / "12-00-00"
    jobs = [("EuroLLM 9B", 32, 20.0, 18.0), ("EuroLLM 9B", 256, 25.0, 22.0)]
    for i, (model, n, deu, zho) in enumerate(jobs):
        (sweep / str(i)).mkdir(parents=True)
        m = metrics(deu, zho)
        if n == 256:
            del m["zho"]  # a language this job did not evaluate: an empty cell, not a crash
            m["avg"]["win_rate"] = deu
        summary = {
            "metrics": m,
            "system": {**labels(model, n), "exp": "scaling", "judge_key": f"k{i}"},
        }
        write_json(sweep / str(i) / "results.json", summary)
    # A rerun of job 0 in the same dir tree finds the same judge artifact: one row, not two.
    (sweep / "rerun").mkdir()
    write_json(
        sweep / "rerun" / "results.json", json.loads((sweep / "0" / "results.json").read_text())
    )

    rows = report.collect(sweep)
    assert sorted(r.data_size for r in rows) == [32, 256]
    md = report.paper_table(
        report.group_tables(rows)["vs gpt-4o-mini, judged by gpt-4o on xl_alpacaeval"]
    )
    assert "| EuroLLM 9B +32 instructions | 19.00 | 20.00 | **18.00** |" in md
    assert "| +256 instructions | **25.00** | **25.00** | – |" in md

    # A second experiment with a naive-selection system: rows now say which experiment and
    # selection.
    (sweep / "other").mkdir()
    other = {
        **labels("EuroLLM 9B", 32),
        "selection": "naive",
        "exp": "selection",
        "judge_key": "k9",
    }
    write_json(sweep / "other" / "results.json", {"metrics": metrics(1.0, 2.0), "system": other})
    md = report.paper_table(
        report.group_tables(report.collect(sweep))[
            "vs gpt-4o-mini, judged by gpt-4o on xl_alpacaeval"
        ]
    )
    assert "| EuroLLM 9B +32 instructions (scaling) | 19.00 | 20.00 | **18.00** |" in md
    assert "| +32 instructions (naive, selection) | 1.50 | 1.00 | 2.00 |" in md


def test_cli_writes_report_and_fails_clearly_on_an_empty_dir(tmp_path):
    store = Store(tmp_path / "store")
    for system in SYSTEMS[:3]:
        judge_artifact(store, *system)
    env_cmd = [sys.executable, "-m", "xlexp.report"]
    done = subprocess.run(
        [*env_cmd, str(tmp_path / "store")], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "| +2K instructions | **24.00** | **26.76** | **21.24** |" in done.stdout
    out = tmp_path / "store" / "report"
    assert (
        (out / "tables.md").exists()
        and (out / "tables.csv").exists()
        and png_size(out / "scaling.png")
    )

    (tmp_path / "empty").mkdir()
    bad = subprocess.run(
        [*env_cmd, str(tmp_path / "empty")], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert (
        bad.returncode == 2
        and "nothing to report" in bad.stderr
        and str(tmp_path / "empty") in bad.stderr
    )


def test_plot_one_line_per_language(tmp_path):
    rows = [
        report.system_from_labels(labels("EuroLLM 9B", n), metrics(d, z))
        for _, n, d, z in SYSTEMS[:3]
    ]
    assert report.scaling_plot(rows, tmp_path / "langs.png", lines="lang")
    assert png_size(tmp_path / "langs.png")
    # Only untuned models: there is no scaling curve to draw.
    assert not report.scaling_plot(rows[:1], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_sweep_callback_writes_the_report_into_the_sweep_dir(tmp_path):
    from omegaconf import OmegaConf

    sweep = tmp_path / "sweep"
    (sweep / "0").mkdir(parents=True)
    write_json(
        sweep / "0" / "results.json", {"metrics": metrics(1.0, 2.0), "system": labels("m", 8)}
    )
    report.SweepReport().on_multirun_end(
        OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    )
    assert (
        "| m +8 instructions | **1.50** | **1.00** | **2.00** |"
        in (sweep / "report" / "tables.md").read_text()
    )


def test_same_label_twice_is_told_apart_by_judge_key(tmp_path):
    store = Store(tmp_path / "store")
    a = judge_artifact(store, "m", None, 10.0, 20.0)
    b = store.key("judge", "another benchmark subset")
    metrics_artifact(store, b, labels("m", None), metrics(5.0, 5.0))
    md = report.paper_table(report.collect(tmp_path / "store"))
    assert f"| m [{a[:8]}] | **15.00** |" in md and f"| m [{b[:8]}] | 5.00 |" in md


def test_best_per_model_bolds_within_each_model_as_table_6(tmp_path):
    rows = [report.system_from_labels(labels(m, n), metrics(d, z)) for m, n, d, z in SYSTEMS]
    md = report.paper_table(
        report.group_tables(rows)["vs gpt-4o-mini, judged by gpt-4o on xl_alpacaeval"],
        best_per="model",
    )
    assert md.splitlines()[2:] == [
        "| EuroLLM 9B | 9.46 | 9.96 | 8.97 |",
        "| +32 instructions | 19.25 | 20.00 | 18.50 |",
        "| +2K instructions | **24.00** | **26.76** | **21.24** |",
        "| Qwen 2.5 7B | 23.39 | 12.50 | **34.29** |",
        "| +32 instructions | **30.00** | **30.00** | 30.00 |",
    ]


def test_rtt_rows_become_table_2_deltas_from_table_1(tmp_path):
    store = Store(tmp_path / "store")
    judge_artifact(store, "Aya Expanse 8B", None, 60.27, 57.22)
    judge_artifact(store, "Aya Expanse 8B (RTT one_prompt)", None, 21.02, 55.44)
    judge_artifact(store, "EuroLLM 9B Instruct", None, 16.49, 14.82)
    judge_artifact(store, "EuroLLM 9B Instruct (RTT one_prompt)", None, 15.66, 26.67)
    judge_artifact(
        store, "Gemma 2 9B IT (RTT two_step)", None, 20.0, 20.0
    )  # no direct row: no delta
    rows = report.rows_from_store(tmp_path / "store")
    deltas = {r.model: r for r in report.order_rows(report.rtt_deltas(rows))}
    assert sorted(deltas) == [
        "Aya Expanse 8B (one_prompt - direct)",
        "EuroLLM 9B Instruct (one_prompt - direct)",
    ]
    aya = deltas["Aya Expanse 8B (one_prompt - direct)"]
    assert aya.value("deu") == pytest.approx(21.02 - 60.27) and aya.value("zho") == pytest.approx(
        55.44 - 57.22
    )
    assert aya.value("avg") == pytest.approx((21.02 + 55.44) / 2 - (60.27 + 57.22) / 2)
    paths = report.build_report(tmp_path / "store", tmp_path / "out")
    text = paths["markdown"].read_text()
    assert "Reason-then-Translate minus direct" in text
    # Old labels, the mode in the model's name, still read.
    assert "| Aya Expanse 8B (one_prompt - direct) | -20.52 | -39.25 | -1.78 |" in text
    with paths["csv"].open() as f:
        assert any(
            r["model"] == "EuroLLM 9B Instruct (one_prompt - direct)" for r in csv.DictReader(f)
        )


def test_rtt_mode_is_a_field_of_the_labels_and_old_labels_still_read(tmp_path):
    from hydra import compose, initialize_config_dir

    from xlexp.config import register
    from xlexp.evaluate.stage import system_labels
    from xlexp.evaluate.view import _generator

    register()  # the structured config schema the root config builds on
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["eval.rtt=two_step"])
    new = system_labels(cfg, None)
    assert new["model"] == cfg.model.name and new["rtt"] == "two_step"  # the mode, not a label
    # A sweep: the new labels, the same model answering directly, and an RTT job whose
    # results.json was written before the field (its mode only in the model's label).
    sweep = tmp_path / "sweep"
    base = {k: new[k] for k in ("reference", "judge", "judge_protocol", "benchmark")}
    jobs = {"new": {**base, "model": "m", "rtt": "two_step"}, "direct": {**base, "model": "m"},
            "old": {**base, "model": "m (RTT one_prompt)"}}
    for i, (name, system) in enumerate(jobs.items()):
        (sweep / name).mkdir(parents=True)
        summary = {"metrics": metrics(10.0 * (i + 1), 5.0), "system": {**system, "judge_key": name}}
        write_json(sweep / name / "results.json", summary)
    rows = {r.key: r for r in report.collect(sweep)}
    assert (rows["new"].model, rows["new"].rtt) == ("m", "two_step") and rows["direct"].rtt is None
    old = rows["old"]
    assert (old.model, old.rtt, old.name) == ("m", "one_prompt", "m (RTT one_prompt)")
    deltas = {r.model: r for r in report.rtt_deltas(list(rows.values()))}
    assert sorted(deltas) == ["m (one_prompt - direct)", "m (two_step - direct)"]
    assert deltas["m (two_step - direct)"].value("deu") == pytest.approx(10.0 - 20.0)
    md = report.build_report(sweep, tmp_path / "out")["markdown"].read_text()
    assert "| m (RTT two_step) | 7.50 | 10.00 | **5.00** |" in md
    assert "| m (two_step - direct) | -5.00 | -10.00 | **0.00** |" in md
    # The view finds an RTT system's outputs by the generator its respond artifact wrote.
    assert _generator(report.tables.with_rtt(jobs["old"]))[0] == "m+rtt-one_prompt"
    assert _generator({**jobs["new"], "adapter": "a1"})[0] == "m+rtt-two_step+a1"


def test_two_judge_protocols_never_share_a_table():
    rows = [
        report.system_from_labels(
            {**labels("EuroLLM 9B", None), "judge_protocol": protocol},
            metrics(10.0 + i, 20.0),
            key=protocol,
        )
        for i, protocol in enumerate(("alpaca_eval", "both_orders"))
    ]
    tables = report.group_tables(rows)
    assert list(tables) == [
        "vs gpt-4o-mini, judged by gpt-4o (alpaca_eval protocol) on xl_alpacaeval",
        "vs gpt-4o-mini, judged by gpt-4o (both_orders protocol) on xl_alpacaeval",
    ]
    # An absent value is shown as a dash, never as "nan".
    md = report.markdown_table(
        {"deu": {"win_rate": None, "n": 0}, "avg": {"win_rate": float("nan"), "n": 0}}
    )
    assert "nan" not in md.lower() and f"| deu | {report.ABSENT} |" in md


def test_a_repeated_instruction_is_warned_in_results_md_and_on_the_console(tmp_path):
    from omegaconf import OmegaConf

    from xlexp.evaluate.declaration import repeated_instruction_warnings
    from xlexp.report.markdown import console_summary, write_results

    rows = [{"id": i, "instruction": q} for i, q in enumerate(["Q a", "Q b", "Q a", "Q c", "Q b"])]
    warnings = repeated_instruction_warnings({"deu": rows, "fra": rows[:2]})
    assert warnings == [
        "deu: 2 instruction(s) repeated in the prompts (ids 0, 2; 1, 4): alpaca_eval pairs "
        "outputs by instruction text, xlexp by id, so a cross-check with alpaca_eval pairs them "
        "differently"
    ]
    summary = {"warnings": [f"evaluate: {w}" for w in warnings], "stages": {}}
    assert f"WARNING: evaluate: {warnings[0]}" in console_summary(summary)
    cfg = OmegaConf.create({"model": {"name": "m"}, "reference": {"name": "r"},
                            "judge": {"name": "j"}, "eval": {}})
    md = write_results(tmp_path / "run", summary, cfg)["markdown"].read_text()
    assert f"> **WARNING** evaluate: {warnings[0]}" in md

"""The W&B dashboard (`xlexp.dashboard`): its panels come from the logged names and the metric
declarations, every name a panel reads is in the run's history (read back with wandb's offline
reader), offline the report stage writes the spec it would save, and the README's table of
logged names is the one the code logs."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import wandb_offline
from omegaconf import OmegaConf
from viewstore import build_store

from xlexp import track
from xlexp.config import Config, LLMConfig
from xlexp.dashboard import Scope, at_report, dashboard_for, sections, spec, workspace
from xlexp.dashboard.names import logged_names
from xlexp.dashboard.panels import scaling_plots
from xlexp.evaluate.metrics import METRICS, Column, Metric
from xlexp.stage import STAGES
from xlexp.store import Store

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = "both_orders"


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimpleNamespace, dict]:
    """One offline run: the generate and evaluate stages' own W&B logging, then the report
    stage's, over a synthetic store."""
    tmp = tmp_path_factory.mktemp("dashboard")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("WANDB_API_KEY", raising=False)
        mp.delenv("WANDB_DISABLED", raising=False)
        mp.setenv("WANDB_DATA_DIR", str(tmp / "wandb-data"))
        mp.setenv("WANDB_CACHE_DIR", str(tmp / "wandb-cache"))
        return _logged_run(tmp)


def history_names(keys: set[str]) -> set[str]:
    """The logged names: a table or histogram is read back as its fields (`eval/grid/_type`,
    `eval/grid/path`, ...), so its name is the one above `_type`."""
    objects = {k.removesuffix("/_type") for k in keys if k.endswith("/_type")}
    return {k for k in keys if not any(k.startswith(o + "/") for o in objects)} | objects


def _run_summary(root: Path, data_size: int = 32000) -> tuple[dict, Store]:
    """A run's summary over a synthetic store, as the stages would have written it."""
    keys = build_store(root, 60)
    store = Store(root)
    gen, ev = keys["generation"], keys["evaluation"]
    metrics = store.get("metrics", ev["metrics"])
    summary = {
        "store": str(root),
        "stages": {
            "generate": {name: {"key": key} for name, key in gen.items()},
            "evaluate": {name: {"key": key} for name, key in ev.items()},
        },
        "generation_stats": json.loads(
            store.get("select", gen["select"]).file("stats.json").read_text()
        ),
        "metrics": json.loads(metrics.file("metrics.json").read_text()),
        "columns": json.loads(metrics.file("columns.json").read_text()),
        "system": {"model": "EuroLLM 9B", "data_size": data_size, "judge_protocol": PROTOCOL},
    }
    return summary, store


def _cfg():
    card = LLMConfig(name="judge", backend="openai", model="gpt-4o")
    cfg = OmegaConf.structured(Config(teacher=card, model=card, judge=card, reference=card))
    cfg.logger.kind = "wandb"
    cfg.eval.judge_protocol = PROTOCOL
    return cfg


def _logged_run(tmp_path: Path) -> tuple[SimpleNamespace, dict]:
    """The generate and evaluate stages' own W&B logging, then the report stage's, offline."""
    summary, store = _run_summary(tmp_path / "store")
    cfg = _cfg()
    run_dir = tmp_path / "run"
    ctx = SimpleNamespace(
        cfg=cfg, run_dir=run_dir, store=store, tracker=track.start(cfg, run_dir), summary=summary
    )
    for name in ("generate", "evaluate"):
        stage = STAGES.get(name)
        arts = {
            spec.name: store.get(spec.store_kind, summary["stages"][name][spec.name]["key"])
            for spec in stage.artifacts
            if spec.name in summary["stages"][name]
        }
        ctx.tracker.log_stage(stage, arts)  # as the run loop does
        stage.log(ctx.tracker, ctx, arts)
    handler = _Messages()
    logging.getLogger("xlexp").addHandler(handler)
    try:
        at_report(ctx)
    finally:
        logging.getLogger("xlexp").removeHandler(handler)
    ctx.messages = handler.messages
    ctx.tracker.finish(summary)
    return ctx, summary


class _Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_report_stage_offline_writes_the_spec_and_every_panel_name_is_in_the_history(logged):
    ctx, summary = logged
    (line,) = [m for m in ctx.messages if "dashboard" in m]
    assert "W&B is offline" in line and "dashboard.json" in line
    saved = json.loads((ctx.run_dir / "dashboard.json").read_text())
    assert saved["scope"]["run_id"] == summary["wandb"]["id"] and saved["names"]
    assert {"workspace", "report"} <= set(saved)

    run = wandb_offline.read(ctx.run_dir)
    history = history_names(run.history_keys())
    assert set(logged_names(summary)) <= history  # every name the dashboard may read was logged
    # Fig. 2's x and every y in one history row: a line plot against data_size finds them.
    sweep = Scope(project="xlexp", entity="", title="t", group="scaling:sweep-1")
    (win, *others) = scaling_plots(logged_names(summary))
    assert win.x == "data_size" and win.log_x
    assert win.y == [f"eval/{PROTOCOL}/{lang}/win_rate" for lang in ("deu", "fra", "avg")]
    assert any(set(win.y) | {"data_size"} <= set(row) for row in run.history)
    assert all(p.x == "data_size" and set(p.y) <= history for p in others)
    # Table 6's rows, one per language, with every declared column the run computed.
    grid = run.table("eval/grid")
    assert [r[grid["columns"].index("lang")] for r in grid["data"]] == ["deu", "fra", "avg"]
    assert {c[0] for c in summary["columns"]} <= set(grid["columns"])
    # The QE histograms and the funnel come from what the generate stage logged.
    assert {"generate/qe_scores/deu", "generate/qe_scores/fra"} <= history
    names = [s.name for s in sections(sweep, logged_names(summary))]
    assert names == ["Fig. 2: scaling", "Table 6: model grid", "Generation", "Data"]
    for section in workspace(sweep, logged_names(summary)).sections:
        for panel in section.panels:
            for key in [
                *(getattr(panel, "y", None) or []),
                *(getattr(panel, "metrics", None) or []),
            ]:
                assert key in history, f"{section.name}: {key} was never logged"


def test_a_new_declared_metric_gets_its_fig2_plot_without_dashboard_code():
    names = ["data_size", f"eval/{PROTOCOL}/deu/win_rate", f"eval/{PROTOCOL}/deu/toy_rate"]
    before = [p.title for p in scaling_plots(names)]
    METRICS.register(
        "toy", Metric((Column("toy_rate", "toy rate", ".2f", True),), lambda *a: {}, lambda *a: {})
    )
    try:
        plots = {p.title: p for p in scaling_plots(names)}
    finally:
        METRICS.unregister("toy")
    (new,) = set(plots) - set(before)
    assert new.startswith("toy rate") and plots[new].y == [f"eval/{PROTOCOL}/deu/toy_rate"]


def test_dashboard_cli_reads_a_run_dir_afterwards(logged, tmp_path):
    ctx, summary = logged
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "results.json").write_text(json.dumps(summary))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"}
    env.pop("WANDB_API_KEY", None)
    proc = subprocess.run(
        [sys.executable, "-m", "xlexp.dashboard", str(run_dir)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "W&B is offline" in proc.stdout
    assert (
        json.loads((run_dir / "dashboard.json").read_text())["scope"]["run_id"]
        == (summary["wandb"]["id"])
    )
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "results.json").write_text(json.dumps({"metrics": summary["metrics"]}))
    with pytest.raises(FileNotFoundError, match="logger=wandb"):
        dashboard_for(tmp_path / "plain")


def test_spec_is_plain_json_with_the_panels(tmp_path):
    summary, _ = _run_summary(tmp_path / "store")
    scope = Scope(project="xlexp", entity="me", title="xlexp scaling:a/b", group="scaling:a/b")
    out = spec(scope, logged_names(summary))
    text = json.dumps(out)
    assert '"xAxis": "data_size"' in text and "Run Comparer" in text
    assert out["report"]["project"] == {"name": "xlexp", "entityName": "me"}


# Each logged name as the README's table writes it: its parts that vary as <placeholders>.
NAME_FORMS = [
    (r"eval/(samples|grid)|data_size", None),
    (r"eval/[^/]+/[^/]+/[^/]+", "eval/<protocol>/<lang>/<column>"),
    (r"eval/[^/]+/[^/]+", "eval/<lang>/<column>"),
    (r"agreement/[^/]+/[^/]+/[^/]+/[^/]+", "agreement/<protocol>/<lang>/<judge>/<column>"),
    (r"generate/qe_scores/[^/]+", "generate/qe_scores/<lang>"),
    (r"generate/stats/.+", "generate/stats/<path>"),
    (r"[a-z]+/[a-z_]+/[^/]+", "<stage>/<artifact>/<count>"),
    (r"[a-z]+/[a-z_]+/[^/]+/.+", "<stage>/<artifact>/<count>/<key>"),
]


def name_form(name: str) -> str:
    for pattern, form in NAME_FORMS:
        if re.fullmatch(pattern, name):
            return form or name
    raise AssertionError(f"{name} is logged but has no form in the README's table")


def test_readme_lists_the_names_logged_to_wandb(logged):
    """The README's table of W&B names is what a run logged (read back from its history)."""
    ctx, _ = logged
    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- wandb-names -->")[1].split("<!-- /wandb-names -->")[0]
    listed = set(re.findall(r"^\| `([^`]+)` \|", table, re.M))
    history = history_names(wandb_offline.read(ctx.run_dir).history_keys())
    forms = {name_form(k) for k in history if not k.startswith("_")}
    assert forms <= listed, sorted(forms - listed)
    # Listed but not logged by this run (its summary is a store's, without an agreement table):
    # the rubric's scores (eval.rubric only), the agreement table.
    assert listed - forms == {
        "eval/<lang>/<column>", "agreement/<protocol>/<lang>/<judge>/<column>"}


@pytest.mark.slow
def test_tiny_scaling_sweep_dashboard_plots_win_rate_against_data_size(tmp_path, tiny_model_dir):
    """The tiny scaling sweep (data_size=2,4) logged offline: the sweep's dashboard objects,
    built without saving, plot Fig. 2 from names every job's history holds."""
    from fakeserver import FakeOpenAI
    from sweeps import job_results, run_sweep, sweep_command, sweep_env
    from test_chain import Teacher

    from xlexp.dashboard import report
    from xlexp.dashboard.names import languages

    env = sweep_env(WANDB_DATA_DIR=str(tmp_path / "wandb-data"), XLEXP_PROGRESS="0")
    for var in ("WANDB_DISABLED", "WANDB_API_KEY"):
        env.pop(var, None)
    with FakeOpenAI(Teacher()) as srv:
        run_sweep(
            sweep_command(srv.base_url, tiny_model_dir, tmp_path, "2,4", "logger=wandb"), 900, env
        )
    sweep = tmp_path / "sweep"
    saved = json.loads((sweep / "report" / "dashboard.json").read_text())  # offline: the spec
    results = job_results(sweep)
    group = f"scaling:{tmp_path.name}/sweep"  # the experiment and the sweep dir's last parts
    assert saved["scope"]["group"] == results[0]["wandb"]["group"] == group
    names = list(dict.fromkeys(n for r in results.values() for n in logged_names(r)))
    scope = Scope(**saved["scope"])
    view, rep = workspace(scope, names), report(scope, names, online=False)
    fig2 = view.sections[0]
    assert fig2.name == "Fig. 2: scaling"
    win = next(p for p in fig2.panels if p.y[0].endswith("/win_rate"))
    langs = [*results[0]["metrics"]]  # deu, fra, avg
    assert win.x == "data_size" and languages(win.y) == langs
    assert win.y == [f"eval/both_orders/{lang}/win_rate" for lang in langs]  # a series per lang
    assert (
        saved["workspace"]["spec"]["section"]["panelBankConfig"]["sections"][0]["panels"][0][
            "config"
        ]["xAxis"]
        == "data_size"
    )
    panel_names = {
        k for s in view.sections for p in s.panels
        for k in [*(getattr(p, "y", None) or []), *(getattr(p, "metrics", None) or [])]
    }  # fmt: skip
    seen: set[str] = set()
    for num, size in ((0, 2), (1, 4)):
        run = wandb_offline.read(sweep / str(num))
        assert run.run["runGroup"] == scope.group
        seen |= history_names(run.history_keys())
        # The job's Fig. 2 point: its data size and its win rates in one history row.
        (row,) = [r for r in run.history if "data_size" in r]
        assert row["data_size"] == size
        assert {k: row[k] for k in win.y} == pytest.approx(
            {f"eval/both_orders/{lang}/win_rate": results[num]["metrics"][lang]["win_rate"]
             for lang in langs}
        )  # fmt: skip
    assert panel_names <= seen, sorted(panel_names - seen)
    grids = [b for b in rep.blocks if type(b).__name__ == "PanelGrid"]
    assert grids and all(g.runsets[0].filters for g in grids)  # the sweep's group, not the project


NO_WANDB_RUN = """
import sys
from pathlib import Path
from hydra import compose, initialize_config_dir
from xlexp.__main__ import run
from xlexp.config import register
register()
root, tmp = Path(sys.argv[1]), Path(sys.argv[2])
with initialize_config_dir(config_dir=str(root / "conf"), version_base="1.3"):
    cfg = compose("config", overrides=["stages=[report]", f"store_dir={tmp / 'store'}"])
run(cfg, tmp / "run")
print("results.md:", (tmp / "run" / "results.md").exists())
print("wandb_workspaces imported:", "wandb_workspaces" in sys.modules)
"""


def test_a_run_without_wandb_does_not_import_the_dashboard(tmp_path):
    """The report stage of a run that logs nowhere neither makes a dashboard nor imports
    wandb_workspaces (an environment without it still reports)."""
    done = subprocess.run(
        [sys.executable, "-c", NO_WANDB_RUN, str(ROOT), str(tmp_path)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "results.md: True" in done.stdout
    assert "wandb_workspaces imported: False" in done.stdout
    assert not (tmp_path / "run" / "dashboard.json").exists()

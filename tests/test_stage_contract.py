"""The stage contract: a stage declared in this file alone (one artifact, one model call) is run,
validated, planned, tabled in results.md, shown in the view and logged to W&B, with no edit
anywhere else in xlexp."""

from __future__ import annotations

import base64
import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest
import wandb_offline
from fakeserver import FakeOpenAI
from hydra import compose, initialize_config_dir

from xlexp import plan
from xlexp.__main__ import run
from xlexp.config import ConfigError, register, validate
from xlexp.stage import STAGES, ArtifactSpec, Expected, RoleCount, RunContext, Stage
from xlexp.store import Artifact, write_jsonl
from xlexp.view.read import read_path

ROOT = Path(__file__).resolve().parents[1]
register()
QUESTION = "Say something kind."


def _run_echo(ctx: RunContext, arts: dict[str, Artifact]) -> None:
    key = ctx.store.key(
        "echo", {"judge": ctx.cfg.judge.model, "question": QUESTION, "seed": ctx.cfg.seed}
    )

    def produce(work: Path, parts: Any) -> dict:
        model = ctx.models.role("judge", ctx.cfg.judge)
        (answer,) = model.chat([[{"role": "user", "content": QUESTION}]])
        write_jsonl(work / "rows.jsonl", [{"id": 1, "answer": answer.text}])
        return {"in": 1, "out": 1, "rejects": 0}

    arts["echoes"] = ctx.store.build("echo", key, produce)[0]


def _validate_echo(cfg: Any, runs: bool) -> None:
    if runs and cfg.seed < 0:
        raise ConfigError("seed", "the echo stage needs a seed >= 0")


ECHO = Stage(
    name="echo",
    artifacts=(
        ArtifactSpec("echoes", kind="echo", logged_as="echo-rows", files=("rows.jsonl", "DONE")),
    ),
    run=_run_echo,
    roles=lambda cfg: {"judge": cfg.judge},
    validate=_validate_echo,
    expected=lambda cfg, measured: Expected(calls=[RoleCount("echoes", "judge", cfg.judge, 1)]),
)


@pytest.fixture
def echo_stage():
    STAGES.register("echo", ECHO, before="report")
    yield ECHO
    STAGES.unregister("echo")


def _cfg(base_url: str, store: Path, *extra: str) -> Any:
    args = [
        "stages=[echo,report]",
        f"store_dir={store}",
        "judge.backend=openai",
        "judge.model=fake",
        f"judge.base_url={base_url}",
        "judge.gguf_file=null",
        "judge.max_retries=1",
        *extra,
    ]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=args), args


def test_registered_stage_runs_plans_and_reports_with_no_other_edit(
    tmp_path, echo_stage, monkeypatch
):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
    assert STAGES.names().index("echo") == STAGES.names().index("report") - 1
    with FakeOpenAI(lambda body: "You are doing fine.") as srv:
        cfg, args = _cfg(srv.base_url, tmp_path / "store", "logger=wandb")

        # Its config check runs with the others, naming the key.
        bad, _ = _cfg(srv.base_url, tmp_path / "store", "seed=-1")
        with pytest.raises(ConfigError, match="seed"):
            validate(bad)

        # The cost plan asks the declaration: one judge call, the artifact missing.
        (cold,) = [plan.plan_job(cfg, args, plan.Measured(tmp_path / "store"))]
        assert [(r.artifact, r.role, r.calls) for r in cold.counts] == [("echoes", "judge", 1)]
        assert cold.present == [] and cold.to_build["echoes"].startswith("missing ")

        summary = run(cfg, tmp_path / "run")
        assert srv.calls == 1
        entry = summary["stages"]["echo"]["echoes"]
        assert entry["kind"] == "echo" and entry["out"] == 1
        assert summary["cost"]["stages"]["echo"]["roles"]["judge"]["calls"] == 1

        # The plan now finds it in the store: nothing to call.
        (warm,) = [plan.plan_job(cfg, args, plan.Measured(tmp_path / "store"))]
        assert warm.present == ["echoes"] and warm.to_build == {} and warm.counts[0].calls == 0

        again = run(cfg, tmp_path / "run2")
        assert srv.calls == 1 and again["stages"]["echo"]["echoes"]["key"] == entry["key"]

    results_md = (tmp_path / "run" / "results.md").read_text()
    assert f"| echo | echoes | `{entry['key']}` | 1 | 1 | 0 |" in results_md

    page = read_path(tmp_path / "run")
    assert {"run": ".", "stage": "echo", "artifact": "echoes", "key": entry["key"]}.items() <= page[
        "stages"
    ][0].items()
    html = (tmp_path / "run" / "view.html").read_text()
    packed = re.search(r'<script type="application/gzip" id="xlexp-data">([^<]*)</script>', html)
    embedded = gzip.decompress(base64.b64decode(packed.group(1))).decode()  # the page's data
    assert entry["key"] in embedded and '"stage":"echo"' in embedded.replace(" ", "")

    wb = wandb_offline.read(tmp_path / "run")
    assert "echo/echoes/out" in wb.history_keys()
    logged = wb.artifact(f"echo-rows-{entry['key']}")
    assert logged["type"] == "echo-rows"
    assert {c["path"] for c in logged["manifest"]["contents"]} == {"rows.jsonl", "DONE"}
    assert json.loads(logged["metadata"])["key"] == entry["key"]


def test_unknown_stage_names_the_registered_ones(tmp_path, echo_stage):
    cfg, _ = _cfg("http://127.0.0.1:9/v1", tmp_path / "store", "stages=[echo,nope]")
    with pytest.raises(ConfigError, match=r"stages\[1\].*echo"):
        validate(cfg)

"""Faults seen from a whole run (`run()` and `python -m xlexp`): preflight names the role whose
server, key or model is wrong before any stage; a backend outage mid-run exits non-zero with one
line per role (endpoint, error, count); roles that share a model id but not an endpoint or key
get their own connection; bad inputs and `stages=[]` fail in validation naming the key.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fakeserver import FakeOpenAI, Reply
from test_ledger import CARDS, answer
from test_ledger import compose_cfg as eval_cfg

from xlexp.__main__ import run
from xlexp.config import ConfigError, validate
from xlexp.llm.preflight import PreflightError

ROOT = Path(__file__).resolve().parents[1]


def test_preflight_names_the_role_whose_model_the_server_does_not_serve(tmp_path):
    served = [name for name, *_ in CARDS.values() if name != "fake-judge"]
    with FakeOpenAI(answer, served=served) as srv:
        with pytest.raises(PreflightError) as err:
            run(eval_cfg(srv.base_url, tmp_path / "store"), tmp_path / "run")
        assert srv.calls == 0  # no chat call, no stage
    assert err.value.lines == [
        f"judge: {srv.base_url} does not serve judge.model 'fake-judge' "
        "(it serves: fake-sys, fake-ref)"
    ]
    assert not (tmp_path / "store" / "respond").exists()


def _eval_line(summary: dict) -> dict:
    return {k: v for k, v in summary["stages"]["evaluate"].items() if k != "seconds"}


def test_a_rerun_served_by_the_store_needs_no_server_but_new_work_does(tmp_path, caplog):
    with FakeOpenAI(answer) as srv:
        first = run(eval_cfg(srv.base_url, tmp_path / "store"), tmp_path / "run1")
    # The server is gone (its port closed): every artifact is in the store, so the rerun goes on.
    again = run(eval_cfg(srv.base_url, tmp_path / "store"), tmp_path / "run2")
    assert again["cost"]["total"]["calls"] == 0
    assert again["metrics"] == first["metrics"] and _eval_line(first) == _eval_line(
        again
    )  # same artifacts
    assert "cannot reach" in caplog.text and "going on without them" in caplog.text
    # More prompts need calls: the dead server fails the preflight, before any stage.
    cfg = eval_cfg(srv.base_url, tmp_path / "store")
    cfg.eval.limit = int(cfg.eval.limit) + 2
    with pytest.raises(PreflightError) as err:
        run(cfg, tmp_path / "run3")
    assert any(line.startswith("model: cannot reach") for line in err.value.lines), err.value.lines


def test_an_outage_exits_non_zero_with_one_line_per_role(tmp_path):
    def judge_down(body: dict) -> str | Reply:
        return (
            Reply(503, text="judge overloaded") if body["model"] == "fake-judge" else answer(body)
        )

    with FakeOpenAI(judge_down) as srv:
        args = [
            "stages=[evaluate,report]",
            f"store_dir={tmp_path / 'store'}",
            "eval.limit=3",
            "eval.bootstrap=20",
            f"hydra.run.dir={tmp_path / 'run'}",
        ]
        for role, (name, *_prices) in CARDS.items():
            args += [
                f"{role}.backend=openai",
                f"{role}.model={name}",
                f"{role}.base_url={srv.base_url}",
                f"{role}.gguf_file=null",
                f"{role}.max_retries=0",
            ]
        done = subprocess.run(
            [sys.executable, "-m", "xlexp", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert done.returncode != 0
    tail = done.stderr.strip().splitlines()[-3:]
    assert tail[0].startswith("xlexp: backend failures"), done.stderr[-2000:]
    assert (
        tail[1].strip().startswith(f"judge ({srv.base_url} model fake-judge): ")
        and "503 judge overloaded" in tail[1]
    ), tail
    assert "Traceback" not in done.stderr
    assert not list((tmp_path / "store" / "judge").glob("*/DONE"))


def test_roles_with_one_model_id_on_two_endpoints_get_their_own_connections(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from xlexp.roles import Models
    from xlexp.store import Store

    monkeypatch.setenv("XLEXP_KEY_A", "key-a")
    monkeypatch.setenv("XLEXP_KEY_B", "key-b")
    cfg = eval_cfg("http://unused/v1", tmp_path / "store")
    with FakeOpenAI(api_key="key-a") as teacher_srv, FakeOpenAI(api_key="key-b") as judge_srv:
        teacher = OmegaConf.merge(
            cfg.judge,
            {"base_url": teacher_srv.base_url, "api_key_env": "XLEXP_KEY_A", "model": "same"},
        )
        judge = OmegaConf.merge(
            cfg.judge,
            {"base_url": judge_srv.base_url, "api_key_env": "XLEXP_KEY_B", "model": "same"},
        )
        models = Models(Store(tmp_path / "store"))
        try:
            models.role("teacher", teacher).chat(
                [[{"role": "user", "content": f"t{i}"}] for i in range(3)]
            )
            models.role("qe.llm", judge).chat(
                [[{"role": "user", "content": f"j{i}"}] for i in range(5)]
            )
        finally:
            models.close()
    assert teacher_srv.calls == 3 and judge_srv.calls == 5
    assert {h["authorization"] for h in judge_srv.headers} == {"Bearer key-b"}


@pytest.mark.parametrize(
    "override, key",
    [("stages=[]", "stages"), ("eval.limit=0", "eval.limit"), ("eval.limit=-1", "eval.limit")],
)
def test_nothing_to_do_or_a_limit_below_one_is_refused(tmp_path, override, key):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[override, "stages=[evaluate]"] if override != "stages=[]" else [override],
        )
    with pytest.raises(ConfigError) as err:
        validate(cfg, cuda=False)
    assert err.value.key == key


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "holds no prompts"),
        (b"{not json", "line 1 is not JSON"),
        (b'[{"prompt": "x"}]', "item 1 has no 'instruction'"),
    ],
)
def test_a_bad_eval_path_fails_in_validation(tmp_path, content, message):
    from hydra import compose, initialize_config_dir

    path = tmp_path / "prompts.json"
    path.write_bytes(content)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["stages=[evaluate]", f"eval.path={path}"])
    with pytest.raises(ConfigError, match=message) as err:
        validate(cfg, cuda=False)
    assert err.value.key == "eval.path"


def test_an_empty_seed_file_fails_in_validation(tmp_path):
    from hydra import compose, initialize_config_dir

    path = tmp_path / "seeds.jsonl"
    path.write_text("\n")
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "config", overrides=["stages=[generate]", "seed_data=jsonl", f"seed_data.path={path}"]
        )
    with pytest.raises(ConfigError, match="is empty") as err:
        validate(cfg, cuda=False)
    assert err.value.key == "seed_data.path"


def test_results_md_carries_the_reject_warning(tmp_path):
    def garbled_judge(body: dict) -> str | Reply:
        return "I cannot decide." if body["model"] == "fake-judge" else answer(body)

    with FakeOpenAI(garbled_judge) as srv:
        summary = run(eval_cfg(srv.base_url, tmp_path / "store"), tmp_path / "run")
    assert any(
        w.startswith("evaluate: judge: ") and "content rejects" in w for w in summary["warnings"]
    ), summary["warnings"]
    assert "**WARNING** evaluate: judge: " in (tmp_path / "run" / "results.md").read_text()
    assert (
        json.loads((tmp_path / "run" / "results.json").read_text())["warnings"]
        == summary["warnings"]
    )

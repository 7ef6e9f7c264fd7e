"""The whole chain (generate -> sft -> evaluate -> report) on tiny models, and cache/resume.

Teacher, QE and judge are a real OpenAI-compatible HTTP server on 127.0.0.1 that answers like a
well-behaved model (so every stage has rows to work on); translators, student and reference
are the tiny random Llama through the hf backend.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fakeserver import FakeOpenAI, Reply
from hydra import compose, initialize_config_dir

from xlexp.__main__ import run
from xlexp.config import register
from xlexp.roles import Models
from xlexp.store import Store

pytestmark = pytest.mark.slow  # whole runs: the slow lane

ROOT = Path(__file__).resolve().parents[1]
register()


class Teacher:
    """Answers each stage's prompt the way a capable model would; counts calls per stage."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()

    def __call__(self, body: dict) -> str | Reply:
        text = body["messages"][-1]["content"]
        if "Write the question" in text:
            stage = "reverse"
            passage = text.split("\n\n")[1]
            reply: str | Reply = Reply(
                text=f"Can you explain why {' '.join(passage.split()[:4])}?", delay=self.delay
            )
        elif "Improve the question" in text:
            stage = "refine"
            q = re.search(r"\nQuestion: (.*)\nResponse: ", text).group(1)
            r = re.search(r"\nResponse: (.*)\n\nReply in exactly", text, re.S).group(1)
            reply = f"Question: {q}\nResponse: {r}"
        elif "Rate the translation" in text:
            stage = "qe"
            reply = Reply(text="4", logprobs=[{"4": -0.2, "5": -2.0, "3": -2.5}])
        else:
            stage = "judge"
            reply = Reply(text="B", logprobs=[{"B": -0.3, "A": -1.4}])
        with self.lock:
            self.counts[stage] = self.counts.get(stage, 0) + 1
        return reply


def overrides(base_url: str, tiny_dir: Path, store: Path, **extra: str) -> list[str]:
    api = [
        "backend=openai",
        "model=fake-teacher",
        f"base_url={base_url}",
        "gguf_file=null",
        "max_retries=1",
    ]
    out = [f"teacher.{a}" for a in api] + [f"judge.{a}" for a in api]
    for role in ("model", "reference"):
        out += [
            f"{role}.model={tiny_dir}",
            f"{role}.gguf_file=null",
            f"{role}.sampling.max_tokens=8",
            f"{role}.batch_size=8",
        ]
    for name in ("smollm2-greedy", "smollm2-sampled"):
        out += [
            f"translators.{name}.model={tiny_dir}",
            f"translators.{name}.gguf_file=null",
            f"translators.{name}.batch_size=16",
        ]
    out += [
        f"store_dir={store}",
        "seed_data.n=8",
        "generate.batch_size=2",
        "data_size=4",
        "sft.batch_size=2",
        "sft.max_seq_len=256",
        "sft.save_steps=1",
        "eval.limit=3",
        "eval.bootstrap=50",
        # The fake judge answers A/B (our protocol's labels); the alpaca_eval protocol's runs are
        # in test_eval_exps and test_judge_alpaca_eval.
        "eval.judge_protocol=both_orders",
    ]
    return out + [f"{k}={v}" for k, v in extra.items()]


def compose_cfg(args: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=args)


@pytest.fixture
def teacher_server():
    teacher = Teacher()
    with FakeOpenAI(teacher) as srv:
        srv.teacher = teacher
        yield srv


def test_whole_chain_then_rerun_makes_zero_backend_calls(tmp_path, tiny_model_dir, teacher_server):
    # The fake judge answers a pairwise label with logprobs: the both-orders protocol.
    args = overrides(
        teacher_server.base_url,
        tiny_model_dir,
        tmp_path / "store",
        **{"eval.judge_protocol": "both_orders"},
    )
    cfg = compose_cfg(args)
    summary = run(cfg, tmp_path / "run1")

    gen = summary["stages"]["generate"]
    assert gen["seed"]["out"] == 8 and gen["reverse"]["out"] == 8 and gen["refine"]["out"] == 8
    assert gen["translate"]["translations"] == 2 * gen["translate"]["sentence_jobs"]
    assert gen["select"]["rows"] == round(0.8 * gen["select"]["before_filter"])
    store = Store(tmp_path / "store")
    dataset = store.get("select", gen["select"]["key"]).rows("dataset.jsonl")
    assert {"messages", "lang", "qe_score", "seed_id", "translators"} <= set(dataset[0])
    assert all(
        r["messages"][0]["content"].endswith(("Respond in German.", "Respond in French."))
        for r in dataset
    )

    adapter = store.get("sft", summary["stages"]["sft"]["adapter"]["key"]).file("adapter")
    assert (adapter / "adapter_config.json").exists() and (
        adapter / "adapter_model.safetensors"
    ).exists()

    metrics = summary["metrics"]
    assert set(metrics) == {"deu", "fra", "avg"}
    # The judge always prefers B; both orders are judged, so each row's preference is 0.5.
    assert metrics["deu"]["win_rate"] == pytest.approx(50.0)
    respond = store.get("respond", summary["stages"]["evaluate"]["respond"]["key"])
    rows = json.loads(respond.file("deu.json").read_text())
    assert len(rows) == 3 and {"instruction", "output", "generator", "dataset"} <= set(rows[0])
    # One row per table: the win rates, and the main judge's in the agreement table.
    results_md = (tmp_path / "run1" / "results.md").read_text()
    assert results_md.count("| deu |") == 2 and results_md.count("| deu | smollm2") == 1
    assert summary["backend_calls"] > 0

    served = teacher_server.calls
    again = run(compose_cfg(args), tmp_path / "run2")
    assert again["backend_calls"] == 0 and teacher_server.calls == served
    assert again["metrics"] == metrics
    assert again["stages"]["sft"]["adapter"]["key"] == summary["stages"]["sft"]["adapter"]["key"]


def test_a_changed_stage_reuses_everything_upstream(tmp_path, tiny_model_dir, teacher_server):
    base = overrides(
        teacher_server.base_url, tiny_model_dir, tmp_path / "store", stages="[generate]"
    )
    first = run(compose_cfg(base), tmp_path / "a")
    stats = first["generation_stats"]  # also stats.json beside the select artifact
    assert stats == json.loads(
        (
            tmp_path
            / "store"
            / "select"
            / first["stages"]["generate"]["select"]["key"]
            / "stats.json"
        ).read_text()
    )
    assert stats["stages"]["seed"]["out"] == 8 == stats["stages"]["reverse"]["in"]
    assert stats["stages"]["select"]["out"] == first["stages"]["generate"]["select"]["rows"]
    assert set(stats["translator_wins"]) == {"smollm2-greedy", "smollm2-sampled"}
    assert sum(stats["translator_wins"].values()) >= sum(stats["translator_wins_kept"].values()) > 0
    counts = dict(teacher_server.teacher.counts)
    second = run(compose_cfg(base + ["generate.selection=naive"]), tmp_path / "b")
    assert teacher_server.teacher.counts == counts  # no teacher or QE call repeated
    assert second["backend_calls"] == 0
    assert second["stages"]["generate"]["qe"]["key"] == first["stages"]["generate"]["qe"]["key"]
    assert (
        second["stages"]["generate"]["select"]["key"]
        != first["stages"]["generate"]["select"]["key"]
    )


def _cli(args: list[str], run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "xlexp", *args, f"hydra.run.dir={run_dir}"]


def _env() -> dict:
    return {**os.environ, "WANDB_DISABLED": "true", "PYTHONPATH": str(ROOT)}


def test_killed_run_resumes_redoing_at_most_one_batch(tmp_path, tiny_model_dir):
    teacher = Teacher(delay=0.4)
    with FakeOpenAI(teacher) as srv:
        # One request in flight: the stage runs one batch at a time, so the kill lands mid-stage.
        # (A wider window is killed mid-window: tests/test_transport.py.)
        args = overrides(
            srv.base_url,
            tiny_model_dir,
            tmp_path / "store",
            stages="[generate]",
            **{"teacher.max_concurrency": "1"},
        )
        proc = subprocess.Popen(
            _cli(args, tmp_path / "killed"),
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        parts = tmp_path / "store" / "reverse"
        deadline = time.time() + 120
        while time.time() < deadline and not list(parts.glob(".partial-*/parts/batch-*.jsonl")):
            time.sleep(0.05)
        time.sleep(0.5)  # into the next batch
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done_parts = len(list(parts.glob(".partial-*/parts/batch-*.jsonl")))
        assert 1 <= done_parts < 4, "the kill must land in the middle of the reverse stage"
        before = teacher.counts.get("reverse", 0)

        cfg = compose_cfg(args)
        summary = run(cfg, tmp_path / "resumed")
        assert summary["stages"]["generate"]["reverse"]["out"] == 8
        assert before >= 2 * done_parts
        redone = teacher.counts["reverse"] - 8
        assert 0 <= redone <= 2, f"redid {redone} reverse calls; a batch is 2"
        assert not list(parts.glob(".partial-*"))


def test_two_processes_produce_an_artifact_once(tmp_path, tiny_model_dir):
    teacher = Teacher(delay=0.05)
    with FakeOpenAI(teacher) as srv:
        args = overrides(srv.base_url, tiny_model_dir, tmp_path / "store", stages="[generate]")
        procs = [
            subprocess.Popen(
                _cli(args, tmp_path / f"p{i}"),
                env=_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for i in range(2)
        ]
        for p in procs:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err.decode()[-2000:]
    assert teacher.counts["reverse"] == 8 and teacher.counts["refine"] == 8
    assert len(list((tmp_path / "store" / "select").iterdir())) == 1


def test_models_share_one_backend_per_model(tmp_path, tiny_card):
    models = Models(Store(tmp_path))
    a = models.role("teacher", tiny_card(name="a"))
    b = models.role("judge", tiny_card(name="b", sampling={"temperature": 0.7}))
    assert a.backend is b.backend
    models.close()


def test_data_size_beyond_the_dataset_fails_before_training(
    tmp_path, tiny_model_dir, teacher_server
):
    from xlexp.config import ConfigError

    args = overrides(
        teacher_server.base_url,
        tiny_model_dir,
        tmp_path / "store",
        stages="[generate,sft]",
        data_size="1k",
    )
    with pytest.raises(ConfigError) as err:
        run(compose_cfg(args), tmp_path / "run")
    assert err.value.key == "data_size" and "1000" in str(err.value)
    assert not (tmp_path / "store" / "sft").exists()

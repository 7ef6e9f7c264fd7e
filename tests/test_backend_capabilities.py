"""Backends declare what they can do on the class. A remote backend registered from this file
alone is checked by the run's preflight and has several batches in flight; a backend that is not
trainable is refused as the SFT student, a trainable one accepted."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from fakeserver import FakeOpenAI, Reply
from hydra import compose, initialize_config_dir

from xlexp.config import ConfigError, register
from xlexp.llm import BACKENDS, Backend, Completion, Conversation, Sampling
from xlexp.llm.backends import backend_class, endpoint_of
from xlexp.llm.preflight import PreflightError
from xlexp.parallel import batches_in_flight, is_remote
from xlexp.roles import Models, chat_stage
from xlexp.run import preflight
from xlexp.sft import config as sft_config
from xlexp.store import Store

ROOT = Path(__file__).resolve().parents[1]
register()


class PlainHTTPBackend(Backend):
    """A remote backend of its own: one plain HTTP request per chat, one after another within a
    batch (its concurrency can only come from xlexp keeping several batches in flight)."""

    remote = True
    preflight = True

    def __init__(self, card: Any):
        self.card = card

    @classmethod
    def endpoint(cls, card: Any) -> str:
        return f"plain-http {card.base_url}"

    @classmethod
    def check_server(cls, role: str, card: Any) -> list[str]:
        with urllib.request.urlopen(f"{card.base_url}/models", timeout=5) as answer:
            served = [m["id"] for m in json.load(answer)["data"]]
        if str(card.model) in served:
            return []
        return [f"{role}: {card.base_url} does not serve {role}.model {card.model!r}"]

    def generate(
        self, conversations: list[Conversation], sampling: Sampling, sample_index: int = 0,
        adapter: str | None = None,
    ) -> list[Completion]:
        out = []
        for conversation in conversations:
            body = json.dumps({"model": self.card.model, "messages": conversation}).encode()
            request = urllib.request.Request(f"{self.card.base_url}/chat/completions", body,
                                             {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as answer:
                text = json.load(answer)["choices"][0]["message"]["content"]
            out.append(Completion(text=text))
        return out


class LocalTrainable(Backend):
    trainable = True


@pytest.fixture
def plugins():
    BACKENDS.register("plain_http", PlainHTTPBackend)
    BACKENDS.register("local_trainable", LocalTrainable)
    yield
    BACKENDS.unregister("plain_http")
    BACKENDS.unregister("local_trainable")


def _cfg(*overrides: str) -> Any:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_built_in_backends_declare_what_they_can_do():
    flags = {name: (cls.remote, cls.trainable, cls.preflight)
             for name, cls in ((n, BACKENDS.get(n)) for n in ("hf", "vllm", "openai"))}
    assert flags == {"hf": (False, True, False), "vllm": (False, True, False),
                     "openai": (True, False, True)}


def test_preflight_checks_a_registered_remote_backend(plugins, tmp_path):
    with FakeOpenAI(served=["served-model"]) as srv:
        args = [
            "stages=[generate]",
            f"store_dir={tmp_path / 'store'}",
            "teacher.backend=plain_http",
            f"teacher.base_url={srv.base_url}",
            "teacher.gguf_file=null",
        ]
        with pytest.raises(PreflightError) as err:
            preflight(_cfg(*args, "teacher.model=not-served"))
        assert err.value.lines == [
            f"teacher: {srv.base_url} does not serve teacher.model 'not-served'"
        ]
        preflight(_cfg(*args, "teacher.model=served-model"))  # served: passes
        assert srv.calls == 0  # the listing only, no chat call


def test_a_registered_remote_backend_has_several_batches_in_flight(plugins, tmp_path):
    lock = threading.Lock()
    now = {"in_flight": 0, "most": 0}

    def slow(body: dict) -> str | Reply:
        with lock:
            now["in_flight"] += 1
            now["most"] = max(now["most"], now["in_flight"])
        time.sleep(0.2)
        with lock:
            now["in_flight"] -= 1
        return "answer to " + body["messages"][-1]["content"]

    with FakeOpenAI(slow) as srv:
        card = _cfg(
            f"teacher.base_url={srv.base_url}",
            "teacher.backend=plain_http",
            "teacher.model=m",
            "teacher.gguf_file=null",
            "teacher.max_concurrency=4",
        ).teacher
        assert is_remote(card) and batches_in_flight(card, 2) == 4
        assert endpoint_of(card) == f"plain-http {srv.base_url}"
        store = Store(tmp_path / "store")
        models = Models(store)
        inputs = [{"id": i, "q": f"question {i}"} for i in range(8)]
        started = time.time()
        art = chat_stage(
            store,
            "probe",
            "k1",
            inputs,
            models.role("teacher", card),
            build=lambda batch: [[{"role": "user", "content": r["q"]}] for r in batch],
            parse=lambda batch, outs: [
                {"id": r["id"], "a": o.text} for r, o in zip(batch, outs, strict=True)
            ],
            batch_size=2,
        )
        elapsed = time.time() - started
        models.close()
    rows = [json.loads(line) for line in (art.path / "rows.jsonl").read_text().splitlines()]
    assert sorted(r["a"] for r in rows) == sorted(f"answer to question {i}" for i in range(8))
    # 4 batches of 2 sequential requests, all 4 batches at once: 4 requests in flight, 2 rounds.
    assert now["most"] == 4
    assert elapsed < 8 * 0.2


def test_sft_refuses_a_student_backend_that_cannot_train(plugins):
    args = ["stages=[sft]", "model.gguf_file=null", "model.model=m"]
    with pytest.raises(ConfigError) as err:
        sft_config.validate(_cfg(*args, "model.backend=openai"), runs=True)
    assert err.value.key == "model.backend" and "trainable backend" in str(err.value)
    assert backend_class(_cfg(*args, "model.backend=local_trainable").model).trainable
    sft_config.validate(_cfg(*args, "model.backend=local_trainable"), runs=True)  # accepted

"""Fine-tuned systems through an OpenAI-compatible server (vLLM): adapters are served, not merged.

The server here is tests/fakeserver.py speaking vLLM's LoRA protocol (`/models` lists LoRA modules
with their path as `root`; `/load_lora_adapter` loads one at run time); .ci/run checks the same
code against a real vLLM server.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fakeserver import FakeOpenAI, Reply
from omegaconf import OmegaConf

from xlexp.config import LLMConfig
from xlexp.llm import Sampling, load
from xlexp.llm.base import ResponseCache
from xlexp.llm.openai import OpenAIBackend


def card(base_url: str) -> LLMConfig:
    return OmegaConf.structured(
        LLMConfig(
            name="student", backend="openai", model="base-model", base_url=base_url, timeout_s=5.0
        )
    )


def by_model(body: dict) -> Reply:
    return Reply(text=f"{body['model']} says hi")


def adapters(tmp_path: Path, n: int) -> list[str]:
    out = []
    for i in range(n):
        d = tmp_path / f"sft{i}" / "adapter"
        d.mkdir(parents=True)
        (d / "adapter_config.json").write_text("{}")
        out.append(str(d))
    return out


CONV = [[{"role": "user", "content": "hello"}]]


def test_adapter_started_with_lora_modules_is_named_as_the_model(tmp_path: Path) -> None:
    (adapter,) = adapters(tmp_path, 1)
    with FakeOpenAI(by_model, model="base-model") as srv:
        srv.lora_modules["tuned-deu"] = str(Path(adapter).resolve())
        backend = OpenAIBackend(card(srv.base_url))
        tuned = backend.generate(CONV, Sampling(), adapter=adapter)
        base = backend.generate(CONV, Sampling())
    assert [c.text for c in tuned] == ["tuned-deu says hi"]
    assert [c.text for c in base] == ["base-model says hi"]
    assert srv.lora_loads == []  # already served: nothing loaded


def test_two_adapters_are_loaded_once_each_on_one_server(tmp_path: Path) -> None:
    first, second = adapters(tmp_path, 2)
    with FakeOpenAI(by_model, model="base-model") as srv:
        srv.lora_loading = True
        model = load(card(srv.base_url), tmp_path, ResponseCache(tmp_path / "cache.sqlite"))
        answers = {a: model.chat(CONV * 2, adapter=a)[0].text for a in (first, second)}
        again = OpenAIBackend(card(srv.base_url)).generate(CONV, Sampling(), adapter=first)
    assert [body["lora_path"] for body in srv.lora_loads] == [
        str(Path(first).resolve()), str(Path(second).resolve())
    ]  # a second backend on the same server finds the loaded adapter in /models
    names = [body["lora_name"] for body in srv.lora_loads]
    assert len(set(names)) == 2
    assert answers == {first: f"{names[0]} says hi", second: f"{names[1]} says hi"}
    assert again[0].text == answers[first]
    assert {r["model"] for r in srv.requests} == set(names)


def test_server_that_cannot_serve_the_adapter_fails_before_any_answer(tmp_path: Path) -> None:
    (adapter,) = adapters(tmp_path, 1)
    with FakeOpenAI(by_model, model="base-model") as srv:  # no --lora-modules, no runtime loading
        backend = OpenAIBackend(card(srv.base_url))
        with pytest.raises(RuntimeError, match="VLLM_ALLOW_RUNTIME_LORA_UPDATING") as err:
            backend.generate(CONV, Sampling(), adapter=adapter)
    assert "--lora-modules" in str(err.value) and srv.calls == 0

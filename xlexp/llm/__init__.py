"""Model roles: `load(card, store_root)` gives a cached ChatModel whatever the backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xlexp.llm.base import ChatModel, Completion, Conversation, ResponseCache, Sampling, identity_of

__all__ = ["ChatModel", "Completion", "Conversation", "ResponseCache", "Sampling", "load"]


def _loader(store_root: Path):
    def load_backend(card: Any):
        # Import only the selected backend: vllm and its CUDA stack are optional.
        if card.backend == "hf":
            from xlexp.llm.hf import HFBackend

            return HFBackend(card, models_dir=store_root / "models")
        if card.backend == "openai":
            from xlexp.llm.openai import OpenAIBackend

            return OpenAIBackend(card)
        if card.backend == "vllm":
            from xlexp.llm.vllm import VLLMBackend

            return VLLMBackend(card, models_dir=store_root / "models")
        raise ValueError(f"unknown backend {card.backend!r}")

    return load_backend


def load(card: Any, store_root: str | Path, cache: ResponseCache | None = None) -> ChatModel:
    store_root = Path(store_root)
    cache = cache or ResponseCache(store_root / "cache.sqlite")
    return ChatModel(card, cache, _loader(store_root), identity_of(card))

"""Model roles: `load(card, store_root)` gives a cached ChatModel whatever the backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xlexp.llm.base import ChatModel, Completion, Conversation, ResponseCache, Sampling, identity_of

__all__ = ["ChatModel", "Completion", "Conversation", "ResponseCache", "Sampling", "load"]


def _loader(store_root: Path, pool: dict[str, Any] | None):
    def load_backend(card: Any):
        if pool is None:
            return _new_backend(card)
        # Roles played by the same model (the tiny profile: all of them) share one loaded copy.
        key = identity_of(card)
        if getattr(card, "batch_api", False):  # same model, other transport: not shared
            key += ":batch_api"
        if key not in pool:
            pool[key] = _new_backend(card)
        return pool[key]

    def _new_backend(card: Any):
        # Import only the selected backend: vllm and its CUDA stack are optional.
        if card.backend == "hf":
            from xlexp.llm.hf import HFBackend

            return HFBackend(card, models_dir=store_root / "models")
        if card.backend == "openai" and getattr(card, "batch_api", False):
            from xlexp.llm.openai_batch import OpenAIBatchBackend

            return OpenAIBatchBackend(card, store_root)
        if card.backend == "openai":
            from xlexp.llm.openai import OpenAIBackend

            return OpenAIBackend(card)
        if card.backend == "vllm":
            from xlexp.llm.vllm import VLLMBackend

            return VLLMBackend(card, models_dir=store_root / "models")
        raise ValueError(f"unknown backend {card.backend!r}")

    return load_backend


def load(
    card: Any, store_root: str | Path, cache: ResponseCache | None = None, pool: dict[str, Any] | None = None
) -> ChatModel:
    """A cached model role; `pool` (identity -> backend) lets roles share a loaded model."""
    store_root = Path(store_root)
    # `is None`, not `or`: an empty cache has len 0 and is falsy, but it is the one asked for.
    cache = cache if cache is not None else ResponseCache(store_root / "cache.sqlite")
    return ChatModel(card, cache, _loader(store_root, pool), identity_of(card))

"""The backend registry: a card's `backend` names a `Backend` subclass, imported when first
asked for (vLLM and its CUDA stack stay optional). What a backend can do (remote, trainable,
preflight, its window) is declared on the class, so the run, SFT, preflight and the plan ask
the class instead of comparing backend names.
"""

from __future__ import annotations

from typing import Any

from xlexp.llm.base import Backend
from xlexp.registry import Registry

BACKENDS: Registry[Backend] = Registry("backend")
BACKENDS.register("hf", "xlexp.llm.hf:HFBackend")
BACKENDS.register("openai", "xlexp.llm.openai:OpenAIBackend")
BACKENDS.register("vllm", "xlexp.llm.vllm:VLLMBackend")


def backend_class(card: Any, key: str | None = None) -> type[Backend]:
    """The class of the card's backend (its module imported, nothing loaded); an unknown name
    is a ConfigError naming `key` (default `backend`)."""
    return BACKENDS.get(str(card.backend), key)


def endpoint_of(card: Any) -> str:
    """Where a role's calls go, for messages: the server URL, or the local backend and model."""
    return backend_class(card).endpoint(card)

"""Model roles: `load(card, store_root)` gives a cached ChatModel whatever the backend.

Backends are found by name in `BACKENDS` (`xlexp/llm/backends.py`; a card's `backend`); each
is imported only when a card names it, so vLLM and its CUDA stack stay optional. A new backend
is one file with a `Backend` subclass declaring what it can do, and one `BACKENDS.register`
line (in backends.py, or in the caller's own code).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from xlexp.llm.backends import BACKENDS, backend_class
from xlexp.llm.base import (
    Backend,
    Completion,
    Conversation,
    ResponseCache,
    Sampling,
    identity_of,
)
from xlexp.llm.chat import ChatModel

__all__ = [
    "BACKENDS",
    "Backend",
    "backend_class",
    "ChatModel",
    "Completion",
    "Conversation",
    "ResponseCache",
    "Sampling",
    "load",
]

_POOL_LOCK = threading.Lock()
_LOAD_LOCKS: dict[str, threading.Lock] = {}


def open_backend(card: Any, store_root: Path, pool: dict[str, Backend] | None = None) -> Backend:
    """The card's backend; with a `pool`, roles played by the same model share one copy."""
    cls = backend_class(card)
    if pool is None:
        return cls.open(card, store_root)
    key = cls.pool_key(card)
    # Roles that run together may load at the same moment: one load per model, while a
    # different model loads beside it.
    with _POOL_LOCK:
        lock = _LOAD_LOCKS.setdefault(key, threading.Lock())
    with lock:
        if key not in pool:
            pool[key] = cls.open(card, store_root)
        return pool[key]


def load(
    card: Any,
    store_root: str | Path,
    cache: ResponseCache | None = None,
    pool: dict[str, Backend] | None = None,
) -> ChatModel:
    """A cached model role; `pool` (pool key -> backend) lets roles share a loaded model."""
    store_root = Path(store_root)
    # `is None`, not `or`: an empty cache has len 0 and is falsy, but it is the one asked for.
    cache = cache if cache is not None else ResponseCache(store_root / "cache.sqlite")
    return ChatModel(card, cache, lambda c: open_backend(c, store_root, pool), identity_of(card))

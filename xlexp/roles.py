"""The model roles of one run and the chat-stage helper every stage shell uses.

`Models` holds one response cache and one backend per distinct model (loaded lazily, shared by
roles that name the same model). `chat_stage` is the store shell of a prompt-in, rows-out
stage: prompts in batches, finished batches kept as parts, rows and counted rejects out.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xlexp.llm import ChatModel, ResponseCache, load
from xlexp.llm.card import card_key
from xlexp.parallel import batches_in_flight
from xlexp.plain import plain
from xlexp.store import Artifact, Parts, Store, write_jsonl

__all__ = ["Models", "ProbeModels", "card_key", "chat_stage", "plain", "reasons", "split_rejects"]


@dataclass
class Models:
    """Model roles for one run: one cache, and one backend per distinct model, loaded lazily."""

    store: Store
    cache: ResponseCache = field(init=False)
    _roles: dict[str, ChatModel] = field(default_factory=dict)
    _backends: dict[str, Any] = field(default_factory=dict)
    # Stage threads (languages, roles in flight together) may ask for one role at once: one
    # ChatModel per role, or a lost copy's calls would be missing from the cost ledger.
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.cache = ResponseCache(self.store.root / "cache.sqlite")

    def role(self, role: str, card: Any) -> ChatModel:
        with self._lock:
            if role not in self._roles:
                self._roles[role] = load(card, self.store.root, self.cache, pool=self._backends)
                self._roles[role].role = role  # failures name the role, not only the card
            return self._roles[role]

    def backend_calls(self) -> int:
        return sum(m.usage.calls for m in self._roles.values())

    def roles(self) -> dict[str, ChatModel]:
        """The roles loaded so far (the cost ledger reads their usage)."""
        return dict(self._roles)

    def close(self) -> None:
        for backend in self._backends.values():
            close = getattr(backend, "close", None)
            if close:
                close()
        self._backends.clear()


class _Unused:
    """A role as a probed shell sees it: it may be asked for and for a sampling, never called."""

    def __init__(self, card: Any):
        self.card = card

    def sampling(self, **kwargs: Any) -> None:
        return None

    def chat(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a read-only probe called a model")


class ProbeModels:
    """The roles of a read-only run: shells call them only inside `produce`, which never runs."""

    def role(self, role: str, card: Any) -> _Unused:
        return _Unused(card)


def split_rejects(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    ok = [r for r in rows if "reject" not in r]
    return ok, [r for r in rows if "reject" in r]


def reasons(rejects: list[dict]) -> dict:
    """`{"reject_reasons": {reason: count}}`, or {} when nothing was rejected."""
    counts: dict[str, int] = {}
    for r in rejects:
        counts[r["reject"]] = counts.get(r["reject"], 0) + 1
    return {"reject_reasons": counts} if counts else {}


def chat_stage(
    store: Store,
    stage: str,
    key: str,
    inputs: list[dict],
    model: ChatModel,
    build: Callable[[list[dict]], list[Any]],
    parse: Callable[[list[dict], list[Any]], list[dict]],
    batch_size: int,
    sampling: Any = None,
) -> Artifact:
    """A chat stage: prompts in batches (finished batches kept as parts), rows + rejects out."""

    def produce(work: Path, parts: Parts) -> dict:
        def run_batch(batch: list[dict]) -> list[dict]:
            return parse(batch, model.chat(build(batch), sampling))

        # A served role keeps twice its window queued in batches: the server never waits for
        # one batch's slowest answer.
        workers = batches_in_flight(model.card, batch_size)
        rows = parts.map_batches(
            "batch", inputs, batch_size, run_batch, desc=stage, workers=workers
        )
        ok, rejects = split_rejects(rows)
        write_jsonl(work / "rows.jsonl", ok)
        write_jsonl(work / "rejects.jsonl", rejects)
        return {"in": len(inputs), "out": len(ok), "rejects": len(rejects), **reasons(rejects)}

    artifact, _ = store.build(stage, key, produce)
    return artifact

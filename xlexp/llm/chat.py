"""`ChatModel`: a model role, the response cache in front of its backend, and the usage it
counts (calls, cache hits, tokens, failures) for the cost ledger.
"""

from __future__ import annotations

import contextvars
import copy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from xlexp.failures import BackendFailure, RoleFailures
from xlexp.llm.backends import backend_class, endpoint_of
from xlexp.llm.base import (
    COMPLETION_FIELDS,
    Backend,
    Completion,
    Conversation,
    ResponseCache,
    Sampling,
    price_factor,
    request_key,
)


@dataclass
class Usage:
    calls: int = 0  # completions computed by the backend (cache misses)
    cache_hits: int = 0
    errors: int = 0  # content rejects by the backend (e.g. 400: prompt too long)
    failures: int = 0  # calls that got no answer (endpoint down, auth, 5xx/429 after retries)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)
    # Calls answered per replica URL, when the role's base_url lists several.
    replicas: dict[str, int] = field(default_factory=dict)

    def cost(self, card: Any) -> float:
        return (
            self.prompt_tokens * float(card.price_in_per_mtok)
            + self.completion_tokens * float(card.price_out_per_mtok)
        ) / 1e6 * price_factor(card)


# Where a model call is charged besides its role's own Usage: the cost ledger sets a fresh dict
# (role object -> Usage) around each stage build, so builds that run at the same time on other
# threads are told apart. Threads a build starts must run in a copy of its context.
CHARGE_TO: contextvars.ContextVar[dict[Any, Usage] | None] = contextvars.ContextVar(
    "charge_to", default=None
)


class ChatModel:
    """A model role: cache in front, backend behind, loaded lazily on the first miss."""

    def __init__(
        self, card: Any, cache: ResponseCache, loader: Callable[[Any], Backend], identity: str
    ):
        self.card = card
        self.name = card.name
        self.cache = cache
        self._loader = loader
        self._backend: Backend | None = None
        self.identity = identity
        self.role: str | None = None  # the role it plays (teacher, judge, ...), for messages
        self.usage = Usage()
        self._lock = threading.Lock()  # loading the backend
        self._usage_lock = threading.Lock()  # stage threads of one role share the counters

    @property
    def backend(self) -> Backend:
        with self._lock:
            if self._backend is None:
                self._backend = self._loader(self.card)
            return self._backend

    def sampling(self, **overrides: Any) -> Sampling:
        s = self.card.sampling
        base = dict(temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, seed=s.seed)
        base.update(overrides)
        return Sampling(**base)

    def cache_key(
        self, conversation: Conversation, sampling: Sampling, sample_index: int, adapter: str | None
    ) -> str:
        return request_key(self.identity, conversation, sampling, sample_index, adapter)

    def chat(
        self,
        conversations: list[Conversation],
        sampling: Sampling | None = None,
        sample_index: int = 0,
        adapter: str | None = None,
    ) -> list[Completion]:
        """Completions for every conversation, from the cache where possible.

        `adapter` names a LoRA adapter dir (hf: PEFT; vllm: LoRARequest); it is part of the key.
        Answers and content rejects are returned; only answers are cached. Calls that got no
        answer (backend failures) raise BackendFailure after every chunk's answers are cached,
        so the caller finishes nothing with them and a rerun asks again only for those.
        """
        sampling = sampling or self.sampling()
        keys = [self.cache_key(c, sampling, sample_index, adapter) for c in conversations]
        hits = self.cache.get_many(sorted(set(keys)))
        out: list[Completion | None] = [None] * len(conversations)
        misses: dict[str, int] = {}
        for i, key in enumerate(keys):
            if key in hits:
                out[i] = Completion(**{**hits[key], "cached": True})
            elif key not in misses:
                misses[key] = i
        with self._usage_lock:
            for usage in self._usages():
                usage.cache_hits += len(conversations) - len(misses)
        todo = list(misses.items())
        fresh_answers: dict[str, Completion] = {}
        failed = RoleFailures(self.role or self.name, endpoint_of(self.card))
        kwargs = {"adapter": adapter} if adapter else {}
        backend = self.backend if todo else None
        stream = getattr(backend, "stream", None)
        if stream is not None:
            # A streaming backend (openai) keeps its window full over all misses; each group of
            # answers that arrived together is cached at once: a kill loses what was in flight.
            started = time.time()
            for group in stream(
                [conversations[i] for _, i in todo], sampling, sample_index, **kwargs
            ):
                self._keep([(todo[j][0], comp) for j, comp in group], fresh_answers, failed)
            with self._usage_lock:
                self.usage.seconds += time.time() - started
        else:
            chunk = self.chunk_size()
            # Misses go to the backend in chunks, each cached as soon as it returns: a killed
            # run loses at most one chunk of GPU work or API spend.
            for start in range(0, len(todo), chunk):
                part = todo[start : start + chunk]
                started = time.time()
                results = backend.generate(
                    [conversations[i] for _, i in part], sampling, sample_index, **kwargs
                )
                with self._usage_lock:
                    self.usage.seconds += time.time() - started
                self._keep(
                    [(key, comp) for (key, _), comp in zip(part, results, strict=True)],
                    fresh_answers,
                    failed,
                )
        if failed.errors:
            # Raised after every answer is cached: the caller finishes nothing with these calls,
            # and a rerun asks again only for them. A breaker that opened: stop the stage.
            raise BackendFailure([failed], stop=failed.stopped)
        for i, key in enumerate(keys):
            if out[i] is None:  # a copy each: a conversation asked twice gets two objects
                out[i] = copy.copy(fresh_answers[key])
        return out  # type: ignore[return-value]

    def _keep(
        self,
        results: list[tuple[str, Completion]],
        answers: dict[str, Completion],
        failed: RoleFailures,
    ) -> None:
        """Count fresh completions, cache the answers (content rejects and failures are not
        answers), note failures by error, note all."""
        fresh: dict[str, dict] = {}
        with self._usage_lock:
            usages = self._usages()
            for key, comp in results:
                for usage in usages:
                    usage.calls += 1
                    usage.prompt_tokens += comp.prompt_tokens
                    usage.completion_tokens += comp.completion_tokens
                    usage.failures += comp.failed
                    usage.errors += not comp.ok and not comp.failed
                    if comp.replica is not None:
                        usage.replicas[comp.replica] = usage.replicas.get(comp.replica, 0) + 1
                if comp.failed:
                    failed.errors[comp.error or comp.failure] += 1
                    failed.stopped |= comp.failure == "breaker"
                elif comp.ok:
                    fresh[key] = {k: v for k, v in vars(comp).items() if k in COMPLETION_FIELDS}
                answers[key] = comp
        if fresh:
            self.cache.put_many(fresh)

    def _usages(self) -> list[Usage]:
        """The role's Usage, and the current build's charge for this role if a ledger set one."""
        charge = CHARGE_TO.get()
        if charge is None:
            return [self.usage]
        return [self.usage, charge.setdefault(self, Usage())]

    def chunk_size(self) -> int:
        """Items per backend call between cache writes (the backend class decides)."""
        return max(1, backend_class(self.card).chunk_size(self.card))

    def close(self) -> None:
        close = getattr(self._backend, "close", None)
        if close:
            close()
        self._backend = None

"""The one backend protocol every model role goes through, and the response cache before it.

A backend takes a whole batch of chats and returns one Completion per chat (text, optional
top-k token logprobs, token usage, or an error string for a permanent failure). `ChatModel`
wraps a backend with the persistent cache keyed by (backend identity, model, messages,
sampling, sample index) and loads the backend only on the first cache miss, so a rerun whose
answers are all cached loads no model and calls no API.
"""

from __future__ import annotations

import contextvars
import copy
import errno
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from filelock import FileLock

from xlexp.errors import ConfigError
from xlexp.failures import BackendFailure, RoleFailures
from xlexp.store import canonical, digest

log = logging.getLogger(__name__)

Message = dict[str, str]  # {"role": ..., "content": ...}
Conversation = list[Message]


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    seed: int | None = None
    logprobs: int | None = None  # top-k alternatives per generated token; None: none


@dataclass
class Completion:
    text: str = ""
    logprobs: list[dict[str, float]] | None = None  # per generated token: {token: logprob}
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None  # why there is no usable answer (a content reject or a failure)
    # Set when the call got no answer at all (refused, timeout, 5xx/429 after retries, auth,
    # unknown model, no content): the kind, e.g. "connection". None for an answer, and for a
    # content reject (the request itself is unusable, e.g. 400 context length): that is data.
    failure: str | None = None
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and self.failure is None

    @property
    def failed(self) -> bool:
        return self.failure is not None


class Backend:
    """A model engine behind `ChatModel`: a whole batch of chats in, one Completion each out.

    Subclasses register by name in `xlexp.llm.BACKENDS`; a card's `backend` picks one. The
    classmethods let the rest of xlexp treat every backend alike: validation asks `check_card`,
    the cache wrapper asks `chunk_size`, the role pool asks `pool_key` and `open`.
    """

    def generate(
        self, conversations: list[Conversation], sampling: Sampling, sample_index: int = 0, adapter: str | None = None
    ) -> list[Completion]:
        raise NotImplementedError

    def close(self) -> None:
        """Free the engine (GPU memory, connections)."""

    @classmethod
    def open(cls, card: Any, store_root: Path) -> Backend:
        """The backend for `card`; `store_root` holds converted models and Batch API records."""
        return cls(card)  # type: ignore[call-arg]

    @classmethod
    def check_card(cls, key: str, card: Any, cuda: Callable[[], bool]) -> None:
        """Raise ConfigError naming `key.<field>` for a card this backend cannot serve.
        `cuda()` says whether a CUDA GPU is visible (asked only by backends that care)."""
        if card.sampling.max_tokens < 1:
            raise ConfigError(f"{key}.sampling.max_tokens", "must be >= 1")
        if getattr(card, "batch_api", False):
            raise ConfigError(f"{key}.batch_api", f"the Batch API needs backend openai, not {card.backend!r}")

    @classmethod
    def chunk_size(cls, card: Any) -> int:
        """Requests per backend call between cache writes: big enough to keep the engine busy."""
        return 4096

    @classmethod
    def pool_key(cls, card: Any) -> str:
        """Roles whose cards give the same pool key share one loaded backend."""
        return identity_of(card)


class CacheError(Exception):
    """The response cache file is damaged or cannot be written: one line naming it."""


class ResponseCache:
    """SQLite table key -> completion JSON, shared by all backends and processes (WAL mode).

    Opened on first use: a rerun whose artifacts are all finished never touches it, so a
    finished store on a read-only filesystem can be reused. A stored value that does not
    decode is a miss (asked again, then overwritten); a damaged database file or a full disk
    stops the run with one line naming the file.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._local = threading.local()
        self._ready = False
        self._setup_lock = threading.Lock()

    def _setup(self) -> None:
        with self._setup_lock:
            if self._ready:
                return
            with self._guard():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # Switching to WAL needs an exclusive lock and SQLite answers "database is locked"
                # at once (no busy wait) when another process is opening the file: serialize setup.
                with FileLock(str(self.path) + ".lock"), self._raw_conn() as conn:
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT, created REAL)")
            self._ready = True

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """SQLite and filesystem errors as one line naming the cache file and what to do."""
        try:
            yield
        except sqlite3.DatabaseError as e:
            text = str(e)
            if "full" in text or "disk I/O" in text:
                raise CacheError(f"{self.path}: cannot write the response cache ({text}); free space and rerun") from None
            if isinstance(e, sqlite3.OperationalError) and "locked" in text:
                raise
            raise CacheError(
                f"{self.path}: damaged response cache ({text}); move it aside and rerun "
                "(its answers are asked again)"
            ) from None
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise CacheError(f"{self.path}: no space left on device; free space and rerun") from None
            if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise CacheError(f"{self.path}: the response cache cannot be written ({e.strerror}); "
                                 "a read-only store can only be reused, not extended") from None
            raise

    def _raw_conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60)
            # Answers are stored as they arrive, a few per commit: with WAL, NORMAL skips the
            # fsync per commit (10x the CPU, 20x the wall time of the write) yet a committed
            # answer survives a killed process; only an OS crash can drop the last few, and a
            # dropped answer is asked for again.
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def _conn(self) -> sqlite3.Connection:
        self._setup()
        return self._raw_conn()

    def get_many(self, keys: list[str]) -> dict[str, dict]:
        found: dict[str, dict] = {}
        if not keys:
            return found
        conn = self._conn()
        bad = 0
        with self._guard():
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for key, value in conn.execute(f"SELECT key, value FROM responses WHERE key IN ({marks})", chunk):
                    decoded = _decode(value)
                    if decoded is None:
                        bad += 1
                    else:
                        found[key] = decoded
        if bad:
            log.warning("%s: %d stored answers do not decode; asking for them again", self.path, bad)
        return found

    def put_many(self, items: dict[str, dict]) -> None:
        conn = self._conn()
        with self._guard(), conn:
            conn.executemany(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?)",
                [(k, json.dumps(v, ensure_ascii=False), time.time()) for k, v in items.items()],
            )

    def __len__(self) -> int:
        conn = self._conn()
        with self._guard():
            return conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]


_COMPLETION_FIELDS = {f.name for f in fields(Completion)} - {"error", "failure", "cached"}


def _decode(value: Any) -> dict | None:
    """A stored answer, or None when it is not one (garbled bytes, wrong shape, no text)."""
    try:
        decoded = json.loads(value)
    except (TypeError, ValueError):
        return None
    if not isinstance(decoded, dict) or not isinstance(decoded.get("text"), str):
        return None
    if decoded.get("error") is not None or decoded.get("failure") is not None:
        return None  # never a success: asked again
    return {k: v for k, v in decoded.items() if k in _COMPLETION_FIELDS}


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

    def cost(self, card: Any) -> float:
        return (
            self.prompt_tokens * float(card.price_in_per_mtok)
            + self.completion_tokens * float(card.price_out_per_mtok)
        ) / 1e6 * price_factor(card)


# Where a model call is charged besides its role's own Usage: the cost ledger sets a fresh dict
# (role object -> Usage) around each stage build, so builds that run at the same time on other
# threads are told apart. Threads a build starts must run in a copy of its context.
CHARGE_TO: contextvars.ContextVar[dict[Any, Usage] | None] = contextvars.ContextVar("charge_to", default=None)


def price_factor(card: Any) -> float:
    """Share of the card's prices actually billed: the Batch API bills less."""
    return float(card.batch_price_factor) if getattr(card, "batch_api", False) else 1.0


def request_key(identity: str, conversation: Conversation, sampling: Sampling, sample_index: int, adapter: str | None) -> str:
    """The response cache key of one request (also the Batch API custom_id)."""
    return digest(
        {
            "identity": identity,
            "messages": conversation,
            "sampling": dict(vars(sampling)),  # its fields are plain values: no deep copy needed
            "sample": sample_index,
            "adapter": adapter,
        },
        n=32,
    )


class ChatModel:
    """A model role: cache in front, backend behind, loaded lazily on the first miss."""

    def __init__(self, card: Any, cache: ResponseCache, loader: Callable[[Any], Backend], identity: str):
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

    def cache_key(self, conversation: Conversation, sampling: Sampling, sample_index: int, adapter: str | None) -> str:
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
            for group in stream([conversations[i] for _, i in todo], sampling, sample_index, **kwargs):
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
                results = backend.generate([conversations[i] for _, i in part], sampling, sample_index, **kwargs)
                with self._usage_lock:
                    self.usage.seconds += time.time() - started
                self._keep([(key, comp) for (key, _), comp in zip(part, results, strict=True)], fresh_answers, failed)
        if failed.errors:
            # Raised after every answer is cached: the caller finishes nothing with these calls,
            # and a rerun asks again only for them. A breaker that opened: stop the stage.
            raise BackendFailure([failed], stop=failed.stopped)
        for i, key in enumerate(keys):
            if out[i] is None:  # a copy each: a conversation asked twice gets two objects
                out[i] = copy.copy(fresh_answers[key])
        return out  # type: ignore[return-value]

    def _keep(self, results: list[tuple[str, Completion]], answers: dict[str, Completion], failed: RoleFailures) -> None:
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
                if comp.failed:
                    failed.errors[comp.error or comp.failure] += 1
                    failed.stopped |= comp.failure == "breaker"
                elif comp.ok:
                    fresh[key] = {k: v for k, v in vars(comp).items() if k in _COMPLETION_FIELDS}
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
        from xlexp.llm import BACKENDS

        return max(1, BACKENDS.get(self.card.backend).chunk_size(self.card))

    def close(self) -> None:
        close = getattr(self._backend, "close", None)
        if close:
            close()
        self._backend = None


def identity_of(card: Any) -> str:
    """What determines a model's outputs besides the prompt: backend kind, model, revision."""
    # base_url is left out on purpose: the same model behind another server gives the same answers.
    return canonical(
        {
            "backend": card.backend,
            "model": card.model,
            "revision": card.revision,
            "gguf": card.gguf_file,
            "dtype": card.dtype,
            "chat_template": card.chat_template,
        }
    )


def endpoint_of(card: Any) -> str:
    """Where a role's calls go, for messages: the server URL, or the local backend and model."""
    base_url = getattr(card, "base_url", None)
    if card.backend == "openai":
        return f"{base_url or 'api.openai.com'} model {card.model}"
    return f"{card.backend} {card.model}"

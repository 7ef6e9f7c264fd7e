"""The one backend protocol every model role goes through, and the response cache before it.

A backend takes a whole batch of chats and returns one Completion per chat (text, optional
top-k token logprobs, token usage, or an error string for a permanent failure). The persistent
cache is keyed by (backend identity, model, messages, sampling, sample index); `ChatModel`
(xlexp/llm/chat.py) puts it in front of a backend and loads the backend only on the first cache
miss, so a rerun whose answers are all cached loads no model and calls no API.
"""

from __future__ import annotations

import errno
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

from filelock import FileLock

from xlexp.errors import ConfigError
from xlexp.plain import plain
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
    # Per generated token, the alternatives the engine listed, as listed: [token, logprob]
    # pairs, the sampled token only when it is among them (`logprobs` adds it first). A parser
    # that must read what alpaca_eval reads (only the listed top_logprobs) reads these.
    top_logprobs: list[list[tuple[str, float]]] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None  # why there is no usable answer (a content reject or a failure)
    # Set when the call got no answer at all (refused, timeout, 5xx/429 after retries, auth,
    # unknown model, no content): the kind, e.g. "connection". None for an answer, and for a
    # content reject (the request itself is unusable, e.g. 400 context length): that is data.
    failure: str | None = None
    cached: bool = False
    # The replica that answered, when the role's base_url lists several (the split of requests
    # per replica the run reports); None otherwise. Not cached: another run may ask another.
    replica: str | None = None

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
    the cache wrapper asks `chunk_size`, the role pool asks `pool_key` and `open`. The class
    flags say what it can do, so no caller compares backend names.
    """

    # Its requests go to a server: roles on it run beside others and keep several batches in
    # flight (`window`); a local engine uses the whole machine from one thread.
    remote: ClassVar[bool] = False
    # SFT can train a LoRA adapter on its model (a local model's weights).
    trainable: ClassVar[bool] = False
    # Preflight asks its server (`check_server`) before any stage runs.
    preflight: ClassVar[bool] = False

    @classmethod
    def window(cls, card: Any) -> int:
        """Requests the role's server takes at once (1 for a local engine)."""
        return int(card.max_concurrency) if cls.remote else 1

    @classmethod
    def endpoint(cls, card: Any) -> str:
        """Where the role's calls go, for messages."""
        return f"{card.backend} {card.model}"

    @classmethod
    def check_server(cls, role: str, card: Any) -> list[str]:
        """Problems with the role's server, one line each naming the role (empty: it serves
        the card's model). Asked by preflight when `preflight` is set."""
        return []

    def generate(
        self,
        conversations: list[Conversation],
        sampling: Sampling,
        sample_index: int = 0,
        adapter: str | None = None,
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
        if getattr(card, "batch_api", False):
            raise ConfigError(
                f"{key}.batch_api", f"the Batch API needs backend openai, not {card.backend!r}"
            )

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
                    conn.execute(
                        "CREATE TABLE IF NOT EXISTS responses "
                        "(key TEXT PRIMARY KEY, value TEXT, created REAL)"
                    )
            self._ready = True

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """SQLite and filesystem errors as one line naming the cache file and what to do."""
        try:
            yield
        except sqlite3.DatabaseError as e:
            text = str(e)
            if "full" in text or "disk I/O" in text:
                raise CacheError(
                    f"{self.path}: cannot write the response cache ({text}); free space and rerun"
                ) from None
            if isinstance(e, sqlite3.OperationalError) and "locked" in text:
                raise
            raise CacheError(
                f"{self.path}: damaged response cache ({text}); move it aside and rerun "
                "(its answers are asked again)"
            ) from None
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise CacheError(
                    f"{self.path}: no space left on device; free space and rerun"
                ) from None
            if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise CacheError(
                    f"{self.path}: the response cache cannot be written ({e.strerror}); "
                    "a read-only store can only be reused, not extended"
                ) from None
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
                for key, value in conn.execute(
                    f"SELECT key, value FROM responses WHERE key IN ({marks})", chunk
                ):
                    decoded = _decode(value)
                    if decoded is None:
                        bad += 1
                    else:
                        found[key] = decoded
        if bad:
            log.warning(
                "%s: %d stored answers do not decode; asking for them again", self.path, bad
            )
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


COMPLETION_FIELDS = {f.name for f in fields(Completion)} - {
    "error", "failure", "cached", "replica"
}


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
    if decoded.get("logprobs") is not None and "top_logprobs" not in decoded:
        return None  # stored before the listed alternatives were kept: a judge cannot read it
    return {k: v for k, v in decoded.items() if k in COMPLETION_FIELDS}


def price_factor(card: Any) -> float:
    """Share of the card's prices actually billed: the Batch API bills less."""
    return float(card.batch_price_factor) if getattr(card, "batch_api", False) else 1.0


def request_key(
    identity: str,
    conversation: Conversation,
    sampling: Sampling,
    sample_index: int,
    adapter: str | None,
) -> str:
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


# vLLM engine settings that place and pace a model (GPUs, memory, scheduling), not what it
# answers; every other engine setting (quantization, max_model_len, kv_cache_dtype, seed, ...)
# is part of the model's identity.
ENGINE_PLACEMENT = frozenset({
    "tensor_parallel_size", "pipeline_parallel_size", "distributed_executor_backend",
    "gpu_memory_utilization", "swap_space", "cpu_offload_gb", "max_num_seqs",
    "max_num_batched_tokens", "enforce_eager", "disable_log_stats",
})


def engine_identity(card: Any) -> dict:
    """The engine settings of a vLLM card that change its answers (other backends: none)."""
    if card.backend != "vllm":
        return {}
    engine = plain(getattr(card, "engine_kwargs", None)) or {}
    return {k: v for k, v in engine.items() if k not in ENGINE_PLACEMENT}


def identity_of(card: Any, engine: bool = True) -> str:
    """What determines a model's outputs besides the prompt: backend kind, model, revision, and
    (`engine`) its answer-changing vLLM engine settings."""
    # base_url is left out on purpose: the same model behind another server gives the same answers.
    found = engine_identity(card) if engine else {}
    return canonical(
        {
            "backend": card.backend,
            "model": card.model,
            "revision": card.revision,
            "gguf": card.gguf_file,
            "dtype": card.dtype,
            "chat_template": card.chat_template,
            **({"engine": found} if found else {}),  # none: the key it had before engines
        }
    )

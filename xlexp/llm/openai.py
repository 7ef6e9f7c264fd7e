"""Backend for any OpenAI-compatible chat server (OpenAI, vLLM `serve`, llama.cpp, ...).

Requests go through one long-lived asyncio transport (`xlexp.llm.transport`): aiohttp with
keep-alive connections and a continuous window of `card.max_concurrency` requests in flight,
optional request/token rate limits, 429 Retry-After honoured, retries counted and logged.
`stream` hands answers back as they arrive (ChatModel caches each group at once); `generate`
returns them in input order. A content reject (400: this prompt cannot be answered) becomes
`Completion(error=...)`: one bad prompt never kills a sweep. A call that got no answer becomes
`Completion(error=..., failure=<kind>)`: never cached, it fails the stage (after the answers
are cached) and a rerun asks for it again. A breaker per endpoint stops a dead endpoint from
getting every call's retries. A fine-tuned LoRA adapter is served by the server (vLLM) as a
model of its own: requests name it instead of the base model. The API key is read from the env
var the card names and never appears in logs, errors or repr. (The Batch API keeps the openai
package: `xlexp/llm/openai_batch.py`.)
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import xlexp.llm.wire as wire
from xlexp.errors import ConfigError
from xlexp.llm.base import Backend, Completion, Conversation, Sampling
from xlexp.llm.breaker import Breaker
from xlexp.llm.card import api_key
from xlexp.llm.preflight import served_models
from xlexp.llm.transport import Transport
from xlexp.llm.wire import TransportError

log = logging.getLogger(__name__)

BATCH_API_MAX_REQUESTS = 50_000  # OpenAI's limit on requests in one batch file


class OpenAIBackend(Backend):
    """Batched chat completions against an OpenAI-compatible endpoint."""

    remote = True
    preflight = True  # GET /models: a wrong key or model id fails before any stage

    @classmethod
    def endpoint(cls, card: Any) -> str:
        return f"{card.base_url or 'api.openai.com'} model {card.model}"

    @classmethod
    def check_server(cls, role: str, card: Any) -> list[str]:
        env = card.api_key_env
        key = os.environ.get(env) if env else None
        if env and not key:
            return [f"{role}: {role}.api_key_env: environment variable {env} is not set"]
        base_url = card.base_url or "https://api.openai.com/v1"
        served, problem = served_models(base_url, key)
        if problem:
            keyed = " (key from $" + env + ")" if "key" in problem and env else ""
            return [f"{role}: {problem}{keyed}"]
        if served is not None and str(card.model) not in served:
            listed = ", ".join(served[:10]) + (" ..." if len(served) > 10 else "")
            return [f"{role}: {base_url} does not serve {role}.model {str(card.model)!r} "
                    f"(it serves: {listed or 'nothing'})"]
        return []

    @classmethod
    def open(cls, card: Any, store_root: Path) -> Backend:
        if getattr(card, "batch_api", False):
            from xlexp.llm.openai_batch import OpenAIBatchBackend

            return OpenAIBatchBackend(card, store_root)
        return cls(card)

    @classmethod
    def check_card(cls, key: str, card: Any, cuda: Any) -> None:
        if card.api_key_env and not os.environ.get(card.api_key_env):
            raise ConfigError(
                f"{key}.api_key_env",
                f"environment variable {card.api_key_env} is not set "
                f"(the API key for {card.model})",
            )

    @classmethod
    def chunk_size(cls, card: Any) -> int:
        # The Batch API: one job for all misses. A streaming transport is not chunked at all;
        # this is only the size for callers of generate().
        if getattr(card, "batch_api", False):
            return BATCH_API_MAX_REQUESTS
        return 4 * int(card.max_concurrency)

    @classmethod
    def pool_key(cls, card: Any) -> str:
        # The same model over the Batch API is another transport: not shared. Each endpoint and
        # credential is its own connection (and breaker), even for roles with one model id.
        batch = ":batch_api" if getattr(card, "batch_api", False) else ""
        return super().pool_key(card) + batch + f":{card.base_url}:{card.api_key_env}"

    def __init__(self, card: Any):
        self.card = card
        self.model = str(card.model)
        self.base_url = card.base_url
        self.api_key_env = card.api_key_env
        self.max_concurrency = max(1, int(card.max_concurrency))
        key, self._secret = api_key(
            card
        )  # the secret only for redaction; the transport holds the key
        self.breaker = Breaker(getattr(card, "breaker_after", None))
        self._adapter_names: dict[str, str] = {}  # adapter dir -> served model name
        self._adapter_lock = threading.Lock()
        self._transport = Transport(
            name=str(card.name),
            base_url=str(card.base_url or "https://api.openai.com/v1"),
            api_key=key,
            window=self.max_concurrency,
            timeout_s=float(card.timeout_s),
            max_retries=int(card.max_retries),
            requests_per_minute=getattr(card, "requests_per_minute", None),
            tokens_per_minute=getattr(card, "tokens_per_minute", None),
            base_wait_s=wire.BASE_WAIT_S,
            max_wait_s=wire.MAX_WAIT_S,
            redact=self._redact,
            breaker=self.breaker,
        )

    @property
    def requests(self) -> int:
        """HTTP attempts, retries included."""
        return self._transport.requests

    @property
    def retries(self) -> int:
        return self._transport.retries

    @property
    def errors(self) -> int:
        """Completions returned with an error."""
        return self._transport.errors

    def __repr__(self) -> str:
        return (
            f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r}, "
            f"api_key_env={self.api_key_env!r}, max_concurrency={self.max_concurrency})"
        )

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def stream(
        self,
        conversations: list[Conversation],
        sampling: Sampling,
        sample_index: int = 0,
        adapter: str | None = None,
    ) -> Iterator[list[tuple[int, Completion]]]:
        """(index, Completion) per conversation, in groups as they arrive."""
        model = self.model if adapter is None else self.served_adapter(adapter)
        bodies = [wire.request_body(model, c, sampling, sample_index) for c in conversations]
        return self._transport.stream(bodies)

    def served_adapter(self, adapter: str) -> str:
        """The served model name of a LoRA adapter dir on this server (vLLM), loading it if needed.

        vLLM serves each adapter as a model of its own: requests name it instead of the base
        model, so one server (one engine load) answers for any number of fine-tuned systems. An
        adapter started with `--lora-modules NAME=PATH` is listed by `/models` with `root` = PATH;
        any other is loaded through `/load_lora_adapter` (the server needs
        VLLM_ALLOW_RUNTIME_LORA_UPDATING=True) under a name derived from its path. The server
        must see the adapter at the same path (a shared filesystem, or the same machine).
        """
        path = str(Path(adapter).resolve())
        with self._adapter_lock:
            if path in self._adapter_names:
                return self._adapter_names[path]
            try:
                listing = self._transport.call("GET", "/models")
            except TransportError as exc:
                if exc.status != 404:  # 404: a server without a listing; try loading it
                    raise RuntimeError(
                        f"{self.card.name}: cannot list the served models: "
                        f"{self._redact(exc.describe())}"
                    ) from None
                listing = {}
            data = listing.get("data") if isinstance(listing, dict) else None
            served = {m.get("root"): m.get("id") for m in data or () if isinstance(m, dict)}
            name = served.get(path)
            if name is None:
                name = "lora-" + hashlib.sha256(path.encode()).hexdigest()[:16]
                try:
                    self._transport.call(
                        "POST", "/load_lora_adapter", {"lora_name": name, "lora_path": path}
                    )
                except TransportError as exc:
                    raise RuntimeError(
                        f"{self.card.name}: the server at {self.base_url} does not serve "
                        f"adapter {path} and could not load it ({self._redact(exc.describe())}). "
                        "Start vLLM with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, "
                        "or with --lora-modules NAME=PATH."
                    ) from None
                log.info("%s: loaded adapter %s on the server as %s", self.card.name, path, name)
            self._adapter_names[path] = name
            return name

    def generate(
        self,
        conversations: list[Conversation],
        sampling: Sampling,
        sample_index: int = 0,
        adapter: str | None = None,
    ) -> list[Completion]:
        """One Completion per conversation, in order; at most max_concurrency in flight."""
        results: list[Completion | None] = [None] * len(conversations)
        for group in self.stream(conversations, sampling, sample_index, adapter):
            for index, completion in group:
                results[index] = completion
        return results  # type: ignore[return-value]

    def close(self) -> None:
        self._transport.close()

"""Backend for any OpenAI-compatible chat server (OpenAI, vLLM `serve`, llama.cpp, ...).

Requests go through one long-lived asyncio transport (`xlexp.llm.transport`): aiohttp with
keep-alive connections and a continuous window of `card.max_concurrency` requests in flight,
optional request/token rate limits, 429 Retry-After honoured, retries counted and logged.
`stream` hands answers back as they arrive (ChatModel caches each group at once); `generate`
returns them in input order. A content reject (400: this prompt cannot be answered) becomes
`Completion(error=...)`: one bad prompt never kills a sweep. A call that got no answer becomes
`Completion(error=..., failure=<kind>)`: never cached, it fails the stage (after the answers
are cached) and a rerun asks for it again. A breaker per endpoint stops a dead endpoint from
getting every call's retries. A card whose `base_url` lists several servers (replicas of one
model) has its requests spread over them, fewest in flight first, each with its own breaker: a
replica that goes down has its requests taken by the others, and no call fails while one
answers. A fine-tuned LoRA adapter is served by the server (vLLM) as a
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
from xlexp.llm.card import DEFAULT_BASE_URL, api_key, base_urls
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
    def window(cls, card: Any) -> int:
        # Each replica takes max_concurrency at once.
        return int(card.max_concurrency) * len(base_urls(card))

    @classmethod
    def endpoint(cls, card: Any) -> str:
        if not isinstance(card.base_url, str) and card.base_url is not None:
            return f"{', '.join(base_urls(card))} model {card.model}"
        return f"{card.base_url or 'api.openai.com'} model {card.model}"

    @classmethod
    def check_server(cls, role: str, card: Any) -> list[str]:
        """Each server the card names: a key it rejects or a model it does not serve is an
        error; of a set of replicas, those that cannot be reached only warn while one can
        (the run goes on with the others), and are errors when none can."""
        env = card.api_key_env
        key = os.environ.get(env) if env else None
        if env and not key:
            return [f"{role}: {role}.api_key_env: environment variable {env} is not set"]
        errors: list[str] = []
        unreachable: list[str] = []
        for base_url in base_urls(card):
            served, problem = served_models(base_url, key)
            if problem:
                keyed = " (key from $" + env + ")" if "key" in problem and env else ""
                rejected = "rejected the key" in problem  # the same key for every replica
                (errors if rejected else unreachable).append(f"{role}: {problem}{keyed}")
            elif served is not None and str(card.model) not in served:
                listed = ", ".join(served[:10]) + (" ..." if len(served) > 10 else "")
                errors.append(
                    f"{role}: {base_url} does not serve {role}.model {str(card.model)!r} "
                    f"(it serves: {listed or 'nothing'})"
                )
        up = len(base_urls(card)) - len(errors) - len(unreachable)
        if unreachable and up > 0 and not errors:
            for line in unreachable:
                log.warning("%s (the other replicas take its requests)", line)
            return []
        return errors + unreachable

    @classmethod
    def open(cls, card: Any, store_root: Path) -> Backend:
        if getattr(card, "batch_api", False):
            from xlexp.llm.openai_batch import OpenAIBatchBackend

            return OpenAIBatchBackend(card, store_root)
        return cls(card)

    @classmethod
    def check_card(cls, key: str, card: Any, cuda: Any) -> None:
        value = card.base_url
        if value is not None and not isinstance(value, str):
            urls = list(value) if not isinstance(value, dict) and hasattr(value, "__iter__") else []
            if not urls or not all(isinstance(u, str) and u for u in urls):
                raise ConfigError(
                    f"{key}.base_url", f"is a URL or a list of URLs (replicas), not {value!r}"
                )
            if len(set(urls)) != len(urls):
                raise ConfigError(f"{key}.base_url", f"lists a replica twice: {urls}")
            if getattr(card, "batch_api", False) and len(urls) > 1:
                raise ConfigError(
                    f"{key}.base_url",
                    "the Batch API sends a job to one endpoint: give one base_url, not a list "
                    f"of replicas ({len(urls)}), or set {key}.batch_api=false",
                )
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
        urls = card.base_url
        if urls is not None and not isinstance(urls, str):
            urls = ",".join(base_urls(card))
        return super().pool_key(card) + batch + f":{urls}:{card.api_key_env}"

    def __init__(self, card: Any):
        self.card = card
        self.model = str(card.model)
        self.base_url = card.base_url
        self.api_key_env = card.api_key_env
        self.max_concurrency = max(1, int(card.max_concurrency))
        key, self._secret = api_key(
            card
        )  # the secret only for redaction; the transport holds the key
        urls = base_urls(card)
        # One breaker per replica: one that goes down leaves the others serving.
        self.breakers = [Breaker(getattr(card, "breaker_after", None)) for _ in urls]
        self._adapter_names: dict[str, str] = {}  # adapter dir -> served model name
        self._adapter_lock = threading.Lock()
        self._transport = Transport(
            name=str(card.name),
            base_url=urls if len(urls) > 1 else str(urls[0] or DEFAULT_BASE_URL),
            api_key=key,
            window=self.max_concurrency,
            timeout_s=float(card.timeout_s),
            max_retries=int(card.max_retries),
            requests_per_minute=getattr(card, "requests_per_minute", None),
            tokens_per_minute=getattr(card, "tokens_per_minute", None),
            base_wait_s=wire.BASE_WAIT_S,
            max_wait_s=wire.MAX_WAIT_S,
            redact=self._redact,
            breaker=self.breakers,
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

    @property
    def failovers(self) -> int:
        """Requests sent to another replica after one failed them."""
        return self._transport.failovers

    def split(self) -> dict[str, dict[str, int]]:
        """Per replica URL: HTTP attempts, answers, failed attempts."""
        return self._transport.split()

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
        must see the adapter at the same path (a shared filesystem, or the same machine). Every
        replica of a set serves it under the name the first one gives it (requests name one
        model); a replica that cannot is left to fail its requests over to the others.
        """
        path = str(Path(adapter).resolve())
        with self._adapter_lock:
            if path in self._adapter_names:
                return self._adapter_names[path]
            name: str | None = None
            problems: list[str] = []
            for index in range(len(self._transport.replicas)):
                try:
                    name = self._serve_adapter(index, path, name)
                except RuntimeError as exc:
                    problems.append(str(exc))
            if name is None:
                raise RuntimeError("; ".join(problems))
            for problem in problems:
                log.warning("%s (its requests go to the other replicas)", problem)
            self._adapter_names[path] = name
            return name

    def _serve_adapter(self, index: int, path: str, name: str | None) -> str:
        """The adapter's served name on replica `index` (`name`, when given), loaded if needed."""
        url = self._transport.replicas[index].base_url
        try:
            listing = self._transport.call("GET", "/models", replica=index)
        except TransportError as exc:
            if exc.status != 404:  # 404: a server without a listing; try loading it
                raise RuntimeError(
                    f"{self.card.name}: cannot list the served models at {url}: "
                    f"{self._redact(exc.describe())}"
                ) from None
            listing = {}
        data = listing.get("data") if isinstance(listing, dict) else None
        served = {m.get("root"): m.get("id") for m in data or () if isinstance(m, dict)}
        if served.get(path) is not None and name in (None, served[path]):
            return served[path]
        name = name or "lora-" + hashlib.sha256(path.encode()).hexdigest()[:16]
        try:
            self._transport.call(
                "POST", "/load_lora_adapter", {"lora_name": name, "lora_path": path}, replica=index
            )
        except TransportError as exc:
            raise RuntimeError(
                f"{self.card.name}: the server at {url} does not serve "
                f"adapter {path} and could not load it ({self._redact(exc.describe())}). "
                "Start vLLM with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, "
                "or with --lora-modules NAME=PATH."
            ) from None
        log.info("%s: loaded adapter %s on %s as %s", self.card.name, path, url, name)
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

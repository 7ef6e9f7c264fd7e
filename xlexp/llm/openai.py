"""Backend for any OpenAI-compatible chat server (OpenAI, vLLM `serve`, llama.cpp, ...).

The whole batch goes out with at most `card.max_concurrency` requests in flight; answers come
back in input order. Retries (429, 5xx, timeouts, connection errors) are ours, not the
client's, so they can be counted and logged. A permanent failure becomes
`Completion(error=...)`: one bad prompt never kills a sweep. The API key is read from the env
var the card names and never appears in logs, errors or repr.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import httpx
import openai
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from tqdm import tqdm

from xlexp.errors import ConfigError
from xlexp.llm.base import Backend, Completion, Conversation, Sampling
from xlexp.llm.breaker import Breaker

log = logging.getLogger(__name__)

BASE_WAIT_S = 0.05  # first backoff; doubles per retry (tests lower it)
MAX_WAIT_S = 20.0  # cap on one backoff, Retry-After included
PROGRESS_MIN_ITEMS = 20  # smaller batches get no progress bar

_RETRYABLE = (
    openai.RateLimitError,
    openai.InternalServerError,
    openai.APITimeoutError,
    openai.APIConnectionError,
)


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, _RETRYABLE):
        return True
    # 408 Request Timeout is transient too; the client maps it to a plain APIStatusError.
    return isinstance(exc, openai.APIStatusError) and exc.status_code == 408


def failure_kind(exc: BaseException) -> str | None:
    """The kind of backend failure an exception is (the call got no answer: never stored, asked
    again on rerun), or None for a content reject (400/422: this request cannot be answered)."""
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    if isinstance(exc, openai.RateLimitError):
        return "rate_limit"
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return "auth"
    if isinstance(exc, openai.NotFoundError):
        return "model"  # unknown model (or a wrong base_url path)
    if isinstance(exc, openai.APIStatusError) and exc.status_code in (400, 413, 422):
        return None
    return "server"  # 5xx, 408, other statuses, anything unexpected


def _retry_after(exc: BaseException | None) -> float | None:
    """Seconds the server asked us to wait (Retry-After / retry-after-ms), if it said."""
    response = getattr(exc, "response", None)
    if response is None:
        return None
    for header, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = response.headers.get(header)
        if value is not None:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                return None  # an HTTP date: not worth parsing, fall back to backoff
    return None


def convert_logprobs(choice_logprobs: Any) -> list[dict[str, float]] | None:
    """OpenAI `choice.logprobs` -> per generated token {token: logprob}, chosen token first."""
    content = getattr(choice_logprobs, "content", None) if choice_logprobs is not None else None
    if content is None:
        return None
    out: list[dict[str, float]] = []
    for item in content:
        alternatives = {item.token: float(item.logprob)}
        for top in item.top_logprobs or []:
            alternatives.setdefault(top.token, float(top.logprob))
        out.append(alternatives)
    return out


BATCH_API_MAX_REQUESTS = 50_000  # OpenAI's limit on requests in one batch file


class OpenAIBackend(Backend):
    """Batched chat completions against an OpenAI-compatible endpoint."""

    @classmethod
    def open(cls, card: Any, store_root: Path) -> OpenAIBackend:
        if getattr(card, "batch_api", False):
            from xlexp.llm.openai_batch import OpenAIBatchBackend

            return OpenAIBatchBackend(card, store_root)
        return cls(card)

    @classmethod
    def check_card(cls, key: str, card: Any, cuda: Any) -> None:
        if card.sampling.max_tokens < 1:
            raise ConfigError(f"{key}.sampling.max_tokens", "must be >= 1")
        if card.api_key_env and not os.environ.get(card.api_key_env):
            raise ConfigError(f"{key}.api_key_env", f"environment variable {card.api_key_env} is not set (the API key for {card.model})")
        if getattr(card, "batch_api", False) and not card.batch_poll_s > 0:
            raise ConfigError(f"{key}.batch_poll_s", f"must be > 0, not {card.batch_poll_s}")

    @classmethod
    def chunk_size(cls, card: Any) -> int:
        if getattr(card, "batch_api", False):
            return BATCH_API_MAX_REQUESTS  # one Batch API job for all misses
        return 4 * int(card.max_concurrency)

    @classmethod
    def pool_key(cls, card: Any) -> str:
        # The same model over the Batch API is another transport: not shared. Each endpoint and
        # credential is its own connection, even for roles with one model id.
        batch = ":batch_api" if getattr(card, "batch_api", False) else ""
        return super().pool_key(card) + batch + f":{card.base_url}:{card.api_key_env}"

    def __init__(self, card: Any):
        self.card = card
        self.model = str(card.model)
        self.base_url = card.base_url
        self.api_key_env = card.api_key_env
        self.max_concurrency = max(1, int(card.max_concurrency))
        self.max_retries = max(0, int(card.max_retries))
        self.base_wait_s = BASE_WAIT_S
        self.max_wait_s = MAX_WAIT_S
        if card.api_key_env:
            key = os.environ.get(card.api_key_env)
            if not key:
                raise ValueError(f"api_key_env: environment variable {card.api_key_env} is not set")
        else:
            key = "EMPTY"  # local servers (vLLM, llama.cpp) accept any key
        # Kept only for redaction; the client holds the real copy.
        self._secret = key if key != "EMPTY" else None
        self._client = openai.OpenAI(
            base_url=card.base_url,
            api_key=key,
            max_retries=0,  # retries are ours (counted, logged, Retry-After honoured)
            timeout=float(card.timeout_s),
        )
        self._lock = threading.Lock()
        self.requests = 0  # HTTP attempts, retries included
        self.retries = 0
        self.errors = 0  # completions returned with an error
        self.breaker = Breaker(getattr(card, "breaker_after", None))
        self._adapter_names: dict[str, str] = {}  # adapter dir -> served model name

    def __repr__(self) -> str:
        return (
            f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r}, "
            f"api_key_env={self.api_key_env!r}, max_concurrency={self.max_concurrency})"
        )

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        asked = _retry_after(exc)
        if asked is not None:
            return min(asked, self.max_wait_s)
        # Exponential backoff with "equal jitter": never zero, never above the cap.
        step = min(self.max_wait_s, self.base_wait_s * 2 ** (state.attempt_number - 1))
        return step / 2 + random.uniform(0, step / 2)

    def _before_sleep(self, state: RetryCallState) -> None:
        with self._lock:
            self.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "%s: retry %d/%d in %.2fs after %s",
            self.card.name, state.attempt_number, self.max_retries, wait, self._describe(exc),
        )

    def _describe(self, exc: BaseException | None) -> str:
        """`<type>: <status> <short message>`, key redacted."""
        if exc is None:
            return "unknown error"
        parts = [type(exc).__name__ + ":"]
        if isinstance(exc, openai.APIStatusError):
            parts.append(str(exc.status_code))
            body = exc.body
            message = body.get("message") if isinstance(body, dict) else None
            parts.append(str(message or body or exc.message))
        elif isinstance(exc, openai.APIError):
            parts.append(exc.message)
        else:
            parts.append(str(exc))
        text = " ".join(p for p in parts if p)
        return self._redact(text if len(text) <= 300 else text[:297] + "...")

    def _request(self, conversation: Conversation, sampling: Sampling, sample_index: int) -> dict:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": [dict(m) for m in conversation],
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
        }
        if sampling.seed is not None:
            kwargs["seed"] = sampling.seed + sample_index
        elif sample_index > 0:
            kwargs["seed"] = sample_index  # k samples differ, reproducibly
        if sampling.logprobs is not None:
            kwargs["logprobs"] = True
            kwargs["top_logprobs"] = sampling.logprobs
        return kwargs

    def _create(self, kwargs: dict) -> Any:
        with self._lock:
            self.requests += 1
        return self._client.chat.completions.create(**kwargs)

    def _one(
        self, conversation: Conversation, sampling: Sampling, sample_index: int, model: str
    ) -> Completion:
        kwargs = {**self._request(conversation, sampling, sample_index), "model": model}
        if self.breaker.open:  # the endpoint is down: fail at once instead of retrying
            return self._failed(self.breaker.why(), "breaker")
        retrying = Retrying(
            retry=retry_if_exception(_retryable),
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            response = retrying(self._create, kwargs)
        except Exception as exc:  # permanent or exhausted: recorded, not raised (rejects are data)
            error = self._describe(exc)
            if _retryable(exc):
                error += f" (gave up after {self.max_retries} retries)"
            kind = failure_kind(exc)
            self.breaker.record(kind is not None, error)
            return self._failed(error, kind)
        self.breaker.record(False)
        if not response.choices:
            return self._failed("EmptyResponse: no choices in the answer", "no_content")
        choice = response.choices[0]
        usage = response.usage
        if choice.message.content is None:  # not an answer, whatever the status said
            return self._failed(f"NoContent: the answer's content is null (finish_reason {choice.finish_reason})", "no_content")
        return Completion(
            text=choice.message.content,  # empty is an answer; the caller judges it
            logprobs=convert_logprobs(choice.logprobs) if sampling.logprobs is not None else None,
            prompt_tokens=int(usage.prompt_tokens or 0) if usage else 0,
            completion_tokens=int(usage.completion_tokens or 0) if usage else 0,
        )

    def _failed(self, error: str, failure: str | None = None) -> Completion:
        with self._lock:
            self.errors += 1
        if failure != "breaker":  # one line per call against a dead endpoint is noise
            log.warning("%s: request failed: %s", self.card.name, error)
        return Completion(error=error, failure=failure)

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
        with self._lock:
            if path in self._adapter_names:
                return self._adapter_names[path]
        try:
            served = {getattr(m, "root", None): m.id for m in self._client.models.list()}
        except openai.APIError as exc:
            raise RuntimeError(f"{self.card.name}: cannot list the served models: {self._describe(exc)}") from exc
        name = served.get(path)
        if name is None:
            name = "lora-" + hashlib.sha256(path.encode()).hexdigest()[:16]
            try:
                self._client.post(
                    "/load_lora_adapter",
                    body={"lora_name": name, "lora_path": path},
                    cast_to=httpx.Response,
                )
            except openai.APIError as exc:
                raise RuntimeError(
                    f"{self.card.name}: the server at {self.base_url} does not serve adapter {path} "
                    f"and could not load it ({self._describe(exc)}). Start vLLM with --enable-lora and "
                    "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, or with --lora-modules NAME=PATH."
                ) from exc
            log.info("%s: loaded adapter %s on the server as %s", self.card.name, path, name)
        with self._lock:
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
        if not conversations:
            return []
        model = self.model if adapter is None else self.served_adapter(adapter)
        results: list[Completion | None] = [None] * len(conversations)
        workers = min(self.max_concurrency, len(conversations))
        show = len(conversations) >= PROGRESS_MIN_ITEMS and sys.stderr.isatty()
        with (
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="openai") as pool,
            tqdm(total=len(conversations), desc=str(self.card.name), disable=not show) as bar,
        ):
            futures = {
                pool.submit(self._one, conv, sampling, sample_index, model): i
                for i, conv in enumerate(conversations)
            }
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                bar.update(1)
        return results  # type: ignore[return-value]

    def close(self) -> None:
        self._client.close()

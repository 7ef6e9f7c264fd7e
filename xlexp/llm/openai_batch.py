"""OpenAI Batch API mode of the openai backend (`batch_api: true` on a model card).

Same protocol as `OpenAIBackend.generate` (the stages and ChatModel do not know the
difference), different transport: the batch of requests (ChatModel passes only cache misses)
is written as one JSONL file, uploaded (`files.create`, purpose "batch"), submitted
(`batches.create`, 24 h window) and polled (`batches.retrieve`) until it ends; the output and
error files are parsed into Completions, which ChatModel puts in the response cache.

Each distinct request set is one batch, named by a hash of its requests' cache keys (which
are also the lines' `custom_id`s). Its record `<store>/batches/<name>.json` is written
atomically under a file lock right after upload and again right after submission, BEFORE any
polling, so a killed job finds the batch id on restart and resumes polling: a submitted batch
is never submitted again. (Killed between `batches.create` and the write, the batch is found
again by its `metadata.xlexp_request_set` in `batches.list`.) A batch that ends failed,
expired or cancelled gives error completions for every request without a result (an expired
batch keeps the results it finished); its record is set aside so that a later run submits
the still-missing requests as a new batch. Per-request errors become error completions.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import openai
from filelock import FileLock
from openai.types.chat import ChatCompletion
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

import xlexp.llm.wire as wire
from xlexp.llm.base import Backend, Completion, Conversation, Sampling, identity_of, request_key
from xlexp.llm.card import api_key, base_urls
from xlexp.llm.openai_sdk import (
    retryable,
    sdk_failure_kind,
    sdk_listed_logprobs,
    sdk_logprobs,
)
from xlexp.llm.wire import retry_after
from xlexp.store import digest, write_json

log = logging.getLogger(__name__)
# The openai client logs every HTTP request at INFO through httpx; polls are not news.
logging.getLogger("httpx").setLevel(logging.WARNING)

ENDPOINT = "/v1/chat/completions"
TERMINAL = ("completed", "failed", "expired", "cancelled")
METADATA_KEY = "xlexp_request_set"
MAX_FILE_BYTES = 200 * 1000 * 1000  # OpenAI's limit on one batch input file


class OpenAIBatchBackend(Backend):
    """Chat completions through the OpenAI Batch API, resumable across restarts."""

    def __init__(self, card: Any, store_root: str | Path):
        self.card = card
        self.model = str(card.model)
        self.base_url = card.base_url if card.base_url is None else base_urls(card)[0]
        self.api_key_env = card.api_key_env
        self.max_retries = max(0, int(card.max_retries))
        self.base_wait_s = wire.BASE_WAIT_S
        self.max_wait_s = wire.MAX_WAIT_S
        key, self._secret = api_key(card)  # the secret only for redaction
        self._client = openai.OpenAI(
            base_url=self.base_url,
            api_key=key,
            max_retries=0,  # retries are ours (counted, logged, Retry-After honoured)
            timeout=float(card.timeout_s),
        )
        self._lock = threading.Lock()
        self.requests = 0  # HTTP calls, retries included
        self.retries = 0
        self.errors = 0  # completions returned with an error
        self.batch_dir = Path(store_root) / "batches"
        self.batch_dir.mkdir(parents=True, exist_ok=True)
        self.poll_s = float(card.batch_poll_s)
        self.identity = identity_of(card)
        self.batches_created = 0  # by this process

    # ------------------------------------------------------------------ protocol
    def generate(
        self,
        conversations: list[Conversation],
        sampling: Sampling,
        sample_index: int = 0,
        adapter: str | None = None,
    ) -> list[Completion]:
        """One Completion per conversation, in order, from one (possibly resumed) batch."""
        if adapter is not None:
            raise ValueError(f"{self.card.name}: the Batch API cannot load adapter {adapter!r}")
        if not conversations:
            return []
        keys = [request_key(self.identity, c, sampling, sample_index, None) for c in conversations]
        requests = dict(zip(keys, conversations, strict=True))  # custom_ids must be unique
        try:
            results = self._run(requests, sampling, sample_index)
        except Exception as exc:  # exhausted retries or a permanent API error: recorded, not raised
            error = f"BatchAPI: {self._describe(exc)}"
            results = {}
            for key in requests:
                results[key] = self._failed(error, sdk_failure_kind(exc) or "batch")
        return [results[k] for k in keys]

    def __repr__(self) -> str:
        return (
            f"OpenAIBatchBackend(model={self.model!r}, base_url={self.base_url!r}, "
            f"api_key_env={self.api_key_env!r})"
        )

    def close(self) -> None:
        self._client.close()

    # ------------------------------------------------------------------ errors and retries
    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        response = getattr(exc, "response", None)
        asked = retry_after(response.headers) if response is not None else None
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

    def _failed(self, error: str, failure: str | None = None) -> Completion:
        with self._lock:
            self.errors += 1
        log.warning("%s: request failed: %s", self.card.name, error)
        return Completion(error=error, failure=failure)

    # ------------------------------------------------------------------ steps
    def _retrying(self) -> Retrying:
        return Retrying(
            retry=retry_if_exception(retryable),
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            before_sleep=self._before_sleep,
            reraise=True,
        )

    def _api(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.requests += 1
        return self._retrying()(fn, *args, **kwargs)

    def record_path(self, name: str) -> Path:
        return self.batch_dir / f"{name}.json"

    def _run(
        self, requests: dict[str, Conversation], sampling: Sampling, sample_index: int
    ) -> dict[str, Completion]:
        name = digest(
            {"model": self.model, "endpoint": ENDPOINT, "requests": sorted(requests)}, n=24
        )
        path = self.record_path(name)
        # The lock covers upload + submit + persisting the id: two jobs that need the same
        # batch submit it once; the second finds the record and only polls.
        with FileLock(str(path) + ".lock"):
            record = (
                json.loads(path.read_text())
                if path.exists()
                else {"name": name, "model": self.model}
            )
            if not record.get("batch_id"):
                record = self._submit(record, path, requests, sampling, sample_index)
            else:
                log.info(
                    "%s: resuming batch %s (%d requests)",
                    self.card.name,
                    record["batch_id"],
                    len(requests),
                )
        try:
            batch = self._poll(record["batch_id"])
        except openai.NotFoundError:
            # The provider does not know this id (another account or server): set the record
            # aside so the next run submits anew instead of polling a ghost forever.
            with FileLock(str(path) + ".lock"):
                if path.exists():
                    os.replace(path, self.batch_dir / f"{name}.{record['batch_id']}.not_found.json")
            raise
        results = self._collect(batch, requests, path)
        with FileLock(str(path) + ".lock"):
            record.update(
                status=batch.status,
                output_file_id=batch.output_file_id,
                error_file_id=batch.error_file_id,
                errors=sum(not c.ok for c in results.values()),
                finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
            )
            write_json(path, record)
            if batch.status != "completed":  # set aside: a later run submits what is missing anew
                os.replace(
                    path, self.batch_dir / f"{name}.{record['batch_id']}.{batch.status}.json"
                )
        return results

    def _submit(
        self,
        record: dict,
        path: Path,
        requests: dict[str, Conversation],
        sampling: Sampling,
        sample_index: int,
    ) -> dict:
        name = record["name"]
        if record.get("input_file_id"):
            # Killed after the upload: the batch may have been created before the record was
            # updated; find it by its metadata instead of creating a second one.
            for batch in self._api(self._client.batches.list, limit=100):
                if (batch.metadata or {}).get(METADATA_KEY) == name:
                    log.info(
                        "%s: found submitted batch %s by its metadata", self.card.name, batch.id
                    )
                    record.update(batch_id=batch.id, status=batch.status)
                    write_json(path, record)
                    return record
        else:
            lines = [
                json.dumps(
                    {
                        "custom_id": key,
                        "method": "POST",
                        "url": ENDPOINT,
                        "body": wire.request_body(self.model, conv, sampling, sample_index),
                    },
                    ensure_ascii=False,
                )
                for key, conv in requests.items()
            ]
            data = ("\n".join(lines) + "\n").encode()
            if len(data) > MAX_FILE_BYTES:
                raise ValueError(
                    f"batch file of {len(data) / 1e6:.0f} MB is over the Batch API's 200 MB limit: "
                    "fewer requests per call"
                )
            uploaded = self._api(
                self._client.files.create, file=(f"{name}.jsonl", data), purpose="batch"
            )
            record.update(input_file_id=uploaded.id, n_requests=len(requests), status="uploaded")
            write_json(path, record)
        batch = self._api(
            self._client.batches.create,
            input_file_id=record["input_file_id"],
            endpoint=ENDPOINT,
            completion_window="24h",
            metadata={METADATA_KEY: name},
        )
        self.batches_created += 1
        record.update(
            batch_id=batch.id, status=batch.status, submitted_at=time.strftime("%Y-%m-%dT%H:%M:%S")
        )
        write_json(path, record)  # persisted before the first poll
        log.info("%s: submitted batch %s (%d requests)", self.card.name, batch.id, len(requests))
        return record

    def _poll(self, batch_id: str) -> Any:
        last = None
        while True:
            batch = self._api(self._client.batches.retrieve, batch_id)
            counts = batch.request_counts
            state = (
                batch.status,
                counts.completed if counts else None,
                counts.failed if counts else None,
            )
            if state != last:
                log.info("%s: batch %s %s (done %s, failed %s)", self.card.name, batch_id, *state)
                last = state
            if batch.status in TERMINAL:
                return batch
            time.sleep(self.poll_s)

    def _download(self, file_id: str, local: Path) -> str:
        """A result file's text, kept next to the record: a resumed job (or an audit) does not
        depend on how long the provider keeps it."""
        if local.exists():
            return local.read_text()
        text = self._api(self._client.files.content, file_id).text
        # Per thread, not only per process: two roles of one process may fetch the same file.
        tmp = local.with_name(f".{local.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, local)
        return text

    def _collect(
        self, batch: Any, requests: dict[str, Conversation], record_path: Path
    ) -> dict[str, Completion]:
        results: dict[str, Completion] = {}
        for kind, file_id in (("output", batch.output_file_id), ("errors", batch.error_file_id)):
            if not file_id:
                continue
            local = record_path.with_name(f"{record_path.stem}.{batch.id}.{kind}.jsonl")
            text = self._download(file_id, local)
            for n, line in enumerate(text.splitlines()):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    key = row["custom_id"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    log.warning(
                        "%s: batch %s: unreadable result line %d", self.card.name, batch.id, n
                    )
                    continue
                if key in requests:
                    results[key] = self._parse(row)
        reason = batch.status
        if batch.errors and batch.errors.data:
            reason += ": " + "; ".join(f"{e.code}: {e.message}" for e in batch.errors.data)
        missing = [key for key in requests if key not in results]
        if missing:  # one log line for the batch, not one per request
            error = self._redact(
                f"BatchAPI: no result for this request (batch {batch.id} {reason})"
            )
            log.warning(
                "%s: %d of %d requests without a result: %s",
                self.card.name,
                len(missing),
                len(requests),
                error,
            )
            with self._lock:
                self.errors += len(missing)
            for key in missing:
                results[key] = Completion(error=error, failure="batch")  # asked again on rerun
        return results

    def _parse(self, row: dict) -> Completion:
        """One result line -> Completion (errors recorded)."""
        if row.get("error"):
            err = row["error"]
            return self._failed(
                self._redact(f"BatchRequestError: {err.get('code')}: {err.get('message')}"), "batch"
            )
        response = row.get("response") or {}
        status = int(response.get("status_code") or 0)
        body = response.get("body") or {}
        if status >= 400 or status == 0:
            message = (body.get("error") or {}).get("message") if isinstance(body, dict) else None
            # 400/422: this request cannot be answered (a content reject); others: no answer.
            kind = None if status in (400, 413, 422) else "batch"
            return self._failed(
                self._redact(f"BatchRequestError: {status} {message or body}"), kind
            )
        try:
            completion = ChatCompletion.model_validate(body)
        except Exception as exc:  # a malformed answer is a recorded error
            return self._failed(
                f"BatchRequestError: malformed result: {type(exc).__name__}", "bad_response"
            )
        if not completion.choices:
            return self._failed("EmptyResponse: no choices in the answer", "no_content")
        choice = completion.choices[0]
        usage = completion.usage
        if choice.message.content is None:
            return self._failed("NoContent: the answer's content is null", "no_content")
        return Completion(
            text=choice.message.content,
            logprobs=sdk_logprobs(choice.logprobs),
            top_logprobs=sdk_listed_logprobs(choice.logprobs),
            prompt_tokens=int(usage.prompt_tokens or 0) if usage else 0,
            completion_tokens=int(usage.completion_tokens or 0) if usage else 0,
        )


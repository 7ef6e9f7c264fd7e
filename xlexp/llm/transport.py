"""One long-lived asyncio HTTP transport per OpenAI-compatible endpoint (or set of replicas).

Every transport of a process runs on one background event loop thread and keeps one aiohttp
session (keep-alive connections) for its whole life. A call hands over a list of chat request
bodies and gets the answers back as they arrive (`stream`), in groups of whatever arrived
together, so the caller can store each group at once: a killed run loses only what was in
flight. Requests go out through a continuous window of `window` requests in flight, shared by
every caller of the transport (roles that run at the same time share one server); a request
leaves the window the moment its answer is read and the next one takes its place: no chunk
barriers.

Optional request and token rate limits (token buckets per minute) keep a paid API under its
quota; a 429 pauses the whole endpoint for the Retry-After the server asked for. Retries (429,
5xx, 408, timeouts, connection errors) back off exponentially with jitter. A call that got no
answer is returned as a `Completion` with `error` (a message) and `failure` (its kind, see
`xlexp.llm.wire.ERROR_KINDS`): never cached, never part of a finished artifact. A request the server
refused as unanswerable (400/413/422, e.g. a prompt too long) is a content reject: `error` only,
data. An optional breaker (one per endpoint) fails the remaining calls at once once the endpoint has
failed too many calls in a row, instead of spending every call's retries against it. A set of
replicas (several servers of one model) has a window and a breaker per replica; each request
goes to the least busy replica, and to another when that one is down (`Transport`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp

from xlexp.llm.base import Completion
from xlexp.llm.breaker import Breaker
from xlexp.llm.replicas import Replica, ReplicaSet
from xlexp.llm.wire import (
    CONTENT_REJECT,
    ENDPOINT_DOWN_KINDS,
    TransportError,
    env_proxy,
    parse_completion,
    status_error,
)

log = logging.getLogger(__name__)

class RateLimit:
    """`per_minute` units as a token bucket refilled continuously, holding one second's worth
    (providers enforce per-minute quotas over shorter spans too); waiters queue in order. A
    request bigger than the bucket waits for a full bucket and leaves it in debt."""

    def __init__(self, per_minute: float):
        self.rate = float(per_minute) / 60.0
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self.stamp = time.monotonic()
        self._lock: asyncio.Lock | None = None  # made on the loop that uses it

    async def take(self, amount: float) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            needed = min(float(amount), self.capacity)
            while True:
                now = time.monotonic()
                self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.level >= needed:
                    self.level -= float(amount)
                    return
                await asyncio.sleep((needed - self.level) / self.rate)


class _LoopThread:
    """The process's one event loop for HTTP, on a daemon thread (made again after a fork)."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None
    _pid: int | None = None
    _thread: threading.Thread | None = None

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None or cls._pid != os.getpid():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="xlexp-http", daemon=True)
                thread.start()
                cls._loop, cls._pid, cls._thread = loop, os.getpid(), thread
            return cls._loop


def _close_sessions(loop: asyncio.AbstractEventLoop, holder: list[aiohttp.ClientSession]) -> None:
    while holder:
        session = holder.pop()
        if not loop.is_running() or os.getpid() != _LoopThread._pid:
            continue  # a forked child: the loop and its connections are the parent's
        future = asyncio.run_coroutine_threadsafe(session.close(), loop)
        if threading.current_thread() is _LoopThread._thread:
            continue  # collected on the loop thread itself: waiting would block the loop
        try:
            future.result(timeout=10)
        except Exception as exc:  # closing is best effort; the connections die with us anyway
            log.debug("closing the HTTP session failed: %s", exc)


class Transport:
    """Chat requests against one endpoint, or a set of replicas of one model, through a
    continuous window of requests.

    `base_url` is one URL, or a list of replicas: servers of the same model, each with a window
    of `window` requests and its own breaker (`breaker`: one Breaker per URL). A request goes to
    the replica with the fewest requests in flight that is not down; one that failed there
    because the replica is down (refused, timeout, 5xx, 429, auth, unknown model) is sent at
    once to another replica it has not tried, without counting as a retry, and counts toward
    the first one's breaker; only when every replica has failed it does the request back off
    and retry as against one endpoint. So no call fails while a replica answers.
    """

    def __init__(
        self,
        name: str,
        base_url: str | list[str],
        api_key: str,
        window: int,
        timeout_s: float,
        max_retries: int,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        base_wait_s: float = 0.05,
        max_wait_s: float = 20.0,
        redact: Callable[[str], str] = lambda text: text,
        breaker: Breaker | list[Breaker] | None = None,
    ):
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        breakers = breaker if isinstance(breaker, list) else [breaker] * len(urls)
        self.name = name
        self.window = max(1, int(window))  # per replica
        self.replica_set = ReplicaSet(name, urls, self.window, breakers)
        self.replicas = self.replica_set.replicas
        self.base_url = self.replicas[0].base_url
        self.url = self.replicas[0].url
        self.timeout_s = float(timeout_s)
        self.max_retries = max(0, int(max_retries))
        self.base_wait_s = base_wait_s
        self.max_wait_s = max_wait_s
        self._redact = redact
        self._headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        # The card's quotas are the role's (one API key), whatever replica serves a request.
        self._requests_limit = RateLimit(requests_per_minute) if requests_per_minute else None
        self._tokens_limit = RateLimit(tokens_per_minute) if tokens_per_minute else None
        self._loop = _LoopThread.get()
        # The session lives in a holder the finalizer shares: a transport dropped without
        # close() (a test, an exception) still closes its connections.
        self._holder: list[aiohttp.ClientSession] = []
        self._finalizer = weakref.finalize(self, _close_sessions, self._loop, self._holder)
        # Counted on the loop thread only; read anywhere.
        self.requests = 0  # HTTP attempts, retries included
        self.retries = 0
        self.failovers = 0  # requests sent to another replica after one failed them
        self.errors = 0  # completions returned with an error

    # ---------------------------------------------------------------- the calling thread's side

    def stream(self, bodies: list[dict]) -> Iterator[list[tuple[int, Completion]]]:
        """(index, Completion) for every body, in groups as they arrive, in arrival order.

        Leaving the iterator early (an exception, a kill signal) cancels what is still queued
        or in flight.
        """
        if not bodies:
            return
        arrived: queue.SimpleQueue = queue.SimpleQueue()
        future = asyncio.run_coroutine_threadsafe(self._run(bodies, arrived.put), self._loop)
        remaining = len(bodies)
        try:
            while remaining:
                group = [arrived.get()]
                while True:
                    try:
                        group.append(arrived.get_nowait())
                    except queue.Empty:
                        break
                for item in group:
                    if isinstance(item, BaseException):  # a bug in the loop side, not a failed call
                        raise item
                remaining -= len(group)
                yield group
        finally:
            if not future.done():
                future.cancel()

    def call(self, method: str, path: str, body: dict | None = None, replica: int = 0) -> Any:
        """One request to another route of a replica (`GET /models`, `POST
        /load_lora_adapter`), outside the window and without retries: its JSON answer (its text
        when it is not JSON), or TransportError."""
        return asyncio.run_coroutine_threadsafe(
            self._call(method, self.replicas[replica].base_url + path, body), self._loop
        ).result()

    def split(self) -> dict[str, dict[str, int]]:
        """Per replica URL: HTTP attempts, answers, failed attempts."""
        return self.replica_set.split()

    def close(self) -> None:
        self._finalizer()
        # Used again after close (a new session is made then): closed again at the end too.
        self._finalizer = weakref.finalize(self, _close_sessions, self._loop, self._holder)

    # ---------------------------------------------------------------- the loop's side

    async def _run(self, bodies: list[dict], put: Callable[[Any], None]) -> None:
        try:
            self._session()
            todo = iter(enumerate(bodies))

            async def worker() -> None:
                # Workers share one iterator: each takes the next body when its last is done.
                for index, body in todo:
                    put((index, await self._complete(body)))

            workers = self.window * len(self.replicas)
            await asyncio.gather(*(worker() for _ in range(min(workers, len(bodies)))))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # surface it in the calling thread instead of hanging it
            put(exc)

    def _session(self) -> aiohttp.ClientSession:
        """The transport's session, made on first use (and again after close)."""
        if not self._holder:
            for replica in self.replicas:
                replica.slots = asyncio.Semaphore(self.window)
            self._holder.append(aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.window * len(self.replicas)),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            ))
        return self._holder[0]

    async def _complete(self, body: dict) -> Completion:
        data = json.dumps(body).encode()
        want_logprobs = bool(body.get("logprobs"))
        tried: set[int] = set()
        attempt = 0  # retries after every replica failed the request (backoff between them)
        while True:
            # Before every attempt, retries included: the calls in flight when the breaker
            # opened (the window) stop retrying too.
            replica = self.replica_set.pick(tried)
            if replica is None:  # every replica is down: fail at once
                self.errors += 1  # no log line per call against a dead endpoint: the stage says it
                return Completion(error=self.replica_set.why_down(), failure="breaker")
            replica.in_flight += 1
            try:
                await self._wait_for_quota(replica, body, len(data))
                assert replica.slots is not None
                async with replica.slots:
                    self.requests += 1
                    replica.requests += 1
                    answer = await self._post(replica, data)
                completion = parse_completion(answer, want_logprobs)
            except TransportError as exc:
                if exc.kind == CONTENT_REJECT:  # the replica answered: this prompt is unusable
                    replica.answered += 1
                    return self._failed(replica, exc, exc.describe())
                replica.failed += 1
                tried.add(replica.index)
                down = exc.kind in ENDPOINT_DOWN_KINDS
                if down and self.replica_set.other_up(tried):
                    # This replica cannot serve now: another takes the request at once.
                    self.replica_set.attempt_failed(replica, self._redact(exc.describe()))
                    self.failovers += 1
                    continue
                if not exc.retryable:
                    return self._failed(replica, exc, exc.describe())
                if attempt == self.max_retries:
                    return self._failed(
                        replica, exc,
                        f"{exc.describe()} (gave up after {self.max_retries} retries)",
                    )
                if len(self.replicas) > 1 and down:
                    self.replica_set.attempt_failed(replica, self._redact(exc.describe()))
                attempt += 1
                wait = self._backoff(replica, exc, attempt)
                self.retries += 1
                log.warning(
                    "%s: retry %d/%d in %.2fs after %s",
                    self.name, attempt, self.max_retries, wait, self._redact(exc.describe()),
                )
                tried.clear()  # the next round may try every replica again
                await asyncio.sleep(wait)
                continue
            finally:
                replica.in_flight -= 1
            replica.answered += 1
            if replica.breaker is not None:
                replica.breaker.record(False)
            completion.replica = self.replica_set.label(replica)  # who answered: the split
            return completion

    async def _post(self, replica: Replica, data: bytes) -> Any:
        raw = await self._send("POST", replica.url, data, replica.proxy)
        try:
            return json.loads(raw)
        except ValueError:
            raise TransportError(
                "bad_response", "InvalidResponse", f"answer is not JSON: {raw[:100]!r}"
            ) from None

    async def _call(self, method: str, url: str, body: dict | None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        self._session()
        raw = await self._send(method, url, data, env_proxy(url))
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")

    async def _send(self, method: str, url: str, data: bytes | None, proxy: str | None) -> bytes:
        """One HTTP attempt: the answer's body, or TransportError (HTTP errors included)."""
        try:
            async with self._holder[0].request(
                method, url, data=data, headers=self._headers, proxy=proxy
            ) as response:
                raw = await response.read()
                if response.status >= 400:
                    raise status_error(response.status, raw, response.headers)
                return raw
        except asyncio.TimeoutError:
            raise TransportError("timeout", "APITimeoutError", "Request timed out.") from None
        except aiohttp.ClientError as exc:
            raise TransportError(
                "connection", "APIConnectionError", f"Connection error. {exc}".strip()
            ) from None

    async def _wait_for_quota(self, replica: Replica, body: dict, size: int) -> None:
        while (pause := replica.resume_at - self._loop.time()) > 0:  # a 429 meanwhile extends it
            await asyncio.sleep(pause)
        if self._requests_limit is not None:
            await self._requests_limit.take(1)
        if self._tokens_limit is not None:
            # Quotas count the prompt and the tokens asked for; ~4 bytes of JSON per prompt token.
            await self._tokens_limit.take(size / 4 + int(body.get("max_tokens") or 0))

    def _backoff(self, replica: Replica, exc: TransportError, attempt: int) -> float:
        if exc.retry_after is not None:
            wait = min(exc.retry_after, self.max_wait_s)
        else:  # exponential backoff with "equal jitter": never zero, never above the cap
            step = min(self.max_wait_s, self.base_wait_s * 2 ** (attempt - 1))
            wait = step / 2 + random.uniform(0, step / 2)
        if exc.kind == "rate_limit":  # the quota is the server's: everyone waits, not just us
            replica.resume_at = max(replica.resume_at, self._loop.time() + wait)
        return wait

    def _failed(self, replica: Replica, exc: TransportError, message: str) -> Completion:
        self.errors += 1
        message = self._redact(message)
        if replica.breaker is not None:
            replica.breaker.record(exc.kind in ENDPOINT_DOWN_KINDS, message)
        log.warning("%s: request failed: %s", self.name, message)
        if exc.kind == CONTENT_REJECT:
            # Data, answered by this replica: part of its share of the calls.
            return Completion(error=message, replica=self.replica_set.label(replica))
        return Completion(error=message, failure=exc.kind)

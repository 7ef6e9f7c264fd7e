"""A replica set: the servers of one model a role's requests are spread over (a card whose
`base_url` lists several), each with its own window and breaker.

The transport (`xlexp.llm.transport`) asks it which replica takes a request: the one with the
fewest requests in flight that is not down, preferring one the request has not tried yet; and
tells it when a replica failed an attempt the request survives, which counts toward that
replica's breaker. One URL is a set of one: nothing changes for it.
"""

from __future__ import annotations

import asyncio
import logging

from xlexp.llm.breaker import Breaker
from xlexp.llm.wire import env_proxy

log = logging.getLogger("xlexp.llm.transport")  # one logger for what the transport does


class Replica:
    """One server of a set: its URL, its breaker, its requests in flight and its counts.

    Touched on the transport's loop thread only (the counts are read anywhere)."""

    def __init__(self, index: int, base_url: str, window: int, breaker: Breaker | None):
        self.index = index
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.proxy = env_proxy(self.url)
        self.window = window
        self.breaker = breaker
        self.slots: asyncio.Semaphore | None = None  # made on the loop that uses it
        self.in_flight = 0  # requests given to it and not yet done (waiting for a slot or sent)
        self.resume_at = 0.0  # loop time before which nothing is sent to it (after a 429)
        self.requests = 0  # HTTP attempts, retries included
        self.answered = 0  # attempts answered (content rejects included)
        self.failed = 0  # attempts that failed (each failed-over one too)

    @property
    def down(self) -> bool:
        return self.breaker is not None and self.breaker.open


class ReplicaSet:
    """The replicas of one transport, and the choice of the one that takes a request."""

    def __init__(self, name: str, urls: list[str], window: int, breakers: list[Breaker | None]):
        if not urls or len(breakers) != len(urls):
            raise ValueError(f"{name}: {len(urls)} base URLs and {len(breakers)} breakers")
        self.name = name
        self.replicas = [
            Replica(i, url, window, breaker)
            for i, (url, breaker) in enumerate(zip(urls, breakers, strict=True))
        ]

    def __len__(self) -> int:
        return len(self.replicas)

    def pick(self, tried: set[int]) -> Replica | None:
        """The replica with the fewest requests in flight among those that are not down,
        preferring those this request has not tried (`tried`: their indices); None when every
        replica is down."""
        up = [r for r in self.replicas if not r.down]
        fresh = [r for r in up if r.index not in tried] or up
        if not fresh:
            return None
        # Ties (an idle set) go to the replica that has had the fewest requests: an even split.
        return min(fresh, key=lambda r: (r.in_flight, r.requests, r.index))

    def other_up(self, tried: set[int]) -> bool:
        """Is a replica up that this request has not tried yet?"""
        return any(not r.down and r.index not in tried for r in self.replicas)

    def attempt_failed(self, replica: Replica, message: str) -> None:
        """`replica` failed an attempt (it cannot serve: refused, timeout, 5xx, ...) and the
        request goes on, on another replica or in a retry: each such attempt counts toward its
        breaker (with one endpoint, only failed calls do), or a replica that fails at once would
        take every request first."""
        if replica.breaker is None:
            return
        was_down = replica.down
        replica.breaker.record(True, message)
        if replica.down and not was_down:  # one line when it goes down, not one per request
            log.warning(
                "%s: replica %s is down (%s): the other replicas take its requests",
                self.name, replica.base_url, message,
            )

    def why_down(self) -> str:
        """Why a request is failed at once: every replica's breaker is open."""
        if len(self.replicas) == 1:
            assert self.replicas[0].breaker is not None
            return self.replicas[0].breaker.why()
        return f"every replica is down ({len(self.replicas)}): " + "; ".join(
            f"{r.base_url}: {r.breaker.why()}" for r in self.replicas if r.breaker is not None
        )

    def label(self, replica: Replica) -> str | None:
        """The replica to name in a completion: only a set of several has a split to report."""
        return replica.base_url if len(self.replicas) > 1 else None

    def split(self) -> dict[str, dict[str, int]]:
        """Per replica URL: HTTP attempts, answers, failed attempts."""
        return {
            r.base_url: {"requests": r.requests, "answered": r.answered, "failed": r.failed}
            for r in self.replicas
        }

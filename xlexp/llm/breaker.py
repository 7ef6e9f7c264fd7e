"""A breaker per endpoint: after `threshold` consecutive failed calls (refused, timeout, 5xx,
auth, ...) the endpoint counts as down and the remaining calls fail at once instead of each
spending its retries against it. One answered call closes it again."""

from __future__ import annotations

import threading

DEFAULT_THRESHOLD = 8  # a card may set `breaker_after`


class Breaker:
    def __init__(self, threshold: int | None = None):
        self.threshold = max(1, int(threshold or DEFAULT_THRESHOLD))
        self._consecutive = 0
        self._lock = threading.Lock()
        self.last_error: str | None = None

    def record(self, failed: bool, error: str | None = None) -> None:
        with self._lock:
            if failed:
                self._consecutive += 1
                self.last_error = error
            else:
                self._consecutive = 0

    @property
    def open(self) -> bool:
        return self._consecutive >= self.threshold

    def why(self) -> str:
        return f"breaker open after {self._consecutive} consecutive failed calls (last: {self.last_error})"

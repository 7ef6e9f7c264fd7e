"""A breaker per endpoint: after `threshold` consecutive failed calls (refused, timeout, 5xx,
auth, ...) the endpoint counts as down and the remaining calls fail at once instead of each
spending its retries against it. After `cooldown_s` one call may try again (half open); one
answered call closes the breaker."""

from __future__ import annotations

import threading
import time

DEFAULT_THRESHOLD = 8  # a card may set `breaker_after`
COOLDOWN_S = 30.0


class Breaker:
    def __init__(self, threshold: int | None = None, cooldown_s: float = COOLDOWN_S):
        self.threshold = max(1, int(threshold or DEFAULT_THRESHOLD))
        self.cooldown_s = cooldown_s
        self._consecutive = 0
        self._last_failure = 0.0
        self._lock = threading.Lock()
        self.last_error: str | None = None

    def record(self, failed: bool, error: str | None = None) -> None:
        with self._lock:
            if failed:
                self._consecutive += 1
                self._last_failure = time.monotonic()
                self.last_error = error
            else:
                self._consecutive = 0

    @property
    def open(self) -> bool:
        """Calls should fail at once: too many failures in a row, and no probe is due."""
        return (
            self._consecutive >= self.threshold
            and time.monotonic() - self._last_failure < self.cooldown_s
        )

    def why(self) -> str:
        # The threshold, not the running count: calls still in flight when it opened keep counting,
        # and one message per open breaker keeps the stage's failure line to one entry.
        return (
            f"breaker open after {self.threshold} consecutive failed calls "
            f"(last: {self.last_error})"
        )

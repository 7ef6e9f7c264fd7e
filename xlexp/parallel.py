"""Independent pieces of work at the same time: model roles that do not wait for each other
(the k translators, the system and the reference, one language and the next).

Remote roles (behind a server) spend their time waiting for answers, so running them together
keeps every server's window full; a local engine (hf, vllm in this process) already uses the
whole machine and is not safe to drive from two threads, so at most one runs at a time.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from xlexp.failures import BackendFailure
from xlexp.llm.backends import backend_class

T = TypeVar("T")


def is_remote(card: Any) -> bool:
    """A role whose model runs behind a server (its backend class declares `remote`)."""
    return backend_class(card).remote


def together(tasks: dict[str, Callable[[], T]], parallel: bool) -> dict[str, T]:
    """Run every task, at once on threads when `parallel`, else in order; results by name.

    Every task runs even when another fails (their answers are cached, so a rerun asks only
    for what failed): the first failure is raised once every task has ended; backend failures
    of several tasks are raised together.
    """
    if not parallel or len(tasks) < 2:
        results: dict[str, T] = {}
        first: Exception | None = None
        failures: list[BackendFailure] = []
        for name, task in tasks.items():
            try:
                results[name] = task()
            except BackendFailure as e:
                failures.append(e)
            except Exception as e:  # noqa: BLE001 (raised below, once the others have run)
                first = first or e
        if first is not None:
            raise first
        if failures:
            raise BackendFailure.combine(failures)
        return results
    with ThreadPoolExecutor(max_workers=len(tasks), thread_name_prefix="together") as pool:
        # Each in a copy of the caller's context: calls are charged to the caller's build.
        futures = {
            name: pool.submit(contextvars.copy_context().run, task) for name, task in tasks.items()
        }
        results: dict[str, T] = {}
        failures: list[BackendFailure] = []
        for name, future in futures.items():
            try:
                results[name] = future.result()
            except BackendFailure as e:  # every role's failed calls in one report, not the first's
                failures.append(e)
        if failures:
            raise BackendFailure.combine(failures)
        return results


def can_run_together(cards: Iterable[Any]) -> bool:
    """Roles may run at the same time when at most one of them is a local engine (one thread
    drives it; the others wait on servers)."""
    return sum(not is_remote(c) for c in cards) <= 1


def batches_in_flight(card: Any, batch_size: int) -> int:
    """Batches of `batch_size` a stage should keep running for one role: for a remote role,
    enough to hold twice its window (so the window refills while a batch finishes); 1 for a
    local engine, which batches by itself."""
    cls = backend_class(card)
    if not cls.remote:
        return 1
    return max(1, math.ceil(2 * cls.window(card) / max(1, batch_size)))

"""Backend failures: a model call that got no answer (refused, timeout, 5xx or 429 after retries,
auth, unknown model, an answer with no content). Unlike a content reject (the model answered;
the output is unusable), a failure is not data: it never finishes an artifact. It is raised
after the batch's answers are cached, so a rerun asks only for what failed.

Imports nothing of xlexp: the store and the model roles both use it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class RoleFailures:
    """Failed calls of one model role against one endpoint, counted by error."""

    role: str
    endpoint: str
    errors: Counter = field(default_factory=Counter)
    stopped: bool = False  # a breaker failed calls at once: the endpoint is down

    def line(self) -> str:
        total = sum(self.errors.values())
        kinds = "; ".join(f"{n}x {err}" for err, n in self.errors.most_common(3))
        more = f"; {len(self.errors) - 3} other errors" if len(self.errors) > 3 else ""
        return f"{self.role} ({self.endpoint}): {total} failed calls: {kinds}{more}"


class BackendFailure(Exception):
    """Calls that got no answer, one line per role; `stop`: a breaker opened (endpoint dead),
    so the remaining work was not attempted."""

    def __init__(self, failures: list[RoleFailures], stop: bool = False):
        self.failures = merge(failures)
        self.stop = stop
        super().__init__(self.message())

    def message(self) -> str:
        head = "backend failures (nothing stored as an answer; a rerun asks again only for these):"
        return "\n".join([head, *(f"  {f.line()}" for f in self.failures)])

    def lines(self) -> list[str]:
        return [f.line() for f in self.failures]

    @classmethod
    def combine(cls, errors: list[BackendFailure]) -> BackendFailure:
        return cls([f for e in errors for f in e.failures], stop=any(e.stop for e in errors))


def merge(failures: list[RoleFailures]) -> list[RoleFailures]:
    by_role: dict[tuple[str, str], RoleFailures] = {}
    for f in failures:
        into = by_role.setdefault((f.role, f.endpoint), RoleFailures(f.role, f.endpoint))
        into.errors.update(f.errors)
    return list(by_role.values())

"""Cost ledger: tokens in/out and dollars per stage and model role, with totals.

`LedgerStore` is a `Store` that charges every model call made during a `build()` to that
build (through a context variable, so builds running at the same time on other threads are
told apart), so every stage shell (present or future) is measured without knowing it: the
charge is what that stage cost in this run. It goes into the artifact's DONE meta (`cost`,
when the artifact was built now) and into the run summary (`Ledger.summary()`, written to
results.json). Dollars come from the role's card prices (`price_in_per_mtok`,
`price_out_per_mtok`) applied to tokens the backend really spent: cache hits cost 0 and are
counted separately, so a rerun's ledger reads zero dollars. A build nested in another
build's `produce` is charged to the inner stage only.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xlexp.llm.chat import CHARGE_TO, Usage
from xlexp.stage import STAGES
from xlexp.store import Artifact, Parts, Store, write_json

log = logging.getLogger(__name__)

COUNTERS = ("calls", "cache_hits", "errors", "prompt_tokens", "completion_tokens")


def _zero() -> dict[str, float]:
    return dict.fromkeys(COUNTERS, 0) | {"usd": 0.0}


def _add(into: dict, other: dict) -> None:
    for name in (*COUNTERS, "usd"):
        into[name] = into.get(name, 0) + other.get(name, 0)
    if other.get("replicas"):  # a role's calls per replica (a base_url that lists several)
        split = into.setdefault("replicas", {})
        for url, n in other["replicas"].items():
            split[url] = split.get(url, 0) + n


def _rounded(row: dict) -> dict:
    return {
        k: (round(v, 9) if k == "usd" else dict(v) if k == "replicas" else int(v))
        for k, v in row.items()
    }


def split_line(role: str, replicas: dict[str, int]) -> str:
    """`teacher: 120 calls: http://a:8000/v1 61, http://b:8000/v1 59` (answers per replica)."""
    parts = ", ".join(f"{url} {n}" for url, n in sorted(replicas.items()))
    return f"{role}: {sum(replicas.values())} calls: {parts}"


def usd(prompt_tokens: float, completion_tokens: float, card: Any) -> float:
    """Dollars for these tokens at the card's per-million-token prices (Batch API: discounted)."""
    return Usage(prompt_tokens=int(prompt_tokens), completion_tokens=int(completion_tokens)).cost(
        card
    )


@dataclass
class Ledger:
    """Per-stage usage deltas of one run. `models` is a roles.Models (anything with `roles()`)."""

    models: Any = None
    entries: list[dict] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def measure(
        self, stage: str, key: str, call: Callable[[], tuple[Artifact, bool]]
    ) -> tuple[Artifact, bool, dict]:
        """Run `call` (a store build); return its result and this stage's cost entry.

        Calls are charged through `CHARGE_TO`, set afresh for this build: a build nested in
        this one sets its own (charged to the inner stage only), and a build running at the
        same time on another thread has its own too.
        """
        charge: dict[Any, Usage] = {}
        token = CHARGE_TO.set(charge)
        try:
            artifact, built = call()
        finally:
            CHARGE_TO.reset(token)
        role_of = (
            {model: role for role, model in self.models.roles().items()}
            if self.models is not None
            else {}
        )
        roles: dict[str, dict] = {}
        for model, usage in charge.items():
            own = {n: getattr(usage, n) for n in COUNTERS}
            if model in role_of and any(own.values()):
                roles[role_of[model]] = own | {
                    "usd": usd(own["prompt_tokens"], own["completion_tokens"], model.card)
                }
                if usage.replicas:  # one role, however many servers: their split beside it
                    roles[role_of[model]]["replicas"] = dict(usage.replicas)
        total = _zero()
        for row in roles.values():
            _add(total, {k: v for k, v in row.items() if k != "replicas"})
        entry = {
            "stage": _label(stage, roles),
            "key": key,
            "built": built,
            "roles": {r: _rounded(v) for r, v in roles.items()},
            "total": _rounded(total),
        }
        with self._lock:
            self.entries.append(entry)
        return artifact, built, entry

    def total_since(self, start: int) -> dict[str, float]:
        """Calls, cache hits, tokens and USD of the builds measured since `len(entries)` was
        `start`."""
        total = _zero()
        for e in self.entries[start:]:
            _add(total, e["total"])
        return total

    def summary(self) -> dict:
        """{stages: {label: {roles, total, artifacts}}, roles: {role: totals}, total}."""
        stages: dict[str, dict] = {}
        by_role: dict[str, dict] = {}
        grand = _zero()
        for e in self.entries:
            s = stages.setdefault(e["stage"], {"roles": {}, "total": _zero(), "artifacts": []})
            s["artifacts"].append({"key": e["key"], "built": e["built"]})
            for role, row in e["roles"].items():
                _add(s["roles"].setdefault(role, _zero()), row)
                _add(by_role.setdefault(role, _zero()), row)
            _add(s["total"], e["total"])
            _add(grand, e["total"])
        for s in stages.values():
            s["roles"] = {r: _rounded(v) for r, v in s["roles"].items()}
            s["total"] = _rounded(s["total"])
        return {
            "stages": stages,
            "roles": {r: _rounded(v) for r, v in by_role.items()},
            "total": _rounded(grand),
        }


def _label(kind: str, roles: dict[str, dict]) -> str:
    # Artifacts that share a store kind (the system's and the reference's answers) are told
    # apart by the role their declaration says builds them.
    for stage in STAGES.values():
        for spec in stage.artifacts:
            if spec.store_kind == kind and spec.role is not None and spec.role in roles:
                return spec.name
    return kind


class LedgerStore(Store):
    """A Store whose builds are measured by `self.ledger` (attach the run's Models to it)."""

    def __init__(self, root: str | Path, models: Any = None):
        super().__init__(root)
        self.ledger = Ledger(models)

    def build(
        self,
        stage: str,
        key: str,
        produce: Callable[[Path, Parts], dict],
        *args: Any,
        **kwargs: Any,
    ) -> tuple[Artifact, bool]:
        # *args/**kwargs: whatever else Store.build takes (info, ...), passed through untouched.
        artifact, built, entry = self.ledger.measure(
            stage, key, lambda: super(LedgerStore, self).build(stage, key, produce, *args, **kwargs)
        )
        for role, row in entry["roles"].items():  # a role served by replicas: its split
            if row.get("replicas"):
                log.info("%s: %s", entry["stage"], split_line(role, row["replicas"]))
        if built:  # what producing this artifact cost; a reused artifact keeps its original cost
            meta_path = artifact.path / "DONE"
            meta = json.loads(meta_path.read_text())
            meta["cost"] = {"roles": entry["roles"], "total": entry["total"]}
            write_json(meta_path, meta)
        return artifact, built


def markdown_cost(cost: dict) -> str:
    """The ledger as a Markdown table: one row per stage and role, then the grand total."""
    lines = [
        "### cost",
        "",
        "| stage | role | calls | cache hits | errors | tokens in | tokens out | USD |",
        "|---" * 8 + "|",
    ]

    def row(stage: str, role: str, r: dict) -> str:
        cells = [
            r["calls"],
            r["cache_hits"],
            r["errors"],
            r["prompt_tokens"],
            r["completion_tokens"],
            f"{r['usd']:.4f}",
        ]
        return f"| {stage} | {role} | " + " | ".join(str(c) for c in cells) + " |"

    for stage, info in cost.get("stages", {}).items():
        for role, r in info["roles"].items():
            lines.append(row(stage, role, r))
    lines.append(row("**total**", "", cost.get("total", _zero())))
    splits = [
        split_line(role, r["replicas"])
        for role, r in cost.get("roles", {}).items()
        if r.get("replicas")
    ]
    if splits:  # roles served by several replicas: which answered how many
        lines += ["", "calls per replica:", "", *(f"- {line}" for line in splits)]
    return "\n".join(lines) + "\n"

"""The stage contract: what a stage declares once, and the registry of stages.

A stage is one package that declares itself in one `Stage` (its name, the artifacts it builds
in order, the shell that builds them, the roles it calls, its config checks, the calls and
tokens a config implies, what it adds to the run's summary, its W&B logging and its view
reader) and one `STAGES.register` line. The run loop (`xlexp.run`), the cost plan
(`xlexp.plan`), preflight, results.md, the HTML view and W&B iterate over the declarations;
none of them names a stage's artifacts. A test can register a stage of its own the same way.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from xlexp.registry import Registry
from xlexp.store import Artifact, MissingArtifact, canonical


@dataclass(frozen=True)
class ArtifactSpec:
    """One artifact a stage builds. `name` is how the run's summary, the plan and later stages
    call it; `kind` is the store directory it lives in (the system's and the reference's
    answers are both `respond` artifacts: one model's answers are stored once, whatever role
    asked for them)."""

    name: str
    kind: str = ""  # default: the name
    logged_as: str | None = None  # W&B artifact type (dataset, adapter); None: counts only
    files: tuple[str, ...] = ()  # the files logged as that W&B artifact
    when: Callable[[Any], bool] | None = None  # None: always built when its stage runs
    # Where artifacts share a store kind: the role whose calls build this one (the cost
    # ledger names a build by it).
    role: str | None = None

    @property
    def store_kind(self) -> str:
        return self.kind or self.name

    def built_by(self, cfg: Any) -> bool:
        return self.when is None or bool(self.when(cfg))


def signature(*parts: Any) -> str:
    """What determines a piece of work (config slices): the same work in two jobs of a sweep
    has the same signature and is counted once by the cost plan."""
    return canonical(list(parts))


@dataclass
class RoleCount:
    """Calls and tokens of one role for one artifact; `exact` when no ratio had to be assumed."""

    artifact: str
    role: str
    card: Any
    calls: float
    exact: bool = True
    prompt_tokens: float = 0.0
    completion_tokens: float = 0.0
    shared: str | None = None  # a signature: the same work in another job is counted once
    present: bool = False  # the artifact is in the store: no call
    measured_kind: str | None = None  # the store kind whose DONE records measure its tokens
    summed_usd: tuple[float, float] | None = None  # a total over rows of several cards
    # Tokens per call the stage expects when the store has no measurement (None: the plan's
    # defaults), e.g. a judge prompt = its template + both answers.
    prompt_tokens_per_call: float | None = None
    completion_tokens_per_call: float | None = None

    def usd(self, batch: bool) -> float:
        if self.summed_usd is not None:
            return self.summed_usd[1 if batch else 0]
        price_in = float(getattr(self.card, "price_in_per_mtok", 0.0) or 0.0)
        price_out = float(getattr(self.card, "price_out_per_mtok", 0.0) or 0.0)
        factor = float(getattr(self.card, "batch_price_factor", 0.5)) if batch else 1.0
        return (self.prompt_tokens * price_in + self.completion_tokens * price_out) / 1e6 * factor


@dataclass
class Training:
    """GPU work that is not a model call: tokens a training artifact sees."""

    artifact: str
    tokens: float
    exact: bool
    tokens_per_s: float | None = None  # the card's own throughput, else the plan's flag


@dataclass
class Expected:
    """What a stage's config and local inputs imply, before any call: the cost plan's rows."""

    calls: list[RoleCount] = field(default_factory=list)
    training: list[Training] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Measured:
    """What finished artifacts in a store say (read-only): their DONE records by store kind,
    for the ratios a stage's estimate needs (rows out per row in, tokens per call)."""

    def __init__(self, store_dir: str | Path):
        self.root = Path(store_dir)
        self._done: dict[str, list[dict]] = {}

    def done(self, kind: str) -> list[dict]:
        if kind not in self._done:
            found = []
            for path in sorted(self.root.glob(f"{kind}/*/DONE")):
                try:
                    found.append(json.loads(path.read_text()))
                except (OSError, json.JSONDecodeError):
                    continue
            self._done[kind] = found
        return self._done[kind]

    def ratio(self, kind: str, num: str, den: str) -> float | None:
        """sum(counts[num]) / sum(counts[den]) over the kind's finished artifacts."""
        pairs = [
            (c.get(num) or 0, c[den])
            for c in (m.get("counts") or {} for m in self.done(kind))
            if c.get(den)
        ]
        total = sum(d for _, d in pairs)
        return sum(n for n, _ in pairs) / total if total else None

    def per_call(self, kind: str, role: str, tokens: str) -> float | None:
        """Mean `prompt_tokens` or `completion_tokens` per call of `role` in `kind` artifacts
        (the ledger's record in DONE); a role `translator:x` falls back to `translator`."""
        for name in dict.fromkeys([role, role.split(":")[0]]):
            num = den = 0.0
            for meta in self.done(kind):
                row = ((meta.get("cost") or {}).get("roles") or {}).get(name) or {}
                if row.get("calls"):
                    num, den = num + row.get(tokens, 0), den + row["calls"]
            if den:
                return num / den
        return None


class RunSummary(TypedDict, total=False):
    """What a run produced: written as results.json, printed, logged to W&B."""

    note: str
    store: str
    run_dir: str
    stages: dict[str, dict]  # stage -> artifact name -> {key, kind, **counts}; and seconds
    generation_stats: dict
    metrics: dict  # lang -> column -> value (the metrics artifact)
    columns: list  # the metric columns, in table order
    rubric: dict
    system: dict  # labels of the judged system, for `python -m xlexp.report <sweep dir>`
    warnings: list  # stages whose content-reject share passed reject_warn_share
    backend_calls: int
    cost: dict  # the ledger: tokens, calls and dollars per stage and role
    seconds: float
    results: dict[str, str]  # results.json / results.md paths


@dataclass
class RunContext:
    cfg: Any
    run_dir: Path
    store: Any  # a LedgerStore; read-only when the plan or preflight probes
    models: Any  # roles.Models
    tracker: Any
    summary: RunSummary
    arts: dict[str, Artifact] = field(default_factory=dict)  # every artifact made so far, by name
    started: float = field(default_factory=time.time)

    def need(self, name: str) -> Artifact:
        """An earlier stage's artifact. Only a read-only probe stopped before making it can
        miss one: it stops here too."""
        if name not in self.arts:
            raise MissingArtifact(name, "")
        return self.arts[name]


@dataclass(frozen=True)
class TableRow:
    """One row of results.md's stage table."""

    artifact: str
    key: str | None
    rows_in: Any = None
    rows_out: Any = None
    rejects: Any = None
    details: Any = None


def _nothing(*args: Any) -> None:
    return None


def _no_roles(cfg: Any) -> dict[str, Any]:
    return {}


def _nothing_expected(cfg: Any, measured: Measured) -> Expected:
    return Expected()


@dataclass(frozen=True)
class ViewSpec:
    """What the HTML view shows of a stage beyond its stage table: one section of the page
    (`section`), one entry per distinct `anchor` artifact (a dataset per `select`, a judged
    system per `judge`). `read(store, keys, runs)` reads one entry from the keys of a run's
    artifacts; `read_store(store)` finds every entry in a bare store."""

    section: str
    anchor: str
    read: Callable[[Any, dict[str, str | None], list[str]], dict]
    read_store: Callable[[Any], list[dict]]


@dataclass(frozen=True)
class Stage:
    """A stage, declared once. `run(ctx, arts)` builds its artifacts through the store, adding
    each to `arts` under its declared name as soon as it is made (a read-only probe that stops
    at a missing artifact then knows which came before it)."""

    name: str
    artifacts: tuple[ArtifactSpec, ...]
    run: Callable[[RunContext, dict[str, Artifact]], None]
    wanted: Callable[[Any], bool] | None = None  # None: when `stages` names it
    roles: Callable[[Any], dict[str, Any]] = _no_roles  # config path -> card, of the roles it calls
    validate: Callable[[Any, bool], None] = _nothing  # (cfg, runs): raise ConfigError naming a key
    expected: Callable[[Any, Measured], Expected] = _nothing_expected
    # top-level summary fields
    summarize: Callable[[RunContext, dict[str, Artifact]], None] = _nothing
    log: Callable[[Any, RunContext, dict[str, Artifact]], None] = _nothing  # W&B beyond counts
    table_rows: Callable[[dict, dict], list[TableRow]] | None = None  # None: from the counts
    view: ViewSpec | None = None

    def is_wanted(self, cfg: Any) -> bool:
        return self.wanted(cfg) if self.wanted is not None else self.name in cfg.stages

    def spec(self, name: str) -> ArtifactSpec:
        return next(a for a in self.artifacts if a.name == name)


STAGES: Registry[Stage] = Registry("stage")
# In run order. Each declaration lives with its stage and is imported when first asked for.
STAGES.register("generate", "xlexp.generate.declaration:STAGE")
STAGES.register("sft", "xlexp.sft.declaration:STAGE")
STAGES.register("evaluate", "xlexp.evaluate.declaration:STAGE")
STAGES.register("report", "xlexp.report.declaration:STAGE")


def artifact_entry(spec: ArtifactSpec, art: Artifact) -> dict:
    """How the run's summary records one artifact: its key, its store kind and its counts."""
    return {"key": art.key, "kind": spec.store_kind, **(art.meta.get("counts") or {})}


def counted_rows(stage: Stage, entry: dict) -> list[TableRow]:
    """Stage-table rows read from a stage's summary entry: rows in and out, rejects, and what
    else its counts say (the declaration's `table_rows` may lay them out its own way)."""
    out = []
    for spec in stage.artifacts:
        info = dict(entry.get(spec.name) or {})
        if not info:
            continue
        key = info.pop("key", None)
        info.pop("kind", None)
        n_in = info.pop("in", None)
        n_out = info.pop("out", info.pop("rows", None))
        rejects = info.pop("rejects", None)
        details = {k: v for k, v in info.items() if v not in (0, {}, None, [])}
        out.append(TableRow(spec.name, key, n_in, n_out, rejects, details))
    return out

"""The run loop: validate, preflight, run the declared stages in order (`xlexp.stage.STAGES`),
and the read-only probe that tells which artifacts of a run the store already holds (what the
cost plan and preflight read). Nothing here names a stage or an artifact.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from xlexp.config import Config
from xlexp.roles import ProbeModels
from xlexp.stage import STAGES, Measured, RunContext, RunSummary, Stage, artifact_entry
from xlexp.store import Artifact, MissingArtifact, Store

log = logging.getLogger("xlexp")


def wanted_stages(cfg: Config) -> list[Stage]:
    """The declared stages this config runs, in order."""
    return [stage for stage in STAGES.values() if stage.is_wanted(cfg)]


def roles_of(cfg: Config, stages: list[Stage] | None = None) -> dict[str, Any]:
    """Model roles (config path -> card) the given stages (default: those the config runs) call."""
    roles: dict[str, Any] = {}
    for stage in wanted_stages(cfg) if stages is None else stages:
        roles.update(stage.roles(cfg))
    return roles


class _Quiet:
    """A tracker that logs nothing (the probe logs nothing)."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def probe(cfg: Config) -> tuple[list[str], dict[str, str]]:
    """Which artifacts of this job the store already holds, without building, loading or
    calling anything: each wanted stage's own shell runs against a read-only store and stops at
    its first missing artifact. Returns (present artifact names in order, {name: why it would
    be built}: `missing KEY` or `after NAME`). A ConfigError the run would stop on is raised."""
    store = Store(Path(str(cfg.store_dir)), read_only=True)
    ctx = RunContext(
        cfg, Path("."), store, ProbeModels(), _Quiet(), {"stages": {}, "warnings": []}
    )
    present: list[str] = []
    built: dict[str, str] = {}
    for stage in wanted_stages(cfg):
        if not stage.artifacts:  # it builds nothing (the report): nothing to look for
            continue
        arts: dict[str, Artifact] = {}
        stop: MissingArtifact | None = None
        try:
            stage.run(ctx, arts)
        except MissingArtifact as e:
            stop = e
        ctx.arts.update(arts)
        planned = [spec for spec in stage.artifacts if spec.built_by(cfg)]
        present += [spec.name for spec in planned if spec.name in arts]
        if stop is None:
            continue
        todo = [spec for spec in planned if spec.name not in arts]
        # The artifact whose key was missing (or, for a part such as one language's prompt
        # translations, the first one not there); none when an earlier stage's is missing.
        first = (
            None
            if not stop.key or not todo
            else next(
                (
                    s
                    for s in todo
                    if s.name == stop.name or (stop.name is None and s.store_kind == stop.stage)
                ),
                todo[0],
            )
        )
        for spec in todo:
            built[spec.name] = (
                f"missing {stop.key[:12]}"
                if spec is first
                else f"after {first.name if first else stop.stage}"
            )
    return present, built


def not_writable(path: Path) -> str | None:
    """Why files cannot be made in the directory `path` (or, when it does not exist yet, in the
    directory it would be made in); None when they can. A real file is made and removed: file
    modes say nothing about a read-only mount or root squash."""
    import tempfile

    path = Path(path).absolute()
    there = path
    while not there.exists() and there != there.parent:
        there = there.parent
    where = "" if there == path else f"{there}: "
    if not there.is_dir():
        return f"{where}not a directory"
    try:
        fd, probe_file = tempfile.mkstemp(prefix=".xlexp-write-check-", dir=there)
    except OSError as e:
        return f"{where}{e.strerror}"
    os.close(fd)
    os.unlink(probe_file)
    return None


def check_store_writable(cfg: Config) -> None:
    """A store that cannot take files stops the run now, naming it, when the run would build
    something; a rerun that every artifact in the store serves goes on read-only."""
    from xlexp.errors import ConfigError, StoreError

    root = Path(str(cfg.store_dir)).absolute()
    problem = not_writable(root)
    if problem is None:
        return
    try:
        _, to_build = probe(cfg)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 (the probe cannot tell: go on as before)
        log.warning(
            "%s is not writable (%s); what this run builds is unknown: %s", root, problem, e
        )
        return
    if to_build:
        raise StoreError(
            f"{root} is not writable ({problem}) and this run would build "
            f"{', '.join(to_build)}; point store_dir at a writable directory"
        )


def preflight(cfg: Config) -> None:
    """Check every role the run may call whose backend can be checked before any stage
    (PreflightError naming each one that cannot work). A run whose every artifact that calls a
    model is already in the store (a rerun for tables, offline, or after the server is gone)
    needs no server: a failed check is then a warning."""
    from xlexp.llm.preflight import PreflightError, check_roles

    try:
        check_roles(roles_of(cfg))
    except PreflightError as e:
        try:
            _, to_build = probe(cfg)
            measured = Measured(Path(str(cfg.store_dir)))
            calling = {
                row.artifact
                for stage in wanted_stages(cfg)
                for row in stage.expected(cfg, measured).calls
            }
            needs_calls = bool(calling & set(to_build))
        except Exception:  # noqa: BLE001 (the probe cannot tell: the preflight's verdict stands)
            needs_calls = True
        if needs_calls:
            raise
        log.warning(
            "%s\n  every artifact that calls a model is in the store: going on without them", e
        )


def totals(ctx: RunContext) -> None:
    ctx.summary["backend_calls"] = ctx.models.backend_calls()
    ctx.summary["cost"] = ctx.store.ledger.summary()
    ctx.summary["seconds"] = round(time.time() - ctx.started, 1)


def run(cfg: Config, run_dir: Path) -> RunSummary:
    """Validate, run the configured stages in order, report; returns the run's summary."""
    from xlexp import progress, track
    from xlexp.config import validate
    from xlexp.ledger import LedgerStore
    from xlexp.roles import Models

    validate(cfg)  # fail before any model loads
    check_store_writable(cfg)
    if cfg.preflight:  # each checkable role: server up, key accepted, model served
        preflight(cfg)
    store = LedgerStore(cfg.store_dir)  # a Store that measures each stage's tokens and dollars
    models = Models(store)
    store.ledger.models = models
    summary: RunSummary = {
        "note": cfg.note,
        "store": str(store.root),
        "run_dir": str(run_dir),
        "stages": {},
        "warnings": [],
    }
    ctx = RunContext(cfg, Path(run_dir), store, models, track.start(cfg, run_dir), summary)
    try:
        for stage in wanted_stages(cfg):
            t = time.time()
            measured = len(store.ledger.entries)
            arts: dict[str, Artifact] = {}
            stage.run(ctx, arts)
            ctx.arts.update(arts)
            if not arts:
                continue
            entry = {
                spec.name: artifact_entry(spec, arts[spec.name])
                for spec in stage.artifacts
                if spec.name in arts
            }
            summary["stages"][stage.name] = {**entry, "seconds": round(time.time() - t, 1)}
            stage.summarize(ctx, arts)
            ctx.tracker.log_stage(stage, arts)
            stage.log(ctx.tracker, ctx, arts)
            counts = {name: a.meta.get("counts", {}) for name, a in arts.items()}
            warnings = progress.reject_warnings(counts, cfg.reject_warn_share)
            summary["warnings"] += [f"{stage.name}: {w}" for w in warnings]
            line = progress.stage_line(
                stage.name,
                arts,
                time.time() - t,
                store.ledger.total_since(measured),
                cfg.reject_warn_share,
            )
            (log.warning if warnings else log.info)(line)
        if "results" not in summary:
            totals(ctx)
        ctx.tracker.finish(summary)
    finally:
        models.close()
    return summary

"""Generation past one node: the seed set split into `generate.shards` shards by a stable hash of
each passage id (the way NeMo Curator shards: a shard's content never depends on the order the
corpus is read in). `generate.shard=i` runs seed -> reverse -> refine -> translate -> qe for shard
i only (one Slurm array task); the run without it merges the finished shards (`select`, the
global QE filter of paper 4.4) and fails before any work when one is not finished, naming it and
the command that runs only the missing ones.

A shard's state is read from the store alone, without a model: its artifacts are probed against
a read-only store (as the cost plan does), and a stage being built shows as its part files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from xlexp.errors import ConfigError
from xlexp.generate.seed import Share
from xlexp.roles import ProbeModels
from xlexp.store import Artifact, MissingArtifact, Store
from xlexp.store_status import CHAIN, ShardState


def shares(cfg: Any) -> list[Share]:
    """The first round's pieces of the seed set: the whole set, or one per shard."""
    n = int(cfg.generate.shards)
    return [Share()] if n == 1 else [Share(n, i) for i in range(n)]


def _parts(store: Store, stage: str, key: str) -> int:
    return len(list((store.root / stage / f".partial-{key}" / "parts").glob("*.jsonl")))


# The shell of one piece: run_piece(cfg, store, models, share, arts) (xlexp.generate.stage).
PieceShell = Callable[[Any, Store, Any, Share, dict[str, Artifact]], dict[str, Artifact]]


def shard_states(
    cfg: Any, run_piece: PieceShell, store_dir: str | Path | None = None
) -> list[ShardState]:
    """Each first-round shard of this config: done (its QE scores are in the store), in progress
    (some of its artifacts or part files are) or missing."""
    store = Store(Path(str(store_dir or cfg.store_dir)), read_only=True)
    states = []
    for share in shares(cfg):
        arts: dict[str, Artifact] = {}
        try:
            if store.root.is_dir():
                run_piece(cfg, store, ProbeModels(), share, arts)
        except MissingArtifact as e:
            building = (store.root / e.stage / f".partial-{e.key}").is_dir()
            done = [name for name in CHAIN if name in arts]
            detail = ", ".join(f"{name} done" for name in done[-1:])
            if building:
                parts = _parts(store, e.stage, e.key)
                detail += ("; " if detail else "") + f"{e.stage}: {parts} part files"
            state = "in progress" if done or building else "missing"
            states.append(ShardState(share.index, state, detail))
            continue
        if "qe" not in arts:  # no store yet
            states.append(ShardState(share.index, "missing", ""))
            continue
        counts = arts["qe"].meta.get("counts", {})
        seeds = arts["seed"].meta.get("counts", {}).get("out")
        states.append(
            ShardState(share.index, "done", f"{seeds} seeds, {counts.get('in', 0)} QE pairs")
        )
    return states


def rerun_command(missing: list[int], shards: int) -> str:
    """The command that runs only the `missing` shards (a multirun: on
    hydra/launcher=slurm_gen, one Slurm array), with the overrides of the running job."""
    overrides = []
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            overrides = [
                o
                for o in HydraConfig.get().overrides.task
                if o.split("=", 1)[0].lstrip("+~") not in ("stages", "generate.shard")
            ]
    except (ImportError, ValueError):
        pass
    if not any(o.startswith("generate.shards=") for o in overrides):
        overrides.insert(0, f"generate.shards={shards}")
    which = ",".join(str(i) for i in missing)
    return " ".join(
        ["python -m xlexp", "stages=[generate]", *overrides, f"generate.shard={which}"]
        + (["-m"] if len(missing) > 1 else [])
    )


def check_finished(cfg: Any, store: Store, run_piece: PieceShell) -> None:
    """Before the merge does any work: every shard is finished, else one line naming the
    others, what each has so far, and the command that runs only them."""
    states = shard_states(cfg, run_piece, store.root)
    todo = [s for s in states if s.state != "done"]
    if not todo:
        return
    n = int(cfg.generate.shards)
    said = []
    missing = [str(s.index) for s in todo if s.state == "missing"]
    if missing:
        said.append(f"missing: {', '.join(missing)}")
    said += [f"in progress: {s.index} ({s.detail})" for s in todo if s.state == "in progress"]
    raise ConfigError(
        "generate.shards",
        f"{len(todo)} of {n} shards not finished ({'; '.join(said)}); the dataset is merged "
        f"from all of them. Run those: {rerun_command([s.index for s in todo], n)}",
    )

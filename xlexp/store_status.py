"""`python -m xlexp.store status [DIR]`: each set of generation shards a store holds, read from
the DONE records and the artifacts being built (no config, no model): per shard, done, in
progress (what is finished, the part files of the stage being built) or missing. Beside the
store's own code and importing none of it (the store's command line lives here and in
xlexp/explain.py). A finished artifact whose files do not match its DONE record counts as not
finished, as the store itself would treat it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from xlexp.integrity import artifact_damage

CHAIN = ("seed", "reverse", "refine", "translate", "qe")  # a shard's artifacts, in order


@dataclass
class ShardState:
    index: int
    state: str  # done | in progress | missing
    detail: str  # what is there: finished artifacts, and the part files of the one being built

    def line(self, of: int) -> str:
        said = f" ({self.detail})" if self.detail else ""
        return f"shard {self.index} of {of}: {self.state}{said}"


def _records(root: Path, stage: str) -> list[dict]:
    """The artifacts of `stage` in a store, finished or being built, with what made them."""
    out = []
    for done in (root / stage).glob("*/DONE"):
        try:
            meta = json.loads(done.read_text())
        except (OSError, ValueError):
            continue
        if not meta.get("made_of"):
            continue
        if artifact_damage(done.parent):  # not trusted: the next run rebuilds it
            out.append({"key": done.parent.name, "made_of": meta["made_of"], "damaged": True})
        else:
            out.append({"key": done.parent.name, "made_of": meta["made_of"], "meta": meta})
    for made in (root / stage).glob(".partial-*/.made_of.tmp"):
        try:
            made_of = json.loads(made.read_text())
        except (OSError, ValueError):
            continue
        parts = len(list((made.parent / "parts").glob("*.jsonl")))
        key = made.parent.name.removeprefix(".partial-")
        out.append({"key": key, "made_of": made_of, "parts": parts})
    return out


def store_status(root: str | Path) -> list[str]:
    """Each set of generation shards a store holds (read from the DONE records and the
    artifacts being built, no config needed): per shard, done, in progress (what is finished
    and the part files of the stage being built) or missing."""
    root = Path(root)
    children: dict[str, dict[str, list[dict]]] = {}
    for stage in CHAIN[1:]:
        for rec in _records(root, stage):
            for parent in rec["made_of"].get("inputs", []):
                children.setdefault(stage, {}).setdefault(parent, []).append(rec)
    sets: dict[str, dict[int, dict]] = {}
    for rec in _records(root, "seed"):
        config = dict(rec["made_of"].get("config") or {})
        share = config.pop("share", None)
        if not share or share.get("start") or share.get("of", 1) < 2:
            continue
        made = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8]
        n = (config.get("seed_data") or {}).get("n")
        name = f"{share['of']} shards, seed_data.n={n}, set {made}"
        sets.setdefault(name, {})[int(share["index"])] = rec
    lines = []
    for name, found in sorted(sets.items()):
        of = int(name.split()[0])
        states = [_state_of(i, found.get(i), children) for i in range(of)]
        tally = {s: sum(1 for x in states if x.state == s) for s in ("done", "in progress")}
        lines.append(
            f"{name}: {tally['done']} done, {tally['in progress']} in progress, "
            f"{of - sum(tally.values())} missing"
        )
        lines += ["  " + s.line(of) for s in states]
    return lines or [f"no generation shards in {root}"]


def _state_of(index: int, seed: dict | None, children: dict) -> ShardState:
    if seed is None:
        return ShardState(index, "missing", "")
    rec, reached = seed, "seed"
    for stage in CHAIN:
        if stage != "seed":
            found = children.get(stage, {}).get(rec["key"], [])
            finished = [r for r in found if "meta" in r]
            if not finished:
                parts = max((r.get("parts", 0) for r in found), default=0)
                what = "damaged" if any(r.get("damaged") for r in found) else f"{parts} part files"
                detail = f"{reached} done" + (f"; {stage}: {what}" if found else "")
                return ShardState(index, "in progress", detail)
            rec, reached = finished[0], stage
        elif "meta" not in rec:
            what = "damaged" if rec.get("damaged") else f"{rec.get('parts', 0)} part files"
            return ShardState(index, "in progress", f"seed: {what}")
    seeds = seed["meta"].get("counts", {}).get("out")
    pairs = rec["meta"].get("counts", {}).get("in", 0)
    return ShardState(index, "done", f"{seeds} seeds, {pairs} QE pairs")


def status_root(path: str | Path) -> Path:
    """The store a `status` target names: a store, or a run or sweep dir (or a folder of run
    dirs) whose Hydra config names its store_dir."""
    path = Path(path)
    configs = sorted(path.glob(".hydra/config.yaml")) + sorted(path.glob("*/.hydra/config.yaml"))
    if configs and not (path / "seed").is_dir():
        from omegaconf import OmegaConf

        store = Path(str(OmegaConf.load(configs[0]).get("store_dir", "outputs/store")))
        return store  # a relative store_dir: as the jobs saw it, from where they were started
    return path

"""Read an offline W&B run back: the records of its .wandb file, parsed with wandb's own reader.

`wandb.sdk.internal.datastore.DataStore` is the reader `wandb sync` has used for offline runs; each
record is a `wandb_internal_pb2.Record` protobuf. Parsing them (instead of grepping bytes) lets a
test ask for the run's group, its history keys, its artifacts' manifests and its logged tables.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf.json_format import MessageToDict
from wandb.proto import wandb_internal_pb2 as pb
from wandb.sdk.internal.datastore import DataStore


@dataclass
class OfflineRun:
    dir: Path
    run: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    artifacts: list[dict] = field(default_factory=list)

    def artifact(self, name_prefix: str) -> dict:
        found = [a for a in self.artifacts if a["name"].startswith(name_prefix)]
        assert len(found) == 1, (
            f"{len(found)} artifacts named {name_prefix}*: {[a['name'] for a in self.artifacts]}"
        )
        return found[0]

    def table(self, key: str) -> dict:
        """The JSON of a logged wandb.Table (files/media/table/<key>_*.table.json)."""
        files = sorted((self.dir / "files" / "media" / "table").glob(f"{key}_*.table.json"))
        assert files, f"no table {key} in {self.dir}"
        return json.loads(files[-1].read_text())

    def history_keys(self) -> set[str]:
        return {k for row in self.history for k in row}


def _items(updates: list) -> dict:
    out = {}
    for u in updates:
        key = "/".join(u.get("nestedKey", [])) or u.get("key")
        out[key] = json.loads(u["valueJson"])
    return out


def _records(path: Path) -> list[pb.Record]:
    records = []
    ds = DataStore()
    ds.open_for_scan(str(path))
    try:
        while (data := ds.scan_data()) is not None:
            record = pb.Record()
            record.ParseFromString(data)
            records.append(record)
    except (AssertionError, ValueError):  # a record still being written
        pass
    return records


def wait_for_exit(path: Path, timeout: float = 60.0) -> list[pb.Record]:
    """The run's records once its `exit` record is written. wandb 0.28's offline `run.finish()`
    can return before wandb-core has flushed the .wandb file (seen: 7 bytes right after finish,
    the whole run a moment later), so a reader in the same process polls for the last record."""
    deadline = time.monotonic() + timeout
    while True:
        records = _records(path)
        if (
            any(r.WhichOneof("record_type") == "exit" for r in records)
            or time.monotonic() > deadline
        ):
            return records
        time.sleep(0.1)


def read(run_root: Path) -> OfflineRun:
    """The one offline run under `run_root` (the `dir` given to wandb.init)."""
    runs = sorted(Path(run_root).glob("wandb/offline-run-*/*.wandb"))
    assert len(runs) == 1, f"expected one offline run under {run_root}, found {runs}"
    out = OfflineRun(dir=runs[0].parent)
    records = wait_for_exit(runs[0])
    assert any(r.WhichOneof("record_type") == "exit" for r in records), (
        f"{runs[0]} has no exit record"
    )
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out.run = MessageToDict(record.run)
            out.config.update(_items(out.run.get("config", {}).get("update", [])))
        elif kind == "config":
            out.config.update(_items(MessageToDict(record.config).get("update", [])))
        elif kind == "history":
            out.history.append(_items(MessageToDict(record.history).get("item", [])))
        elif kind == "summary":
            out.summary.update(_items(MessageToDict(record.summary).get("update", [])))
        elif kind == "artifact":
            out.artifacts.append(MessageToDict(record.artifact))
    return out

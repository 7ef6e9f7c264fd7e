"""Content-addressed artifacts: keys, atomic writes, per-batch parts, a lock per key.

An artifact is `<root>/<stage>/<key>/` where key = hash(config slice + input keys + version).
It is built in `<root>/<stage>/.partial-<key>/` and renamed into place with a DONE file
(counts, timings, each file's size and sha256) written last, so a finished artifact is never
half-written. A killed job's partial dir keeps its `parts/` (finished batches) for the next try.

Reuse is verified: a finished artifact whose DONE is unreadable or whose files do not match
their recorded size and hash is moved aside to `<root>/.damaged/` and built again; a part that
does not match its checksum is dropped and its batch redone. A store that cannot heal (read
only) stops with one line naming the damaged file.

Reuse also follows content: DONE records a digest of each input artifact's files as built. A key
comes from the inputs' keys, so an input rebuilt under the same key with other bytes (damaged,
answers came back different) leaves the key alone; the recorded digest no longer matches, and the
artifact is set aside under `<root>/.stale/` and built again, and so on down the chain.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from filelock import FileLock
from omegaconf import DictConfig, ListConfig

from xlexp.errors import StoreError
from xlexp.failures import BackendFailure
from xlexp.integrity import (
    artifact_damage,
    disk_full_names_path,
    file_record,
    manifest,
    part_damage,
    part_sum_path,
    read_done,
    unaccounted_rows,
)
from xlexp.plain import plain

log = logging.getLogger("xlexp.store")


def _json_default(obj: Any) -> Any:
    # Nodes nested in plain containers become containers; any other object its str().
    return plain(obj) if isinstance(obj, DictConfig | ListConfig) else str(obj)


def canonical(obj: Any) -> str:
    """Stable JSON for hashing (OmegaConf nodes, at any depth, as plain sorted containers)."""
    return json.dumps(
        obj,  # a node, at the top too, goes through `_json_default`
        sort_keys=True,
        ensure_ascii=False,
        default=_json_default,
        separators=(",", ":"),
    )


def digest(obj: Any, n: int = 16) -> str:
    return hashlib.sha256(canonical(obj).encode()).hexdigest()[:n]


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temp file + rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=2, default=str))
    os.replace(tmp, path)


def write_jsonl(path: Path, rows: Iterable[dict]) -> int:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    n = 0
    with tmp.open("w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def read_jsonl(path: Path) -> list[dict]:
    return list(iter_jsonl(path))


def iter_jsonl(path: Path) -> Iterator[dict]:
    """The rows of a JSONL file one at a time (a merge streams files bigger than memory)."""
    with Path(path).open() as f:
        yield from (json.loads(line) for line in f if line.strip())


class Parts:
    """Finished batches of a long stage: `parts/<name>.jsonl`, each written atomically."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def get(self, name: str) -> list[dict] | None:
        """The batch's rows; None when absent, or damaged (then dropped, so it is redone)."""
        path = self.root / f"{name}.jsonl"
        if not path.exists():
            return None
        problem = part_damage(path)
        if problem is None:
            return read_jsonl(path)
        log.warning("dropping part %s (%s); its batch is redone", path, problem)
        for stale in (path, part_sum_path(path)):
            stale.unlink(missing_ok=True)
        return None

    def put(self, name: str, rows: list[dict]) -> None:
        path = self.root / f"{name}.jsonl"
        write_jsonl(path, rows)
        # The checksum goes last: a part without one is unfinished and is redone.
        write_json(part_sum_path(path), file_record(path))

    def map_batches(
        self,
        prefix: str,
        items: Iterable[Any],
        batch_size: int,
        fn: Callable[[list[Any]], list[dict]],
        desc: str | None = None,
        workers: int = 1,
    ) -> list[dict]:
        """Run `fn` over batches of `items`, skipping batches already in parts (a progress bar
        counts items; batches found in parts count at once, so a resumed run shows where it is).

        `items` may be a lazy iterable (read as batches are needed: producing items overlaps
        with the batches in flight). With `workers` > 1, that many batches run at once on
        threads (for roles behind a server: their requests fill its window while one batch's
        slowest answer is still out); each part is written as its batch finishes, rows come
        back in input order.

        A batch whose calls failed (BackendFailure) is not kept; the other batches still run
        (unless a breaker says the endpoint is down) and the failures are raised at the end,
        so a rerun redoes only the failed batches, and of those asks only the failed calls.
        """
        from xlexp.progress import bar

        # pragma: no mutate start (a bar for a person; the loop below bounds what is in flight)
        total = len(items) if isinstance(items, Sized) else None
        progress_bar = bar(desc=desc or prefix, total=total, unit="row", min_total=batch_size + 1)
        threads = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix=prefix)
        # pragma: no mutate end
        done: dict[int, list[dict]] = {}
        failures: list[BackendFailure] = []
        with progress_bar as progress, threads as pool:
            running: dict[Future, tuple[int, str, int]] = {}

            def keep(start: int, name: str, result: Callable[[], list[dict]]) -> bool:
                try:
                    rows = result()
                except BackendFailure as e:  # its answers are in the response cache
                    failures.append(e)
                    return False
                self.put(name, rows)
                done[start] = rows
                return True

            def finish_one() -> None:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    start, name, n = running.pop(future)
                    if keep(start, name, future.result):
                        progress.update(n)  # pragma: no mutate

            try:
                pending = iter(items)
                start = 0
                while not any(f.stop for f in failures) and (
                    batch := list(islice(pending, batch_size))
                ):
                    name = f"{prefix}-{start:08d}"
                    rows = self.get(name)
                    if rows is not None:
                        done[start] = rows
                        progress.update(len(batch))  # pragma: no mutate
                    elif workers <= 1:  # in this thread: an interrupt stops the batch at once
                        if keep(start, name, lambda batch=batch: fn(batch)):
                            progress.update(len(batch))  # pragma: no mutate
                    else:
                        while len(running) >= workers:
                            finish_one()
                        # In this build's context: its calls are charged to it (cost ledger).
                        running[pool.submit(contextvars.copy_context().run, fn, batch)] = (
                            start,
                            name,
                            len(batch),
                        )
                    start += len(batch)
                while running:
                    finish_one()
            finally:
                for future in running:
                    future.cancel()
        if failures:
            raise BackendFailure.combine(failures)
        return [row for start in sorted(done) for row in done[start]]


@dataclass
class Artifact:
    stage: str
    key: str
    path: Path

    @property
    def meta(self) -> dict:
        return read_done(self.path / "DONE")

    def file(self, name: str) -> Path:
        return self.path / name

    def rows(self, name: str = "rows.jsonl") -> list[dict]:
        return read_jsonl(self.path / name)


class MissingArtifact(Exception):
    """A read-only store was asked to build an artifact it does not hold."""

    def __init__(self, stage: str, key: str, name: str | None = None):
        super().__init__(f"{stage} {key}: not in the store")
        # name: which of a stage's artifacts, where several share a store kind
        self.stage, self.key, self.name = stage, key, name


class Store:
    """`read_only`: what the cost plan and preflight see. Nothing is created, moved or written;
    `build` returns a finished artifact or raises MissingArtifact before producing anything, so
    a stage's own shell, run against it, tells which of its artifacts are there."""

    def __init__(self, root: str | os.PathLike, read_only: bool = False):
        self.root = Path(root).resolve()
        self.read_only = read_only
        if not read_only:
            self.root.mkdir(parents=True, exist_ok=True)
        self._made_of: dict[str, dict] = {}  # key -> what made it, recorded in DONE by build()

    def key(self, stage: str, config: Any, inputs: Iterable[str] = (), version: int = 1) -> str:
        made_of = {"stage": stage, "config": config, "inputs": sorted(inputs), "version": version}
        key = digest(made_of)
        self._made_of[key] = json.loads(canonical(made_of))
        return key

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def get(self, stage: str, key: str) -> Artifact | None:
        """The finished artifact, verified against its DONE record; None when absent or damaged
        (a damaged one is moved aside, so the next build makes it again)."""
        path = self.path(stage, key)
        if not (path / "DONE").exists():
            return None
        problem = artifact_damage(path)
        if problem is not None:
            if not self.read_only:  # a read-only store: the next writing run rebuilds it
                self.quarantine(path, problem)
            return None
        changed = self.changed_input(path)
        if changed is not None:
            if not self.read_only:
                self.set_aside(path, changed, ".stale", "stale artifact")
            return None
        return Artifact(stage, key, path)

    def content_digest(self, key: str) -> str | None:
        """What the finished artifact `key` holds, as a digest of its DONE's file records
        (sizes and sha256); None when the store has no such artifact or it predates records."""
        for done in self.root.glob(f"*/{key}/DONE"):
            try:
                files = read_done(done).get("files")
            except StoreError:
                return None
            return None if files is None else digest(files)
        return None

    def changed_input(self, path: Path) -> str | None:
        """Which input of the finished artifact at `path` holds other bytes than when it was
        built, or None. An input not in the store now cannot be compared: the run builds inputs
        before what reads them, so it is there whenever this artifact is about to be used."""
        try:
            built_from = read_done(path / "DONE").get("inputs_content") or {}
        except StoreError:
            return None
        for key, then in sorted(built_from.items()):
            now = self.content_digest(key)
            if now is not None and now != then:
                return f"built from input {key}, whose content has changed since"
        return None

    @contextmanager
    def lock(self, stage: str, key: str) -> Iterator[None]:
        lock_dir = self.root / ".locks"
        lock_dir.mkdir(exist_ok=True)
        with FileLock(str(lock_dir / f"{stage}-{key}.lock")):
            yield

    def build(
        self,
        stage: str,
        key: str,
        produce: Callable[[Path, Parts], dict],
        info: dict | None = None,
    ) -> tuple[Artifact, bool]:
        """Return the artifact, producing it once. `produce(workdir, parts) -> counts`.

        Returns (artifact, built_now). Concurrent callers with the same key wait on the lock
        and then find the DONE artifact instead of producing it again.
        """
        found = self.get(stage, key)
        if found:
            log.info("%s %s: reused %s", stage, key, found.meta.get("counts"))
            return found, False
        if self.read_only:
            raise MissingArtifact(stage, key)
        with self.lock(stage, key):
            found = self.get(stage, key)
            if found:  # another process produced it while we waited on the lock
                log.info("%s %s: produced by another job %s", stage, key, found.meta.get("counts"))
                return found, False
            work = self.root / stage / f".partial-{key}"
            final = self.path(stage, key)
            if final.exists():  # get() moved aside any with a DONE: this one was never finished
                self.quarantine(final, "no DONE")
            with disk_full_names_path(work):
                work.mkdir(parents=True, exist_ok=True)
                if key in self._made_of:  # for `xlexp.store status` (a .tmp: removed below)
                    write_json(work / ".made_of.tmp", self._made_of[key])
                started = time.time()
                counts = produce(work, Parts(work / "parts")) or {}
                lost = unaccounted_rows(counts)
                if lost:
                    raise StoreError(f"{stage} {key}: {lost}; nothing stored")
                shutil.rmtree(work / "parts")
                for stale in work.rglob(".*.tmp"):  # temp files of an earlier, killed attempt
                    stale.unlink()
                files = manifest(work)
            done = {
                "stage": stage,
                "key": key,
                "counts": counts,
                "seconds": round(time.time() - started, 3),
                "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                **(info or {}),
                "files": files,
            }
            if key in self._made_of:  # what `python -m xlexp.store explain` compares
                done["made_of"] = self._made_of[key]
                inputs = {k: self.content_digest(k) for k in self._made_of[key]["inputs"]}
                done["inputs_content"] = {k: d for k, d in inputs.items() if d is not None}
            with disk_full_names_path(work):
                write_json(work / "DONE", done)
            os.replace(work, final)
            log.info("%s %s: built in %.1f s %s", stage, key, done["seconds"], counts)
            return Artifact(stage, key, final), True

    def quarantine(self, path: Path, problem: str) -> None:
        """Move a damaged artifact dir to `<root>/.damaged/` (kept for a post-mortem, out of
        every reader's way); a store that cannot be changed stops naming the file."""
        self.set_aside(path, problem, ".damaged", "damaged artifact")

    def set_aside(self, path: Path, problem: str, folder: str, what: str) -> None:
        stage, key = path.parent.name, path.name
        aside = self.root / folder / stage / f"{key}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        for above in (aside.parent.parent, aside.parent):
            if above.exists() and not above.is_dir():  # a stray file by that name
                raise StoreError(
                    f"{path}: {what} ({problem}), and {above} is a file where a folder "
                    "should be; move that file away"
                )
        try:
            aside.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, aside)
        except FileNotFoundError:
            return  # another process moved it first
        except OSError as e:
            raise StoreError(
                f"{path}: {what} ({problem}) and the store cannot be changed "
                f"({e.strerror}); delete it or point store_dir at a writable copy"
            ) from None
        log.warning("%s: %s (%s), moved to %s; building it again", path, what, problem, aside)


if __name__ == "__main__":  # `python -m xlexp.store explain ...` (the command lives beside)
    from xlexp.explain import main
    raise SystemExit(main())

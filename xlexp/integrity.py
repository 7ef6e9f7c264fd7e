"""Integrity of stored files: each artifact's DONE records every file's size and sha256, a
part carries a checksum beside it; reuse checks them, so a cut, edited or lost file is found
(and the store rebuilds it) instead of being read as a shorter or broken result."""

from __future__ import annotations

import errno
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from xlexp.errors import StoreError

HASH_BLOCK = 1 << 20


def hash_file_into(h: Any, path: str | Path) -> None:
    """Feed a file's bytes to a hashlib object, a block at a time (files may be large)."""
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(HASH_BLOCK), b""):
            h.update(block)


def sha256_file(path: str | Path) -> str:
    """The sha256 of a file's bytes: the one way xlexp hashes a file."""
    h = hashlib.sha256()
    hash_file_into(h, path)
    return h.hexdigest()


def file_record(path: Path) -> dict:
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def manifest(root: Path) -> dict[str, dict]:
    """Size and sha256 of every file under `root` (relative posix paths), DONE excluded."""
    return {
        p.relative_to(root).as_posix(): file_record(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).as_posix() != "DONE"
    }


def read_done(path: Path) -> dict:
    try:
        done = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StoreError(f"{path}: unreadable DONE record ({type(e).__name__}: {e})") from None
    if not isinstance(done, dict):
        raise StoreError(f"{path}: DONE record is not a JSON object")
    return done


# (path, size, mtime_ns, inode) of files verified in this process: a run that reads an
# artifact many times hashes it once.
_verified: set[tuple] = set()


def _stamp(path: Path) -> tuple:
    st = path.stat()
    return (str(path), st.st_size, st.st_mtime_ns, st.st_ino)


def artifact_damage(path: Path) -> str | None:
    """What is wrong with a finished artifact, or None. Checks DONE and, where DONE lists
    them (artifacts written before files were recorded do not), each file's size and sha256."""
    try:
        done = read_done(path / "DONE")
    except StoreError as e:
        return str(e)
    files = done.get("files")
    if files is None:
        return None
    for name, want in files.items():
        file = path / name
        try:
            stamp = _stamp(file)
        except FileNotFoundError:
            return f"{file}: missing"
        if stamp in _verified:
            continue
        if stamp[1] != want.get("bytes"):
            return f"{file}: {stamp[1]} bytes, DONE recorded {want.get('bytes')}"
        if sha256_file(file) != want.get("sha256"):
            return f"{file}: sha256 differs from the DONE record"
        _verified.add(stamp)
    return None


def part_sum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sum")


def part_damage(path: Path) -> str | None:
    """Why a part file cannot be trusted (no checksum, cut, changed, unparseable), or None."""
    try:
        want = json.loads(part_sum_path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return "no valid checksum (unfinished write)"
    if not isinstance(want, dict) or file_record(path) != want:
        return "size or sha256 differs from its checksum"
    return None


@contextmanager
def disk_full_names_path(path: Path) -> Iterator[None]:
    """A full disk (or quota) stops the run with one line naming where it was writing."""
    try:
        yield
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = e.filename or path
        raise StoreError(
            f"{where}: no space left on device; free space and rerun (finished batches are kept)"
        ) from None


# Counts that say where an input row went other than out: rejected with a reason (stored in
# rejects.jsonl), failed (a call that is retried on the next run), filtered (by a declared rule
# such as the QE bottom share), elsewhere (a seed passage another generation shard or top-up round
# works on).
ROW_FATES = ("rejects", "failed", "filtered", "elsewhere")


def unaccounted_rows(counts: Any) -> str | None:
    """Why an artifact's counts lose rows, or None. Counts that state `in` and `out` must
    account for every input row: in == out + rejects + failed + filtered."""
    if not isinstance(counts, dict):
        return None
    n_in, n_out = counts.get("in"), counts.get("out")
    if not isinstance(n_in, int) or not isinstance(n_out, int):
        return None
    fates = {k: counts[k] for k in ROW_FATES if isinstance(counts.get(k), int)}
    if n_in == n_out + sum(fates.values()):
        return None
    said = "".join(f" + {n} {k}" for k, n in fates.items())
    return f"{n_in} rows in but {n_out} out{said}: {n_in - n_out - sum(fates.values())} lost"

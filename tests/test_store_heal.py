"""Damaged stores are detected and heal: a finished artifact whose files were cut, emptied or
lost is moved aside and built again (same bytes); a cut or unfinished part is dropped and its
batch redone; a garbled response cache value is a miss and a broken cache file stops with one
line naming it; a read-only store is reused; a full disk names the path and a rerun after
space is freed completes.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from xlexp.llm.base import CacheError, ResponseCache
from xlexp.store import Store, write_jsonl

ROWS = [{"id": i, "text": f"row {i} " * 5} for i in range(13)]


def build(store: Store, calls: list[int]):
    def produce(work: Path, parts) -> dict:
        calls.append(1)
        write_jsonl(work / "rows.jsonl", ROWS)
        (work / "sub").mkdir()
        (work / "sub" / "notes.txt").write_text("notes")
        return {"out": len(ROWS)}

    return store.build("stage", "k", produce)


def cut_at_line(path: Path) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:6]))


def cut_mid_line(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 3])


def same_size_other_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[10] = ord("X") if data[10] != ord("X") else ord("Y")
    path.write_bytes(bytes(data))


DAMAGE = {
    "rows cut at a line boundary": lambda a: cut_at_line(a / "rows.jsonl"),
    "rows cut mid-line": lambda a: cut_mid_line(a / "rows.jsonl"),
    "rows changed, same size": lambda a: same_size_other_bytes(a / "rows.jsonl"),
    "a nested file lost": lambda a: (a / "sub" / "notes.txt").unlink(),
    "DONE emptied": lambda a: (a / "DONE").write_text(""),
    "DONE garbled": lambda a: (a / "DONE").write_text('{"stage": "st'),
    "DONE deleted": lambda a: (a / "DONE").unlink(),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_artifact_is_moved_aside_and_rebuilt(tmp_path, damage, caplog):
    store = Store(tmp_path)
    calls: list[int] = []
    art, _ = build(store, calls)
    original = (art.path / "rows.jsonl").read_bytes()
    DAMAGE[damage](art.path)

    store = Store(tmp_path)  # a new process: nothing verified yet
    art, built = build(store, calls)
    assert built and len(calls) == 2
    assert (art.path / "rows.jsonl").read_bytes() == original and art.rows() == ROWS
    assert art.meta["counts"] == {"out": 13}
    aside = list((tmp_path / ".damaged" / "stage").iterdir())
    assert len(aside) == 1 and aside[0].name.startswith("k-")
    if damage != "DONE deleted":  # the warning names the file
        assert any(
            str(art.path) in r.getMessage() for r in caplog.records if r.levelname == "WARNING"
        )
    # Healed: the next reuse is a plain reuse.
    _, built = build(Store(tmp_path), calls)
    assert not built and len(calls) == 2


def test_done_records_each_files_size_and_sha256(tmp_path):
    import hashlib

    art, _ = build(Store(tmp_path), [])
    files = art.meta["files"]
    assert set(files) == {"rows.jsonl", "sub/notes.txt"}
    data = (art.path / "rows.jsonl").read_bytes()
    assert files["rows.jsonl"] == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


@pytest.mark.parametrize(
    "damage", ["cut mid-line", "cut at a line boundary", "checksum lost", "emptied"]
)
def test_a_bad_part_is_dropped_and_its_batch_redone(tmp_path, damage):
    store = Store(tmp_path)
    seen: list[list[int]] = []

    def fn(batch):
        seen.append(list(batch))
        if batch[0] == 8:
            raise RuntimeError("killed")
        return [{"x": x, "pad": "y" * 20} for x in batch]

    with pytest.raises(RuntimeError):
        store.build("s", "k", _producer(fn))
    part = tmp_path / "s" / ".partial-k" / "parts" / "b-00000002.jsonl"
    if damage == "cut mid-line":
        cut_mid_line(part)
    elif damage == "cut at a line boundary":
        part.write_bytes(part.read_bytes().splitlines(keepends=True)[0])
    elif damage == "checksum lost":
        part.with_name(part.name + ".sum").unlink()
    else:
        part.write_bytes(b"")
    seen.clear()

    def fn_ok(batch):
        seen.append(list(batch))
        return [{"x": x, "pad": "y" * 20} for x in batch]

    art, built = store.build("s", "k", _producer(fn_ok))
    assert built and seen == [[2, 3], [8, 9]]  # the bad part's batch and the unfinished one
    assert art.rows() == [{"x": x, "pad": "y" * 20} for x in range(10)]


def _producer(fn):
    def produce(work, parts):
        rows = parts.map_batches("b", list(range(10)), 2, fn)
        write_jsonl(work / "rows.jsonl", rows)
        return {"rows": len(rows)}

    return produce


def _cache_with_two(path: Path) -> None:
    cache = ResponseCache(path)
    cache.put_many({"a": {"text": "answer a"}, "b": {"text": "answer b"}})
    del cache


def test_an_undecodable_cache_value_is_a_miss(tmp_path):
    path = tmp_path / "cache.sqlite"
    _cache_with_two(path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE responses SET value = ? WHERE key = 'a'", ('{"text": "ans\x00',))
        conn.execute(
            "UPDATE responses SET value = ? WHERE key = 'b'", (json.dumps({"text": None}),)
        )
    cache = ResponseCache(path)
    assert cache.get_many(["a", "b"]) == {}
    cache.put_many({"a": {"text": "again"}})
    assert cache.get_many(["a"]) == {"a": {"text": "again"}}


@pytest.mark.parametrize("where", ["header", "tail"])
def test_a_broken_cache_file_is_one_line_naming_it(tmp_path, where):
    path = tmp_path / "cache.sqlite"
    cache = ResponseCache(path)
    cache.put_many({f"k{i}": {"text": "x" * 200} for i in range(200)})
    cache._raw_conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    cache._raw_conn().close()
    data = bytearray(path.read_bytes())
    if where == "header":
        data[:100] = b"\xff" * 100
    else:
        data[-4096:] = b"\xa5" * 4096
    path.write_bytes(bytes(data))
    for name in ("cache.sqlite-wal", "cache.sqlite-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    with pytest.raises(CacheError) as err:
        fresh = ResponseCache(path)
        fresh.get_many([f"k{i}" for i in range(200)])
        len(fresh)
    message = str(err.value)
    assert str(path) in message and "damaged response cache" in message and "\n" not in message


def test_a_full_disk_on_the_cache_names_the_path():
    cache = ResponseCache("/dev/full")
    with pytest.raises(CacheError, match="/dev/full: "):
        cache.put_many({"a": {"text": "x"}})


def _unshare_available() -> bool:
    if not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0


needs_unshare = pytest.mark.skipif(
    not _unshare_available(), reason="needs unprivileged user+mount namespaces (unshare -rm)"
)


def _in_namespace(script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run a shell script as root of a private user+mount namespace (mounts end with it)."""
    sh = tmp_path / "run.sh"
    sh.write_text(script)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{root / 'tests'}"}
    return subprocess.run(
        ["unshare", "-rm", "sh", str(sh)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root,
        env=env,
    )


@needs_unshare
def test_a_finished_store_on_a_read_only_filesystem_is_reused(tmp_path):
    store = tmp_path / "store"
    build(Store(store), [])
    ResponseCache(store / "cache.sqlite").put_many({"a": {"text": "x"}})

    def files() -> list[Path]:
        # Less SQLite's -wal/-shm files, which exist while this process's connection is open.
        return sorted(
            p.relative_to(store) for p in store.rglob("*") if not p.name.endswith(("-wal", "-shm"))
        )

    before = files()
    probe = textwrap.dedent(f"""
        from pathlib import Path
        from xlexp.store import Store
        from xlexp.llm.base import ResponseCache
        import sys
        sys.path.insert(0, "tests")
        from test_store_heal import build
        calls = []
        art, built = build(Store("{store}"), calls)
        assert not built and not calls and len(art.rows()) == 13
        cache = ResponseCache(Path("{store}") / "cache.sqlite")  # opened only when asked
        print("REUSED")
    """)
    (tmp_path / "probe.py").write_text(probe)
    done = _in_namespace(f"mount --bind {store} {store} && mount -o remount,bind,ro {store} && "
                         f"{sys.executable} {tmp_path / 'probe.py'}", tmp_path)
    assert "REUSED" in done.stdout, done.stderr
    assert files() == before


@needs_unshare
def test_a_damaged_artifact_on_a_read_only_store_stops_naming_the_file(tmp_path):
    store = tmp_path / "store"
    art, _ = build(Store(store), [])
    cut_at_line(art.path / "rows.jsonl")
    probe = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, "tests")
        from xlexp.store import Store, StoreError
        from test_store_heal import build
        try:
            build(Store("{store}"), [])
        except StoreError as e:
            print("ERROR", e)
    """)
    (tmp_path / "probe.py").write_text(probe)
    done = _in_namespace(f"mount --bind {store} {store} && mount -o remount,bind,ro {store} && "
                         f"{sys.executable} {tmp_path / 'probe.py'}", tmp_path)
    line = [x for x in done.stdout.splitlines() if x.startswith("ERROR")]
    assert line and str(art.path) in line[0] and "rows.jsonl" in line[0], (done.stdout, done.stderr)


@needs_unshare
def test_a_full_disk_names_the_path_and_a_rerun_after_freeing_space_completes(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    probe = textwrap.dedent(f"""
        import subprocess
        from xlexp.store import Store, StoreError, write_jsonl

        def produce(work, parts):
            rows = parts.map_batches(
                "b", list(range(40)), 4, lambda b: [{{"x": x, "pad": "z" * 4000}} for x in b]
            )
            write_jsonl(work / "rows.jsonl", rows)
            return {{"rows": len(rows)}}

        try:
            Store("{store}").build("s", "k", produce)
        except StoreError as e:
            print("ERROR", e)
        subprocess.run(["mount", "-o", "remount,size=8m", "{store}"], check=True)
        art, built = Store("{store}").build("s", "k", produce)
        print("DONE", built, len(art.rows()))
    """)
    (tmp_path / "probe.py").write_text(probe)
    done = _in_namespace(
        f"mount -t tmpfs -o size=96k tmpfs {store} && {sys.executable} {tmp_path / 'probe.py'}",
        tmp_path,
    )
    errors = [x for x in done.stdout.splitlines() if x.startswith("ERROR")]
    assert errors and str(store) in errors[0] and "no space left" in errors[0], (
        done.stdout,
        done.stderr,
    )
    assert "DONE True 40" in done.stdout, (done.stdout, done.stderr)


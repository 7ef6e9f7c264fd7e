"""Artifact keys are stable across versions of xlexp: a key is the digest of a fixed, canonical
record (stage, config slice, sorted input keys, format version), so a store built yesterday is
reused today. A changed record format (a renamed field, other JSON separators, escaped
non-ASCII) would silently rebuild every artifact of every store; these pin it."""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter

import pytest
from omegaconf import OmegaConf

from xlexp import store as store_module
from xlexp.store import Artifact, Store, canonical, digest, write_jsonl


def test_a_key_is_the_digest_of_its_canonical_record(tmp_path):
    store = Store(tmp_path)
    key = store.key("select", {"keep": 0.8, "name": "Übersetzung"}, ["b", "a"], version=2)
    assert key == "db4ebdc8e3c1699e"
    # what `python -m xlexp.store explain` compares: the record, inputs sorted
    assert store._made_of[key] == {
        "stage": "select",
        "config": {"keep": 0.8, "name": "Übersetzung"},
        "inputs": ["a", "b"],
        "version": 2,
    }
    assert key == digest(store._made_of[key])
    assert store.key("select", {"keep": 0.8, "name": "Übersetzung"}, ["a", "b"], 2) == key
    assert store.key("select", {"keep": 0.8, "name": "Übersetzung"}, ["a", "b"]) != key


def test_canonical_json_is_compact_sorted_and_unescaped():
    assert canonical({"z": "é", "a": [1, 2]}) == '{"a":[1,2],"z":"é"}'
    assert digest({"a": [1, 2], "z": "é"}) == "69ed5fc8c2388fea"
    assert len(digest("x")) == 16 and len(digest("x", n=24)) == 24


def test_config_nodes_and_other_objects_hash_as_their_plain_values():
    class Named:
        def __str__(self) -> str:
            return "obj!"

    nested = {"o": Named(), "n": OmegaConf.create({"x": [1]})}
    assert canonical(nested) == '{"n":{"x":[1]},"o":"obj!"}'
    assert canonical(OmegaConf.create({"b": 1, "a": {"c": 2}})) == '{"a":{"c":2},"b":1}'
    assert canonical(OmegaConf.create([3, {"k": "v"}])) == '[3,{"k":"v"}]'


# ---------------------------------------------------------------- files, folders, DONE

def test_json_files_are_indented_utf8_and_lines_are_counted(tmp_path):
    from pathlib import Path

    from xlexp.store import read_jsonl, write_json, write_jsonl

    write_json(tmp_path / "a.json", {"é": Path("x/y"), "n": [1]})
    assert (tmp_path / "a.json").read_text() == '{\n  "é": "x/y",\n  "n": [\n    1\n  ]\n}'
    rows = [{"t": "Größe"}, {"t": "日本"}, {}]
    assert write_jsonl(tmp_path / "r.jsonl", rows) == 3
    assert write_jsonl(tmp_path / "e.jsonl", []) == 0
    assert (tmp_path / "r.jsonl").read_text() == '{"t": "Größe"}\n{"t": "日本"}\n{}\n'
    assert read_jsonl(tmp_path / "r.jsonl") == rows
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "e.jsonl", "r.jsonl"]


def test_a_store_and_its_parts_make_their_folders_and_a_read_only_one_makes_none(tmp_path):
    from xlexp.store import Parts

    Store(tmp_path / "a" / "b")
    Parts(tmp_path / "p" / "q")
    assert (tmp_path / "a" / "b").is_dir() and (tmp_path / "p" / "q").is_dir()
    Store(tmp_path / "ro" / "x", read_only=True)
    assert not (tmp_path / "ro").exists()


def _rows_produce(rows, seen=None, seconds=0.0):
    def produce(work, parts):
        time.sleep(seconds)
        if seen is not None:
            seen.append(sorted(p.name for p in work.iterdir()))
            seen.append(json.loads((work / ".made_of.tmp").read_text()))
        (work / ".old.rows.jsonl.123.tmp").write_text("a killed attempt's temp file")
        write_jsonl(work / "rows.jsonl", rows)
        return {"in": len(rows), "out": len(rows)}

    return produce


def test_done_records_what_was_built_from_what_and_when(tmp_path):
    store = Store(tmp_path)
    source_key = store.key("seed", {"n": 1})
    source, _ = store.build("seed", source_key, _rows_produce([{"x": 1}]))
    key = store.key("select", {"keep": 0.8}, [source_key, "not-in-this-store"])
    seen: list = []
    before = time.time()
    produce = _rows_produce([{"x": 2}], seen, seconds=0.05)
    art, built = store.build("select", key, produce, info={"extra": 7})
    took = time.time() - before
    assert built and (art.stage, art.key, art.path) == ("select", key, tmp_path / "select" / key)
    # while it was produced, the record of what makes it sat beside the parts
    assert seen == [[".made_of.tmp", "parts"], store._made_of[key]]
    assert sorted(p.name for p in art.path.iterdir()) == ["DONE", "rows.jsonl"]
    done = json.loads((art.path / "DONE").read_text())
    assert set(done) == {
        "stage", "key", "counts", "seconds", "finished_at", "extra", "files", "made_of",
        "inputs_content",
    }
    assert (done["stage"], done["key"], done["extra"]) == ("select", key, 7)
    assert done["counts"] == {"in": 1, "out": 1}
    assert 0.05 <= done["seconds"] <= took and done["seconds"] == round(done["seconds"], 3)
    finished = time.mktime(time.strptime(done["finished_at"], "%Y-%m-%dT%H:%M:%S"))
    assert before - 2 <= finished <= time.time() + 1
    assert done["made_of"] == {
        "stage": "select", "config": {"keep": 0.8}, "inputs": sorted([source_key,
                                                                      "not-in-this-store"]),
        "version": 1,
    }
    # the input this store holds is recorded by content; the one it does not hold is left out
    assert done["inputs_content"] == {source_key: store.content_digest(source_key)}
    assert store.content_digest(source_key) == digest(source.meta["files"])
    assert store.content_digest("no-such-key") is None
    again, built_again = store.build("select", key, _rows_produce([{"x": 3}]))
    assert not built_again and again.path == art.path and again.rows() == [{"x": 2}]
    assert (again.stage, again.key) == ("select", key)
    # what the cost plan sees: a finished artifact is there, a read-only store has it
    found, built_now = Store(tmp_path, read_only=True).build("select", key, produce)
    assert not built_now and found.rows() == [{"x": 2}]


def test_counts_that_lose_rows_store_nothing(tmp_path):
    from xlexp.errors import StoreError

    def loses(work, parts):
        write_jsonl(work / "rows.jsonl", [{"x": 1}])
        return {"in": 3, "out": 1, "rejects": 1}

    with pytest.raises(StoreError, match="nothing stored"):
        Store(tmp_path).build("s", "k", loses)
    assert not (tmp_path / "s" / "k").exists()


def test_an_artifact_from_before_file_records_has_no_content_digest(tmp_path):
    store = Store(tmp_path)
    store.build("seed", "k", _rows_produce([{"x": 1}]))
    done = tmp_path / "seed" / "k" / "DONE"
    record = json.loads(done.read_text())
    del record["files"]
    done.write_text(json.dumps(record))
    assert store.content_digest("k") is None


def test_a_read_only_store_names_the_missing_artifact_and_writes_nothing(tmp_path):
    from xlexp.store import MissingArtifact

    with pytest.raises(MissingArtifact) as e:
        Store(tmp_path / "ro", read_only=True).build("select", "abc", _rows_produce([]))
    assert (e.value.stage, e.value.key, e.value.name) == ("select", "abc", None)
    assert str(e.value) == "select abc: not in the store"
    assert MissingArtifact("s", "k", "rows").name == "rows"
    assert not (tmp_path / "ro").exists()
    assert Store(tmp_path).path("s", "k").parent.parent == tmp_path.resolve()
    assert Artifact("s", "k", tmp_path).file("rows.jsonl") == tmp_path / "rows.jsonl"


def test_a_never_finished_final_folder_is_moved_aside_with_a_timestamp_and_rebuilt(
    tmp_path, caplog
):
    import logging
    import os
    import re

    store = Store(tmp_path)
    for attempt in range(2):  # the second finds .damaged/<stage>/ already there
        (tmp_path / "s" / f"k{attempt}").mkdir(parents=True)
        (tmp_path / "s" / f"k{attempt}" / "half.jsonl").write_text("{")
        with caplog.at_level(logging.WARNING, logger="xlexp.store"):
            art, built = store.build("s", f"k{attempt}", _rows_produce([{"x": attempt}]))
        assert built and art.rows() == [{"x": attempt}]
    aside = sorted((tmp_path / ".damaged" / "s").iterdir())
    assert [p.name.split("-")[0] for p in aside] == ["k0", "k1"]
    for p in aside:
        assert re.fullmatch(rf"k\d-\d{{8}}T\d{{6}}-{os.getpid()}", p.name), p.name
        assert (p / "half.jsonl").read_text() == "{"
    assert "damaged artifact (no DONE)" in caplog.text


def test_an_artifact_whose_input_changed_is_set_aside_as_stale(tmp_path, caplog):
    import logging

    store = Store(tmp_path)
    seed_key = store.key("seed", {"n": 1})
    store.build("seed", seed_key, _rows_produce([{"x": 1}]))
    key = store.key("select", {}, [seed_key])
    store.build("select", key, _rows_produce([{"y": 1}]))
    assert store.changed_input(store.path("select", key)) is None
    # the input is rebuilt under its key with other bytes
    shutil.rmtree(store.path("seed", seed_key))
    store.build("seed", seed_key, _rows_produce([{"x": 2}]))
    why = store.changed_input(store.path("select", key))
    assert why == f"built from input {seed_key}, whose content has changed since"
    read_only = Store(tmp_path, read_only=True)
    assert read_only.get("select", key) is None and store.path("select", key).exists()
    with caplog.at_level(logging.WARNING, logger="xlexp.store"):
        assert store.get("select", key) is None
    (aside,) = (tmp_path / ".stale" / "select").iterdir()
    assert aside.name.startswith(f"{key}-") and (aside / "DONE").exists()
    assert f"stale artifact ({why})" in caplog.text
    rebuilt, built = store.build("select", key, _rows_produce([{"y": 2}]))
    assert built and store.get("select", key).key == key and rebuilt.rows() == [{"y": 2}]


def test_a_full_disk_while_building_names_the_partial_folder(tmp_path, monkeypatch):
    import errno

    from xlexp.errors import StoreError

    def full(work, parts):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(StoreError, match=r"\.partial-k: no space left on device"):
        Store(tmp_path).build("s", "k", full)

    real = store_module.write_json

    def done_fails(path, obj):
        if path.name == "DONE":
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        real(path, obj)

    monkeypatch.setattr(store_module, "write_json", done_fails)
    with pytest.raises(StoreError, match=r"\.partial-k2: no space left on device"):
        Store(tmp_path).build("s", "k2", _rows_produce([{"x": 1}]))


def test_builds_of_other_keys_and_other_stages_run_at_once(tmp_path):
    import threading

    store = Store(tmp_path)
    for names in ((("s", "k1"), ("s", "k2")), (("a", "k"), ("b", "k"))):
        # each build waits inside its lock for the other: one lock for both would time out
        both = threading.Barrier(2, timeout=10)

        def produce(work, parts, both=both):
            both.wait()
            return {}

        errors: list = []

        def build(stage, key, produce=produce, errors=errors):
            try:
                store.build(stage, key, produce)
            except Exception as e:  # noqa: BLE001 (reported below)
                errors.append(e)

        threads = [threading.Thread(target=build, args=n) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and all(store.get(*n) for n in names)


# ---------------------------------------------------------------- batches


def test_batches_are_named_by_their_first_item_and_workers_default_to_this_thread(tmp_path):
    import threading

    from xlexp.store import Parts

    parts = Parts(tmp_path)
    threads = []

    def fn(batch):
        threads.append(threading.current_thread())
        return [{"x": x} for x in batch]

    assert [r["x"] for r in parts.map_batches("b", range(7), 3, fn)] == list(range(7))
    assert threads == [threading.main_thread()] * 3  # an interrupt stops the batch at once
    assert sorted(p.name for p in tmp_path.glob("*.jsonl")) == [
        "b-00000000.jsonl", "b-00000003.jsonl", "b-00000006.jsonl"
    ]
    threads.clear()
    assert [r["x"] for r in parts.map_batches("b", range(7), 3, fn, workers=1)] == list(range(7))
    assert threads == []  # every batch found in parts


def test_parallel_batches_refill_each_free_worker_and_never_exceed_the_workers(tmp_path):
    import contextvars
    import threading

    from xlexp.store import Parts

    tag = contextvars.ContextVar("tag", default="none")
    tag.set("this build")
    third_started = threading.Event()
    lock = threading.Lock()
    in_flight, peak, seen_tags = [0], [0], []

    def fn(batch):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
            seen_tags.append(tag.get())
        try:
            if batch[0] == 0:  # the first batch is slow until a third one has started
                assert third_started.wait(10), "a freed worker was not refilled"
            elif batch[0] == 2:
                third_started.set()
            else:
                time.sleep(0.01)
            return [{"x": x} for x in batch]
        finally:
            with lock:
                in_flight[0] -= 1

    out = Parts(tmp_path).map_batches("b", list(range(12)), 1, fn, workers=2)
    assert [r["x"] for r in out] == list(range(12))
    assert peak[0] == 2
    assert seen_tags == ["this build"] * 12  # calls are charged to the build that made them


def _failure(role, stop=False):
    from xlexp.failures import BackendFailure, RoleFailures

    return BackendFailure([RoleFailures(role, "http://x", Counter({"HTTP 500": 1}))], stop=stop)


@pytest.mark.parametrize("workers", [1, 2])
def test_failed_batches_are_not_kept_and_their_failures_are_raised_together(tmp_path, workers):
    from xlexp.failures import BackendFailure
    from xlexp.store import Parts

    def fn(batch):
        if batch[0] in (2, 6):
            raise _failure(f"role{batch[0]}")
        return [{"x": x} for x in batch]

    parts = Parts(tmp_path)
    with pytest.raises(BackendFailure) as e:
        parts.map_batches("b", list(range(8)), 2, fn, workers=workers)
    assert sorted(f.role for f in e.value.failures) == ["role2", "role6"]
    assert sorted(p.name for p in tmp_path.glob("*.jsonl")) == [
        "b-00000000.jsonl", "b-00000004.jsonl"
    ]


def test_a_breaker_stops_the_batches_not_yet_started(tmp_path):
    from xlexp.failures import BackendFailure
    from xlexp.store import Parts

    asked = []

    def fn(batch):
        asked.append(batch[0])
        if batch[0] == 2:
            raise _failure("translator", stop=True)
        return [{"x": x} for x in batch]

    with pytest.raises(BackendFailure) as e:
        Parts(tmp_path).map_batches("b", list(range(10)), 2, fn)
    assert e.value.stop and asked == [0, 2]

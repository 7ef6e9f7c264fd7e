"""Content-addressed store: keys, atomic DONE, a lock per key, parts that survive a failure."""

import threading

import pytest
from omegaconf import OmegaConf

from xlexp.store import Store, write_jsonl


def test_keys_are_stable_and_depend_on_config_inputs_and_version(tmp_path):
    store = Store(tmp_path)
    key = store.key("s", {"a": 1, "b": [1, 2]}, ["x", "y"])
    assert key == store.key("s", OmegaConf.create({"b": [1, 2], "a": 1}), ["y", "x"])
    assert key != store.key("s", {"a": 2, "b": [1, 2]}, ["x", "y"])
    assert key != store.key("s", {"a": 1, "b": [1, 2]}, ["x"])
    assert key != store.key("s", {"a": 1, "b": [1, 2]}, ["x", "y"], version=2)


def test_concurrent_builders_produce_once(tmp_path):
    store = Store(tmp_path)
    calls = []

    def produce(work, parts):
        calls.append(1)
        write_jsonl(work / "rows.jsonl", [{"id": 1}])
        return {"out": 1}

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(store.build("s", "k", produce)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and sum(built for _, built in results) == 1
    art = store.get("s", "k")
    assert art.meta["counts"] == {"out": 1} and art.rows() == [{"id": 1}]


def test_failed_build_leaves_no_artifact_and_keeps_finished_parts(tmp_path):
    store = Store(tmp_path)
    seen = []

    def fn(batch):
        seen.append(list(batch))
        if batch[0] == 4:
            raise RuntimeError("killed")
        return [{"x": x} for x in batch]

    def produce(work, parts):
        rows = parts.map_batches("b", list(range(6)), 2, fn)
        return {"rows": len(rows)}

    with pytest.raises(RuntimeError):
        store.build("s", "k", produce)
    assert store.get("s", "k") is None and not (tmp_path / "s" / "k").exists()
    seen.clear()
    art, built = store.build(
        "s",
        "k",
        lambda w, p: {
            "rows": len(p.map_batches("b", list(range(6)), 2, lambda b: [{"x": x} for x in b]))
        },
    )
    assert built and art.meta["counts"] == {"rows": 6}
    assert not (art.path / "parts").exists()


def _open_caches(root: str, n: int, start, errors) -> None:
    from xlexp.llm.base import ResponseCache

    for i in range(n):
        start.wait()
        try:
            ResponseCache(f"{root}/{i}.sqlite").put_many({"k": {"text": "x"}})
        except Exception as err:  # noqa: BLE001 - the test counts them
            errors.put(repr(err))


def test_processes_opening_a_new_response_cache_at_once_all_succeed(tmp_path):
    # Setting WAL mode on a new file fails at once with "database is locked" when another
    # process is opening it; two `python -m xlexp` sharing a store hit this.
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    start, errors = ctx.Barrier(4), ctx.Queue()
    procs = [
        ctx.Process(target=_open_caches, args=(str(tmp_path), 20, start, errors)) for _ in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == [] and all(p.exitcode == 0 for p in procs)


def test_batches_in_parallel_keep_order_write_parts_and_read_items_lazily(tmp_path):
    from xlexp.store import Parts

    parts = Parts(tmp_path)
    parts.put("b-00000004", [{"x": "cached 4"}, {"x": "cached 5"}])  # a batch a killed run finished
    read: list[int] = []
    started = threading.Barrier(3, timeout=10)

    def items():
        for i in range(10):
            read.append(i)
            yield i

    def fn(batch):
        if batch[0] in (0, 2, 6):
            started.wait()  # the first three batches to run (4 is in parts) are out at once
        return [{"x": i} for i in batch]

    out = parts.map_batches("b", items(), 2, fn, workers=3)
    assert [r["x"] for r in out] == [0, 1, 2, 3, "cached 4", "cached 5", 6, 7, 8, 9]
    assert read == list(range(10))
    assert parts.get("b-00000008") == [{"x": 8}, {"x": 9}]


def test_a_failed_parallel_batch_fails_the_map_and_keeps_the_finished_parts(tmp_path):
    from xlexp.store import Parts

    parts = Parts(tmp_path)

    def fn(batch):
        if batch[0] == 4:
            raise RuntimeError("backend down")
        return [{"x": i} for i in batch]

    with pytest.raises(RuntimeError, match="backend down"):
        parts.map_batches("b", list(range(6)), 2, fn, workers=2)
    assert parts.get("b-00000000") == [{"x": 0}, {"x": 1}]

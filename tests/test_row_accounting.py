"""Every input row is accounted for: an artifact whose counts say `in` and `out` must account for
each input row as out, rejected, failed or filtered, or it is not stored and the run stops naming
the stage; a stage that keeps nothing of a non-empty input says so in its stage line and in
results.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fakeserver import FakeOpenAI
from test_chain import compose_cfg
from test_config import make
from test_stage_windows import Peaks, overrides

from xlexp import progress
from xlexp.__main__ import run
from xlexp.integrity import ROW_FATES
from xlexp.roles import Models, chat_stage
from xlexp.store import Store, StoreError, write_jsonl


def test_an_artifact_that_loses_rows_is_not_stored(tmp_path):
    def produce(work: Path, parts) -> dict:
        write_jsonl(work / "rows.jsonl", [{"id": 1}])
        return {"in": 3, "out": 1, "rejects": 1}

    store = Store(tmp_path)
    with pytest.raises(StoreError) as err:
        store.build("reverse", "k1", produce)
    assert str(err.value) == "reverse k1: 3 rows in but 1 out + 1 rejects: 1 lost; nothing stored"
    assert not (tmp_path / "reverse" / "k1").exists() and store.get("reverse", "k1") is None


@pytest.mark.parametrize(
    "counts",
    [
        {"in": 4, "out": 1, "rejects": 1, "failed": 1, "filtered": 1},
        {"in": 0, "out": 0},
        {"rows": 3},  # no `in`: a shape that does not count input rows
    ],
)
def test_counts_that_account_for_every_row_are_stored(tmp_path, counts):
    art, built = Store(tmp_path).build("s", "k", lambda work, parts: dict(counts))
    assert built and art.meta["counts"] == counts


def _teacher(base_url: str):
    return make(
        "teacher.backend=openai",
        "teacher.model=teacher",
        f"teacher.base_url={base_url}",
        "teacher.gguf_file=null",
        "teacher.max_retries=0",
    ).teacher


def _chat(store: Store, base_url: str, batch_size: int, parse) -> None:
    models = Models(store)
    try:
        chat_stage(
            store,
            "reverse",
            "k1",
            [{"id": i, "q": f"question {i}"} for i in range(6)],
            models.role("teacher", _teacher(base_url)),
            build=lambda batch: [[{"role": "user", "content": r["q"]}] for r in batch],
            parse=parse,
            batch_size=batch_size,
        )
    finally:
        models.close()


def _one_row_each(batch, outs):
    return [{"id": r["id"], "a": o.text} for r, o in zip(batch, outs, strict=True)]


def test_a_chat_stage_that_drops_rows_stops_naming_the_stage(tmp_path):
    """A batch size below one (refused in validation; here called directly) lost every row and
    stored an empty artifact that every later run reused; a parser that drops a row likewise."""
    with FakeOpenAI(lambda body: "An answer.") as srv:
        store = Store(tmp_path / "a")
        with pytest.raises(StoreError, match=r"^reverse k1: 6 rows in but 0 out \+ 0 rejects"):
            _chat(store, srv.base_url, 0, _one_row_each)
        assert store.get("reverse", "k1") is None

        def drops_first(batch, outs):
            return _one_row_each(batch, outs)[1:]

        store = Store(tmp_path / "b")
        with pytest.raises(StoreError, match=r"6 rows in but 3 out \+ 0 rejects: 3 lost"):
            _chat(store, srv.base_url, 2, drops_first)
        assert store.get("reverse", "k1") is None

        _chat(Store(tmp_path / "c"), srv.base_url, 2, _one_row_each)
        assert Store(tmp_path / "c").get("reverse", "k1").meta["counts"]["out"] == 6


def test_kept_nothing_is_a_warning_naming_where_the_rows_went():
    assert progress.reject_warnings(
        {"select": {"in": 16, "out": 0, "rejects": 4, "filtered": 12}, "qe": {"in": 0, "out": 0}}
    ) == ["select: kept 0 of 16 rows (4 rejects, 12 filtered)"]


class Mute(Peaks):
    """Capable translators and QE, a teacher that answers every passage with nothing."""

    def __call__(self, body: dict) -> object:
        if "Write the question" in body["messages"][-1]["content"]:
            return "   "
        return super().__call__(body)


def test_a_generation_run_accounts_for_every_row_and_warns_when_nothing_is_kept(
    tmp_path, caplog
):
    caplog.set_level("INFO", logger="xlexp")
    with FakeOpenAI(Peaks(delay=0.0)) as srv:
        good = run(compose_cfg(overrides(srv.base_url, tmp_path / "s1")), tmp_path / "a")
    for name, counts in good["stages"]["generate"].items():
        if isinstance(counts, dict) and "in" in counts:
            fates = sum(counts.get(k, 0) for k in ROW_FATES)
            assert counts["in"] == counts["out"] + fates > 0, (name, counts)
    select = good["stages"]["generate"]["select"]
    assert select["filtered"] > 0 and select["out"] == select["rows"]  # the QE bottom share
    rejected = f" rejects {select['rejects']}" if select["rejects"] else ""
    said = f"select {select['in']}->{select['out']}{rejected} filtered {select['filtered']} |"
    assert said in caplog.text  # the stage line says where every row went
    assert not good["warnings"]

    with FakeOpenAI(Mute(delay=0.0)) as srv:
        args = overrides(srv.base_url, tmp_path / "s2") + ["stages=[generate,report]"]
        empty = run(compose_cfg(args), tmp_path / "b")
    assert empty["stages"]["generate"]["select"]["rows"] == 0
    assert empty["warnings"] == ["generate: reverse: kept 0 of 16 rows (16 rejects)"]
    results = (tmp_path / "b" / "results.md").read_text()
    assert "**WARNING** generate: reverse: kept 0 of 16 rows (16 rejects)" in results

"""Reuse follows content, not only keys: an input artifact rebuilt under the same key with other
bytes makes everything built from it stale (set aside under `.stale/` and built again), while a
rebuild with the same bytes leaves it reused. End to end: the generate chain, its translations
damaged and the response cache deleted, rerun against translators that now answer differently,
rebuilds translate, qe and select, and the dataset holds the new translations.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakeserver import FakeOpenAI
from test_chain import compose_cfg
from test_stage_windows import Peaks, overrides

from xlexp.__main__ import run
from xlexp.store import Store, StoreError, write_jsonl


def chain(store: Store, upstream_rows: list[dict], calls: list[str]):
    """Two artifacts, the second keyed by the first's key (as every stage shell does)."""
    up_key = store.key("up", {"n": 1})

    def make_up(work: Path, parts) -> dict:
        calls.append("up")
        write_jsonl(work / "rows.jsonl", upstream_rows)
        return {"out": len(upstream_rows)}

    up, _ = store.build("up", up_key, make_up)
    down_key = store.key("down", {"m": 2}, [up.key])

    def make_down(work: Path, parts) -> dict:
        calls.append("down")
        write_jsonl(work / "rows.jsonl", [{"n": len(up.rows()), "first": up.rows()[0]}])
        return {"out": 1}

    down, _ = store.build("down", down_key, make_down)
    return up, down


def damage(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_rebuilt_input_with_other_bytes_rebuilds_what_was_made_from_it(tmp_path, caplog):
    calls: list[str] = []
    up, down = chain(Store(tmp_path), [{"x": 1}, {"x": 2}], calls)
    assert calls == ["up", "down"]
    assert json.loads((down.path / "DONE").read_text())["inputs_content"] == {
        up.key: Store(tmp_path).content_digest(up.key)
    }

    damage(up.path / "rows.jsonl")  # the input is rebuilt under its key, with other answers
    up2, down2 = chain(Store(tmp_path), [{"x": 3}], calls)
    assert (up2.key, down2.key) == (up.key, down.key)  # keys come from config and input keys
    assert calls == ["up", "down", "up", "down"]
    assert down2.rows() == [{"n": 1, "first": {"x": 3}}]
    (aside,) = (tmp_path / ".stale" / "down").iterdir()
    assert aside.name.startswith(f"{down.key}-")
    assert f"built from input {up.key}, whose content has changed since" in caplog.text


def test_a_rebuilt_input_with_the_same_bytes_keeps_what_was_made_from_it(tmp_path):
    calls: list[str] = []
    rows = [{"x": 1}, {"x": 2}]
    up, _ = chain(Store(tmp_path), rows, calls)
    damage(up.path / "rows.jsonl")
    chain(Store(tmp_path), rows, calls)
    assert calls == ["up", "down", "up"]  # deterministic answers: the rest is reused
    assert not (tmp_path / ".stale").exists()


def test_the_read_only_view_of_the_plan_counts_a_stale_artifact_as_missing(tmp_path):
    calls: list[str] = []
    up, down = chain(Store(tmp_path), [{"x": 1}], calls)
    (up.path / "rows.jsonl").write_text('{"x": 9}\n')  # other bytes ...
    record = json.loads((up.path / "DONE").read_text())
    record["files"]["rows.jsonl"] = {
        "bytes": 9,
        "sha256": __import__("hashlib").sha256(b'{"x": 9}\n').hexdigest(),
    }
    (up.path / "DONE").write_text(json.dumps(record))  # ... that a rebuild recorded as done
    plan_view = Store(tmp_path, read_only=True)
    assert plan_view.get("up", up.key) is not None
    assert plan_view.get("down", down.key) is None
    assert (tmp_path / "down" / down.key / "DONE").exists()  # nothing moved by a reader


def test_an_artifact_built_before_inputs_were_recorded_is_reused(tmp_path):
    calls: list[str] = []
    _, down = chain(Store(tmp_path), [{"x": 1}], calls)
    record = json.loads((down.path / "DONE").read_text())
    del record["inputs_content"]
    (down.path / "DONE").write_text(json.dumps(record))
    chain(Store(tmp_path), [{"x": 1}], calls)
    assert calls == ["up", "down"]


def test_a_file_where_the_aside_folder_should_be_is_named(tmp_path):
    calls: list[str] = []
    up, _ = chain(Store(tmp_path), [{"x": 1}], calls)
    (tmp_path / ".damaged").write_text("not a folder")
    damage(up.path / "rows.jsonl")
    with pytest.raises(StoreError) as err:
        chain(Store(tmp_path), [{"x": 1}], calls)
    message = str(err.value)
    assert f"{tmp_path / '.damaged'} is a file where a folder should be" in message
    assert "cannot be changed" not in message and "\n" not in message


class Retranslating(Peaks):
    """Peaks' capable models, with the translators' answer set by the test."""

    def __init__(self, translation: str):
        super().__init__(delay=0.0)
        self.translation = translation

    def __call__(self, body: dict) -> object:
        if body["messages"][-1]["content"].startswith("Translate the following"):
            return self.translation
        return super().__call__(body)


def test_damaged_translations_answered_differently_rebuild_qe_and_select(tmp_path):
    store = tmp_path / "store"
    with FakeOpenAI(Retranslating("Übersetzt.")) as srv:
        gen = run(compose_cfg(overrides(srv.base_url, store)), tmp_path / "a")["stages"]["generate"]

    def done(name: str) -> str:
        return (store / name / gen[name]["key"] / "DONE").read_text()

    before = {name: done(name) for name in ("reverse", "refine", "translate", "qe", "select")}
    damage(store / "translate" / gen["translate"]["key"] / "rows.jsonl")
    (store / "cache.sqlite").unlink()

    with FakeOpenAI(Retranslating("Anders übersetzt.")) as srv:
        again = run(compose_cfg(overrides(srv.base_url, store)), tmp_path / "b")
        assert srv.calls > 0
    for name in before:  # keys come from config and input keys: the same
        assert again["stages"]["generate"][name]["key"] == gen[name]["key"]
    rebuilt = [name for name, record in before.items() if done(name) != record]
    assert rebuilt == ["translate", "qe", "select"]
    dataset = (store / "select" / gen["select"]["key"] / "dataset.jsonl").read_text()
    assert "Anders übersetzt." in dataset and "Übersetzt." not in dataset.replace("Anders ü", "")
    assert sorted(p.name for p in (store / ".stale").iterdir()) == ["qe", "select"]

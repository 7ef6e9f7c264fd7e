"""Progress bars on long loops (forced on/off by XLEXP_PROGRESS) and the one-line stage summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from xlexp import progress
from xlexp.store import Parts, Store


def test_batches_show_a_bar_that_counts_resumed_rows(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XLEXP_PROGRESS", "1")
    parts = Parts(tmp_path / "parts")
    parts.put("batch-00000000", [{"x": 0}, {"x": 1}])  # a batch a killed run finished
    seen: list[list[int]] = []

    def double(batch: list[int]) -> list[dict]:
        seen.append(batch)
        return [{"x": 2 * i} for i in batch]

    out = parts.map_batches("batch", list(range(6)), 2, double, desc="reverse")
    assert [r["x"] for r in out] == [0, 1, 4, 6, 8, 10] and seen == [[2, 3], [4, 5]]
    err = capsys.readouterr().err
    assert "reverse" in err and "6/6" in err and "row" in err


@pytest.mark.parametrize("setting", ["0", None])
def test_bars_are_off_when_asked_and_off_a_terminal(tmp_path, monkeypatch, capsys, setting):
    if setting is None:
        monkeypatch.delenv("XLEXP_PROGRESS", raising=False)  # capsys' stderr is no terminal
    else:
        monkeypatch.setenv("XLEXP_PROGRESS", setting)
    Parts(tmp_path).map_batches(
        "batch", list(range(6)), 2, lambda b: [{} for _ in b], desc="reverse"
    )
    assert "reverse" not in capsys.readouterr().err


def test_a_single_batch_shows_no_bar(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XLEXP_PROGRESS", "1")
    Parts(tmp_path).map_batches("batch", [1, 2], 2, lambda b: [{} for _ in b], desc="refine")
    assert "refine" not in capsys.readouterr().err


def _artifact(store: Store, stage: str, counts: dict):
    return store.build(stage, store.key(stage, counts), lambda work, parts: counts)[0]


def test_stage_line_counts_rejects_time_calls_and_cost(tmp_path):
    store = Store(tmp_path)
    arts = {
        "seed": _artifact(store, "seed", {"out": 8}),
        "reverse": _artifact(
            store,
            "reverse",
            {"in": 8, "out": 7, "rejects": 1, "reject_reasons": {"no question": 1}},
        ),
        "translate": _artifact(
            store,
            "translate",
            {"items": 7, "rejected_translations": {"a: empty": 2, "b: empty": 1}},
        ),
        "qe": _artifact(store, "qe", {"scored_pairs": 20, "failed": 0}),
        "respond": _artifact(
            store,
            "respond",
            {"langs": {"deu": {"rows": 3, "errors": 1}, "fra": {"rows": 3, "errors": 0}}},
        ),
        "judge": _artifact(store, "judge", {"langs": 2, "rows": 6, "malformed": 2}),
    }
    usage = {
        "calls": 20,
        "cache_hits": 3,
        "errors": 0,
        "prompt_tokens": 100,
        "completion_tokens": 0,
        "usd": 0.2625,
    }
    line = progress.stage_line("generate", arts, 12.34, usage)
    assert line == (
        "stage generate: seed out 8 | reverse 8->7 rejects 1 | translate items 7 rejected 3"
        " | qe scored_pairs 20 | respond rows 6 errors 1 | judge rows 6 malformed 2"
        " | 12.3 s, 20 calls (3 cached), $0.2625"
    )


def test_stage_line_without_counts(tmp_path):
    art = _artifact(Store(Path(tmp_path)), "sft", {"loss": 1.5})
    assert progress.stage_line("sft", {"sft": art}, 0.04, {}) == (
        "stage sft: sft | 0.0 s, 0 calls (0 cached), $0.0000"
    )


def test_a_stage_with_mostly_content_rejects_says_so_loudly(tmp_path):
    from xlexp.report import write_results

    store = Store(tmp_path / "store")
    arts = {
        "reverse": _artifact(store, "reverse", {"in": 16, "out": 7, "rejects": 9}),
        "refine": _artifact(store, "refine", {"in": 7, "out": 6, "rejects": 1}),
        "judge": _artifact(store, "judge", {"langs": 2, "rows": 6, "malformed": 4}),
    }
    line = progress.stage_line("generate", arts, 1.0, {})
    warnings = [w.strip() for w in line.splitlines()[1:]]
    assert warnings == [
        "WARNING reverse: 9 of 16 items are content rejects (56%), over the 50% bound",
        "WARNING judge: 4 of 6 items are content rejects (67%), over the 50% bound",
    ]
    assert progress.stage_line("generate", arts, 1.0, {}, reject_bound=0.7).count("WARNING") == 0
    summary = {
        "stages": {},
        "warnings": progress.reject_warnings({"reverse": {"in": 16, "rejects": 9}}),
    }
    cfg = type("Cfg", (), {})()
    text = write_results(tmp_path / "run", summary, cfg)["markdown"].read_text()
    assert (
        "> **WARNING** reverse: 9 of 16 items are content rejects (56%), over the 50% bound" in text
    )

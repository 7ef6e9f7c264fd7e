"""Seed corpus: local Parquet/JSONL streamed with `datasets`, bounds, dedup, seeded order; the
gated hub source fails early and clearly without a token or without the hub."""

from __future__ import annotations

import json
from pathlib import Path

import huggingface_hub.constants
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

from xlexp.config import ConfigError
from xlexp.generate import seed
from xlexp.generate.config import SeedDataConfig, validate_seed
from xlexp.generate.stage import run_seed
from xlexp.store import Store


@pytest.fixture(autouse=True)
def short_parquet_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    """`datasets` sleeps 5 s whenever a Parquet stream is left before its end (it lets Arrow's
    reader threads finish: apache/arrow#45214); `take` leaves every stream early, so each test
    here paid 5 s a stream. The wait is kept, shorter: these files are a few KB."""
    import datasets.config

    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0.2)


def passages(n: int, start: int = 0) -> list[str]:
    return [
        f"Passage number {i} says that bees make honey from nectar."
        for i in range(start, start + n)
    ]


def corpus_rows() -> list[dict]:
    """40 good passages, 10 too short, 10 too long, 10 duplicates (case/space variants)."""
    good = passages(40)
    rows = [{"id": f"g{i:02d}", "text": t} for i, t in enumerate(good)]
    rows += [{"id": f"s{i}", "text": "Too short."} for i in range(10)]
    rows += [{"id": f"l{i}", "text": "Far too long. " * 20} for i in range(10)]
    rows += [{"id": f"d{i}", "text": "  " + good[i].upper() + "  "} for i in range(10)]
    return rows


def cfg_for(source: str, path: Path | str | None, **kw) -> SeedDataConfig:
    fields = {
        "source": source,
        "path": str(path) if path else None,
        "n": 12,
        "min_chars": 40,
        "max_chars": 120,
        "shuffle_buffer": 16,
    }
    return OmegaConf.structured(SeedDataConfig(**{**fields, **kw}))


def write_parquet(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.fixture
def parquet_corpus(tmp_path: Path) -> Path:
    rows = corpus_rows()
    write_parquet(tmp_path / "part-0.parquet", rows[::2])
    write_parquet(tmp_path / "part-1.parquet", rows[1::2])
    return tmp_path


def test_take_counts_bounds_and_dedup_on_known_rows():
    rows = [
        {"id": "a", "text": "x" * 50},
        {"id": "b", "text": "short"},
        {"id": "c", "text": "y" * 500},
        {"id": "d", "text": " " + "X" * 50 + " "},  # duplicate of a after normalisation
        {"id": "e", "text": "z" * 60},
        {"id": "f", "text": "w" * 70},
    ]
    kept, counts = seed.take(rows, cfg_for("demo", None, n=2))
    assert [r["id"] for r in kept] == ["a", "e"]
    assert counts == {
        "read": 5,
        "too_short": 1,
        "too_long": 1,
        "duplicate": 1,
        "out": 2,
    }  # stops once n pass
    kept, counts = seed.take(rows, cfg_for("demo", None, n=10, max_read=3))
    assert [r["id"] for r in kept] == ["a"] and counts["read"] == 3


def test_parquet_streams_until_n_pass_with_a_seeded_order(parquet_corpus: Path):
    cfg = cfg_for("parquet", parquet_corpus / "*.parquet")
    kept, counts = seed.take(seed.stream(cfg, seed=1), cfg)
    assert len(kept) == 12 == counts["out"]
    assert all(40 <= len(r["text"]) <= 120 for r in kept)
    assert len({" ".join(r["text"].lower().split()) for r in kept}) == 12
    assert counts["read"] == 12 + counts["too_short"] + counts["too_long"] + counts["duplicate"]
    assert counts["read"] < 70  # it stopped reading once 12 passed
    assert seed.take(seed.stream(cfg, seed=1), cfg) == (kept, counts)
    other, _ = seed.take(seed.stream(cfg, seed=2), cfg)
    assert {r["id"] for r in other} != {r["id"] for r in kept}
    # Both files of the glob are read: ids from either half show up over a few seeds.
    ids = {r["id"] for s in range(4) for r in seed.take(seed.stream(cfg, seed=s), cfg)[0]}
    assert {int(i[1:]) % 2 for i in ids if i.startswith("g")} == {0, 1}


def test_jsonl_through_datasets_and_ids_from_text(tmp_path: Path):
    path = tmp_path / "passages.jsonl"
    path.write_text("".join(json.dumps({"body": t}) + "\n" for t in passages(20)))
    cfg = cfg_for("jsonl", path, text_field="body", n=20)
    kept, counts = seed.take(seed.stream(cfg, seed=1), cfg)
    assert counts == {"read": 20, "too_short": 0, "too_long": 0, "duplicate": 0, "out": 20}
    assert sorted(r["text"] for r in kept) == sorted(passages(20))
    # No id column: the id is derived from the text, so it does not depend on the stream order.
    again, _ = seed.take(seed.stream(cfg, seed=7), cfg)
    assert {r["id"]: r["text"] for r in kept} == {r["id"]: r["text"] for r in again}
    assert all(r["id"].startswith("seed-") for r in kept)


def test_run_seed_records_counts_and_rereads_an_edited_file(tmp_path: Path):
    path = write_parquet(tmp_path / "seeds.parquet", corpus_rows())
    cfg = OmegaConf.create(
        {"seed_data": OmegaConf.to_container(cfg_for("parquet", path)), "seed": 1}
    )
    store = Store(tmp_path / "store")
    art = run_seed(cfg, store)
    assert art.meta["counts"]["out"] == 12 and len(art.rows()) == 12
    assert art.meta["counts"]["read"] >= 12
    assert run_seed(cfg, store).key == art.key
    write_parquet(path, corpus_rows()[:30])  # same path, new content: a new artifact
    assert run_seed(cfg, store).key != art.key


@pytest.fixture
def no_hf_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))


def test_gated_hub_dataset_without_token_names_the_key(no_hf_token: None):
    from test_config import make

    from xlexp.config import validate

    assert seed.hf_token() is None
    with pytest.raises(ConfigError) as err:
        validate(make("seed_data=culturax"), cuda=False)
    assert (
        err.value.key == "seed_data.name"
        and "HF_TOKEN" in str(err.value)
        and "uonlp/CulturaX" in str(err.value)
    )
    # Without generation in the stages the seed corpus is not needed.
    validate(make("seed_data=culturax", "stages=[evaluate]"), cuda=False)


def test_hub_unreachable_is_a_clear_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token_123")
    from test_config import make

    cfg = make("seed_data=culturax")
    validate_seed(cfg.seed_data)  # a token is there: validation passes
    assert cfg.seed_data.name == "uonlp/CulturaX" and cfg.seed_data.config == "en"
    with pytest.raises(
        RuntimeError, match=r"^seed_data\.name: cannot stream 'uonlp/CulturaX'.*HF_TOKEN"
    ):
        seed.stream(cfg.seed_data, seed=1)  # the tests run with HF_HUB_OFFLINE=1


@pytest.mark.parametrize(
    "fields,key",
    [
        ({"source": "parquet", "path": "/nonexistent/*.parquet"}, "seed_data.path"),
        ({"source": "s3"}, "seed_data.source"),
        ({"source": "hf", "name": None}, "seed_data.name"),
        ({"source": "demo", "min_chars": 500, "max_chars": 100}, "seed_data.min_chars"),
    ],
)
def test_bad_seed_config_names_the_key(fields, key):
    with pytest.raises(ConfigError) as err:
        validate_seed(OmegaConf.structured(SeedDataConfig(**fields)))
    assert err.value.key == key


def test_unreadable_local_files_name_the_key(tmp_path: Path):
    (tmp_path / "bad.parquet").write_bytes(b"not a parquet file" * 10)
    with pytest.raises(RuntimeError, match=r"^seed_data\.path: cannot read"):
        seed.stream(cfg_for("parquet", tmp_path / "bad.parquet"), seed=1)
    # Bytes that are not UTF-8 far into a JSONL file only show while streaming: the error
    # still names the key.
    good = "".join(json.dumps({"text": t}) + "\n" for t in passages(3))
    (tmp_path / "bad.jsonl").write_bytes(good.encode() + b'{"text": "\xff"}\n')
    cfg = cfg_for("jsonl", tmp_path / "bad.jsonl", n=10)
    with pytest.raises(RuntimeError, match=r"^seed_data\.path: "):
        seed.take(seed.stream(cfg, seed=1), cfg)


def test_malformed_jsonl_lines_are_counted_rejects_with_their_line_numbers(tmp_path: Path):
    texts = passages(4)
    lines = [
        json.dumps({"text": texts[0]}),
        "{not json",
        json.dumps({"text": texts[1]}),
        "[1, 2]",
        "",
        json.dumps({"text": texts[2]}),
        '"just a string"',
        json.dumps({"text": texts[3]}),
    ]
    path = tmp_path / "seeds.jsonl"
    path.write_text("\n".join(lines) + "\n")
    cfg = cfg_for("jsonl", path, n=10)
    kept, counts = seed.take(seed.stream(cfg, seed=1), cfg)
    assert sorted(r["text"] for r in kept) == sorted(texts)
    assert counts["malformed"] == 3 and counts["read"] == 7
    assert sorted(counts["malformed_lines"]) == [f"{path}:2", f"{path}:4", f"{path}:7"]


@pytest.mark.parametrize(
    "source, fields, key",
    [
        ("jsonl", {"path": "/data/seeds.jsonl"}, "seed_data.path"),
        ("parquet", {"path": "/data/*.parquet"}, "seed_data.path"),
        ("hf", {"name": "uonlp/CulturaX"}, "seed_data.name"),
        ("demo", {}, "seed_data"),
    ],
)
def test_a_source_of_which_no_row_passes_is_an_error_naming_it(source, fields, key):
    rows = [{"text": "Too short."}] * 3 + [{"text": "Far too long. " * 20}]
    with pytest.raises(ConfigError) as err:
        seed.take(rows, cfg_for(source, fields.pop("path", None), **fields))
    assert err.value.key == key
    assert str(err.value).endswith(
        "gave no passage: 4 rows read, 3 shorter than seed_data.min_chars=40 (a row without the "
        "seed_data.text_field 'text' is empty), 1 longer than seed_data.max_chars=120"
    ), str(err.value)
    with pytest.raises(ConfigError, match=r"0 rows read \(seed_data.max_read=0\)$"):
        seed.take(corpus_rows(), cfg_for(source, None, max_read=0))


def test_run_seed_on_a_file_of_short_or_malformed_lines_stores_nothing(tmp_path: Path):
    path = tmp_path / "seeds.jsonl"
    path.write_text(
        "".join(json.dumps({"text": f"short {i}"}) + "\n" for i in range(5)) + "{not json\n"
    )
    cfg = OmegaConf.create({"seed_data": OmegaConf.to_container(cfg_for("jsonl", path)), "seed": 1})
    with pytest.raises(ConfigError) as err:
        run_seed(cfg, Store(tmp_path / "store"))
    assert err.value.key == "seed_data.path"
    assert (
        f"{str(path)!r} gave no passage: 6 rows read, 5 shorter than seed_data.min_chars=40"
        in str(err.value)
    )
    assert f"1 not a JSON object (first: {path}:6)" in str(err.value)
    # No finished artifact (only the build's .partial- dir, holding no rows, only the record of
    # what it is made of that `xlexp.store status` reads): the next run reads it again.
    made = list((tmp_path / "store" / "seed").iterdir())
    assert [p.name.startswith(".partial-") for p in made] == [True], made
    assert [f.name for f in made[0].rglob("*") if f.is_file()] == [".made_of.tmp"]


def test_a_run_on_a_seed_file_of_short_lines_exits_in_one_line(tmp_path: Path):
    import os
    import subprocess
    import sys

    path = tmp_path / "seeds.jsonl"
    path.write_text("".join(json.dumps({"text": f"short {i}"}) + "\n" for i in range(5)))
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "xlexp",
            "stages=[generate]",
            "seed_data=jsonl",
            f"seed_data.path={path}",
            f"store_dir={tmp_path / 'store'}",
            f"hydra.run.dir={tmp_path / 'run'}",
            "preflight=false",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("xlexp: config error: ") and "Traceback" not in out.stderr, out.stderr
    assert last.startswith(
        f"xlexp: config error: seed_data.path: {str(path)!r} gave no passage: 5 rows read"
    ), last
    assert not list((tmp_path / "store").glob("*/*/DONE"))


def test_a_text_that_is_not_a_string_is_rejected_and_every_row_read_is_accounted(tmp_path):
    """A number or a list under seed_data.text_field is not a passage (it was made one by
    str()); the seed artifact's counts say where each row read went."""
    texts = passages(3)
    rows = [{"text": t} for t in texts] + [{"text": 1234567890123456789012345678901234567890}]
    rows += [{"text": ["a list", "of words"] * 10}]
    path = tmp_path / "seeds.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = OmegaConf.create({"seed_data": OmegaConf.to_container(cfg_for("jsonl", path)), "seed": 1})
    art = run_seed(cfg, Store(tmp_path / "store"))
    counts = art.meta["counts"]
    assert sorted(r["text"] for r in art.rows()) == sorted(texts)
    assert counts["not_text"] == 2 and counts["in"] == 5 == counts["out"] + counts["rejects"]

    path.write_text("".join(json.dumps(r) + "\n" for r in rows[3:]))
    with pytest.raises(ConfigError, match=r"2 rows read, 2 whose 'text' is not text$"):
        run_seed(cfg, Store(tmp_path / "store2"))

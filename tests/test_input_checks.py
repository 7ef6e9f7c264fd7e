"""Inputs checked before work starts: eval.path (UTF-8 JSON or JSONL, at least one prompt, each
with an instruction), eval.limit >= 1, local seed files (exist, not empty, UTF-8), a seed path
with glob characters that exists is read, a seed file replaced by other bytes with the same
size and mtime (`cp -p`) gets a new fingerprint, and a seed_data=parquet file that does not start
and end like a Parquet file is refused."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from omegaconf import OmegaConf

from xlexp.errors import ConfigError
from xlexp.evaluate.sources import check_eval_inputs, check_limit, check_prompts_file
from xlexp.generate import seed

GOOD = [{"instruction": "Say hi."}, {"instruction": "Count to three."}]


@pytest.mark.parametrize(
    "content, message",
    [
        (b'[{"instruction": "a"}, ', "is not valid JSON (line 1"),
        (b'{"instruction": "a"}\n{"instruction": \n', "line 2 is not JSON"),
        ('{"instruction": "caf\u00e9"}\n'.encode("latin-1"), "is not UTF-8 (byte 20)"),
        (b"", "holds no prompts"),
        (b"[]", "holds no prompts"),
        (b'{"instruction": "a"}\n{"prompt": "b"}\n', "line 2 has no 'instruction'"),
        (b'[{"instruction": "a"}, "just text"]', "item 2 has no 'instruction'"),
        (b'[{"instruction": 5}]', "item 1: 'instruction' must be text, not int"),
        (
            b'{"instruction": "a"}\n{"instruction": ["b"]}\n',
            "line 2: 'instruction' must be text, not list",
        ),
    ],
)
def test_a_bad_prompts_file_is_one_line_naming_eval_path(tmp_path, content, message):
    path = tmp_path / "prompts.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        check_eval_inputs(
            OmegaConf.create(
                {"path": str(path), "limit": None, "benchmark": "xl_alpacaeval", "prompts": "hub"}
            )
        )
    text = str(err.value)
    assert text.startswith("eval.path: ") and message in text and "\n" not in text, text


@pytest.mark.parametrize("path", ["", "  "])
def test_an_empty_eval_path_is_refused_not_read_as_the_default(path):
    ev = OmegaConf.create({"path": path, "limit": None, "benchmark": "xl_alpacaeval",
                           "prompts": "hub"})
    with pytest.raises(ConfigError, match=r"^eval.path: is empty"):
        check_eval_inputs(ev)


def test_good_prompts_files_pass(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(GOOD))
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(r) for r in GOOD) + "\n\n")
    assert (
        check_prompts_file(tmp_path / "a.json") == 2
        and check_prompts_file(tmp_path / "b.jsonl") == 2
    )


@pytest.mark.parametrize("limit", [0, -1, 2.5, True])
def test_eval_limit_below_one_is_refused(limit):
    with pytest.raises(ConfigError, match="eval.limit: must be null"):
        check_limit(limit)
    check_limit(None)
    check_limit(3)


def seed_cfg(path) -> object:
    return OmegaConf.create({"source": "jsonl", "path": str(path)})


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is empty"),
        (b"\n  \n", "is empty"),
        (b'{"text": "\xff\xfe"}\n', "is not UTF-8 (byte 10)"),
        (b'{"text": "caf\xc3', "is not UTF-8 (it ends mid-character)"),
    ],
)
def test_an_empty_or_non_utf8_seed_file_is_one_line_naming_seed_data_path(
    tmp_path, content, message
):
    path = tmp_path / "seeds.jsonl"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        seed.check_local(seed_cfg(path))
    assert str(err.value).startswith("seed_data.path: ") and message in str(err.value), str(
        err.value
    )


def test_a_missing_seed_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="seed_data.path: no file matches"):
        seed.check_local(seed_cfg(tmp_path / "nope.jsonl"))


def test_a_seed_path_with_glob_characters_that_exists_is_read(tmp_path):
    folder = tmp_path / "seeds v[1]"
    folder.mkdir()
    path = folder / "seeds.jsonl"
    path.write_text(
        json.dumps({"text": "A passage about rivers and the sea, long enough to keep."}) + "\n"
    )
    cfg = OmegaConf.create(
        {"source": "jsonl", "path": str(path), "shuffle_buffer": 10, "name": None}
    )
    assert seed.local_files(str(path)) == [str(path)]
    seed.check_local(cfg)
    rows = list(seed.stream(cfg, seed=1))
    assert [r["text"] for r in rows] == ["A passage about rivers and the sea, long enough to keep."]


def test_a_seed_file_replaced_with_same_size_and_mtime_gets_a_new_fingerprint(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(json.dumps({"text": "first passage"}) + "\n")
    b.write_text(json.dumps({"text": "other passage"}) + "\n")
    assert a.stat().st_size == b.stat().st_size
    os.utime(b, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns))
    cfg = seed_cfg(a)
    before = seed.fingerprint(cfg)
    shutil.copy2(b, a)  # cp -p: other bytes, same size and mtime
    assert a.stat().st_mtime_ns == b.stat().st_mtime_ns
    assert seed.fingerprint(cfg) != before


def parquet_cfg(path) -> object:
    return OmegaConf.create({"source": "parquet", "path": str(path)})


@pytest.mark.parametrize(
    "content",
    [
        b'{"text": "a JSONL file named .parquet"}\n',
        b"PAR1",  # the magic alone: too short to be a file
        b"PAR1 and then not the footer",
        b"no header but the footer PAR1",
    ],
)
def test_a_file_that_is_not_parquet_is_one_line_naming_seed_data_path(tmp_path, content):
    path = tmp_path / "seeds.parquet"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        seed.check_local(parquet_cfg(path))
    assert err.value.key == "seed_data.path"
    assert f"{path} is not a Parquet file" in str(err.value) and "\n" not in str(err.value)


def test_real_parquet_files_pass_and_a_cut_one_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([{"text": f"passage {i} " * 20} for i in range(50)])
    for name in ("part-0.parquet", "part-1.parquet"):
        pq.write_table(table, tmp_path / name)
    seed.check_local(parquet_cfg(tmp_path / "*.parquet"))
    whole = (tmp_path / "part-1.parquet").read_bytes()
    (tmp_path / "part-1.parquet").write_bytes(whole[: len(whole) // 2])  # a copy cut short
    with pytest.raises(ConfigError, match=r"part-1.parquet is not a Parquet file"):
        seed.check_local(parquet_cfg(tmp_path / "*.parquet"))

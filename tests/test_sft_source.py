"""External SFT data (sft.source=external; paper Table 9, X-Instruction 40K): local JSONL/Parquet
files written here and read through `datasets`, field mapping, language filter, seeded subset,
rejects counted, errors naming the key, the store artifact, and conf/exp/xinstruction.yaml."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from xlexp.config import Config, ConfigError, ExternalDataConfig, LLMConfig, register, validate
from xlexp.sft import source
from xlexp.sft.stage import run_external_data, sft_dataset
from xlexp.store import Store

CONF = str(Path(__file__).resolve().parents[1] / "conf")
register()


def compose_cfg(*overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("config", overrides=list(overrides))


def alpaca_rows(n: int) -> list[dict]:
    """Alpaca-style records in three languages; every 7th has an empty output (malformed)."""
    langs = ["fi", "hi", "tr"]
    return [
        {
            "uid": f"u{i:03d}",
            "language": langs[i % 3],
            "instruction": f"Explain thing {i}. Answer in {langs[i % 3]}.",
            "input": "Some context." if i % 4 == 0 else "",
            "output": "" if i % 7 == 6 else f"Answer {i} in {langs[i % 3]}.",
            "score": i / n,
        }
        for i in range(n)
    ]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def ext(**fields) -> ExternalDataConfig:
    return OmegaConf.structured(ExternalDataConfig(**fields))


# ---------------------------------------------------------------- pure core


def test_matching_and_draw_are_pure_and_seeded() -> None:
    assert source.matching(["fi", "de", None, "tr"], ["fi", "tr"]) == [0, 3]
    assert source.matching(["fi", "de"], None) == [0, 1]
    a = source.draw(list(range(50)), seed=1)
    assert sorted(a) == list(range(50)) and a != list(range(50))
    assert source.draw(list(range(50)), seed=1) == a and source.draw(list(range(50)), seed=2) != a


def test_to_messages_maps_fields_and_rejects_malformed() -> None:
    pairs = ext(instruction_field="q", response_field="a", input_field="ctx")
    assert source.to_messages({"q": " Why? ", "a": "Because.", "ctx": "Context"}, pairs) == [
        {"role": "user", "content": "Why?\n\nContext"},
        {"role": "assistant", "content": "Because."},
    ]
    assert source.to_messages({"q": "Why?", "a": "  "}, pairs) == "empty_response"
    assert source.to_messages({"q": None, "a": "x"}, pairs) == "empty_instruction"
    chat = ext(messages_field="conversations")
    sharegpt = {
        "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Moi"}]
    }
    assert source.to_messages(sharegpt, chat) == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Moi"},
    ]
    assert (
        source.to_messages({"conversations": [{"role": "user", "content": "Hi"}]}, chat)
        == "no_final_assistant_turn"
    )
    assert source.to_messages({"conversations": "text"}, chat) == "no_messages"
    assert (
        source.to_messages({"conversations": [{"role": "robot", "content": "x"}]}, chat)
        == "bad_turn"
    )


# ---------------------------------------------------------------- reading real files


def test_jsonl_with_lang_filter_and_seeded_subset(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", alpaca_rows(60))
    cfg = ext(
        dataset=str(path),
        lang_field="language",
        langs=["fi", "tr"],
        id_field="uid",
        input_field="input",
        n=20,
    )
    rows, rejects, stats = source.read(cfg, seed=1)
    assert len(rows) == 20 and {r["lang"] for r in rows} <= {"fi", "tr"}
    assert stats["matching_lang"] == 40 and stats["rows"] == 20
    assert stats["reject_reasons"] == {"empty_response": len(rejects)}  # met on the way, replaced
    assert all(r["messages"][-1]["content"] for r in rows)
    by_uid = {f"train:{r['uid']}": r for r in alpaca_rows(60)}
    for row in rows:  # every row is its source record, mapped
        src = by_uid[row["id"]]
        assert row["messages"][1]["content"] == src["output"]
        assert row["messages"][0]["content"].startswith(src["instruction"])
        assert ("Some context." in row["messages"][0]["content"]) == bool(src["input"])
    again, _, _ = source.read(cfg, seed=1)
    assert again == rows  # same seed, same rows
    other, _, _ = source.read(ext(**{**OmegaConf.to_container(cfg), "n": 20}), seed=2)
    assert [r["id"] for r in other] != [r["id"] for r in rows]
    everything, rejects_all, _ = source.read(
        ext(dataset=str(path), lang_field="language", langs=["fi", "tr"]), seed=1
    )
    assert len(everything) + len(rejects_all) == 40  # n=None: every matching row


def test_parquet_and_per_language_files(tmp_path: Path) -> None:
    """X-Instruction's layout: one file per language and no language column."""
    import pandas as pd

    folder = tmp_path / "xinst"
    folder.mkdir()
    rows = alpaca_rows(30)
    for code in ("fi", "hi", "tr"):
        pd.DataFrame([r for r in rows if r["language"] == code]).drop(
            columns="language"
        ).to_parquet(folder / f"{code}.parquet")
    cfg = ext(
        dataset=str(folder),
        data_files={"fin": "fi.parquet", "tur": "tr.parquet", "hin": "hi.parquet"},
        langs=["fin", "tur"],
        n=12,
    )
    out, rejects, stats = source.read(cfg, seed=1)
    assert len(out) == 12 and {r["lang"] for r in out} == {"fin", "tur"}
    assert stats["matching_lang"] == 20
    assert all(r["id"].split(":")[0] == r["lang"] for r in out)


def test_asking_for_more_rows_than_usable_names_n(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", alpaca_rows(21))
    with pytest.raises(ConfigError) as err:
        source.read(ext(dataset=str(path), lang_field="language", langs=["fi"], n=7), seed=1)
    assert err.value.key == "sft.external.n" and "only 6 usable" in str(err.value)


def test_missing_column_names_the_mapping_key(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", alpaca_rows(5))
    with pytest.raises(ConfigError) as err:
        source.read(ext(dataset=str(path), response_field="answer"), seed=1)
    assert err.value.key == "sft.external.response_field" and "'answer'" in str(err.value)


def test_hub_dataset_offline_names_the_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ConfigError) as err:
        source.read(ext(dataset="no-such-org/no-such-dataset-xlexp"), seed=1)
    assert err.value.key == "sft.external.dataset"
    assert "no-such-org/no-such-dataset-xlexp" in str(err.value) and "HF_HUB_OFFLINE" in str(
        err.value
    )


# ---------------------------------------------------------------- store artifact


def _cfg(tmp_path: Path, path: Path, **external):
    card = LLMConfig(name="t", model="m")
    cfg = OmegaConf.structured(Config(teacher=card, model=card, judge=card, reference=card))
    cfg.sft.source, cfg.sft.subset = "external", "random"
    cfg.sft.external = OmegaConf.merge(
        cfg.sft.external, {"dataset": str(path), "lang_field": "language", **external}
    )
    return cfg


def test_external_data_is_a_store_artifact_keyed_on_content(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", alpaca_rows(30))
    store = Store(tmp_path / "store")
    cfg = _cfg(tmp_path, path, n=10)
    arts: dict = {}
    art = sft_dataset(cfg, store, arts)
    assert arts["external_data"] is art and art.stage == "external_data"
    rows = art.rows("dataset.jsonl")
    assert len(rows) == 10 and art.meta["counts"]["rows"] == 10
    assert art.meta["counts"]["rejects"] == len(art.rows("rejects.jsonl"))
    assert run_external_data(cfg, store).key == art.key  # reused
    cfg.sft.external.n = 11
    assert run_external_data(cfg, store).key != art.key
    cfg.sft.external.n = 10
    write_jsonl(path, alpaca_rows(31))  # the file changed: a new artifact
    assert run_external_data(cfg, store).key != art.key


# ---------------------------------------------------------------- config


def test_xinstruction_experiment_composes_with_profile_tiny() -> None:
    cfg = compose_cfg("+exp=xinstruction", "profile=tiny")
    assert cfg.sft.source == "external" and cfg.sft.subset == "random"
    assert cfg.sft.external.dataset == "James-WYang/X-Instruction"
    assert dict(cfg.sft.external.data_files) == {
        "fin": "fi.json",
        "hin": "hi.json",
        "tur": "tr.json",
    }
    assert cfg.sft.external.n == 40000 and cfg.data_size == "40k"
    assert list(cfg.langs.codes) == ["fin", "hin", "tur"] and "generate" not in cfg.stages
    assert cfg.model.backend == "hf"  # tiny profile: the student runs on CPU
    validate(cfg, cuda=False)
    paper = compose_cfg("+exp=xinstruction")
    assert paper.model.model == "utter-project/EuroLLM-9B" and paper.sft.r == 8


@pytest.mark.parametrize(
    "overrides,key",
    [
        (["sft.source=somewhere"], "sft.source"),
        (["sft.source=external"], "sft.external.dataset"),
        (
            ["sft.source=external", "sft.external.dataset=/nonexistent/x.jsonl"],
            "sft.external.dataset",
        ),
        (["sft.source=external", "sft.external.dataset=org/name", "sft.subset=top"], "sft.subset"),
        (
            [
                "sft.source=external",
                "sft.external.dataset=org/name",
                "sft.subset=random",
                "sft.external.n=0",
            ],
            "sft.external.n",
        ),
        (
            [
                "sft.source=external",
                "sft.external.dataset=org/name",
                "sft.subset=random",
                "sft.external.langs=[fi]",
            ],
            "sft.external.lang_field",
        ),
        (["sft.num_processes=zero"], "sft.num_processes"),
    ],
)
def test_bad_sft_source_config_names_the_key(overrides: list[str], key: str) -> None:
    cfg = compose_cfg(*overrides)
    with pytest.raises(ConfigError) as err:
        validate(cfg, cuda=False)
    assert err.value.key == key, str(err.value)


@pytest.mark.slow
def test_run_with_an_external_source_skips_generation(tmp_path: Path, tiny_model_dir: Path) -> None:
    """`python -m xlexp stages=[sft] sft.source=external ...`: no teacher, no generate stage; the
    external artifact feeds SFT; a rerun reuses both."""
    from xlexp.__main__ import run

    path = write_jsonl(tmp_path / "x.jsonl", alpaca_rows(30))
    store = tmp_path / "store"
    args = [
        "stages=[sft]",
        f"store_dir={store}",
        f"model.model={tiny_model_dir}",
        "model.gguf_file=null",
        "sft.source=external",
        f"sft.external.dataset={path}",
        "sft.external.lang_field=language",
        "sft.external.langs=[fi,tr]",
        "sft.external.n=8",
        "sft.subset=random",
        "data_size=4",
        "sft.batch_size=2",
        "sft.max_seq_len=256",
    ]
    summary = run(compose_cfg(*args), tmp_path / "run")
    assert "generate" not in summary["stages"] and summary["stages"]["sft"]["adapter"]["rows"] == 4
    stages = {p.name for p in store.iterdir() if p.is_dir()}
    assert {"external_data", "sft"} <= stages and not stages & {
        "seed",
        "reverse",
        "refine",
        "translate",
        "qe",
        "select",
    }
    (external,) = [p for p in (store / "external_data").iterdir() if not p.name.startswith(".")]
    assert len((external / "dataset.jsonl").read_text().splitlines()) == 8
    adapter = (
        store
        / "sft"
        / summary["stages"]["sft"]["adapter"]["key"]
        / "adapter"
        / "adapter_model.safetensors"
    )
    stamp = adapter.stat().st_mtime_ns
    again = run(compose_cfg(*args), tmp_path / "run2")
    assert (
        again["stages"]["sft"]["adapter"]["key"] == summary["stages"]["sft"]["adapter"]["key"]
        and adapter.stat().st_mtime_ns == stamp
    )
    with pytest.raises(ConfigError) as err:  # more than the external artifact holds
        run(
            compose_cfg(*[a for a in args if not a.startswith("data_size")], "data_size=9"),
            tmp_path / "run3",
        )
    assert err.value.key == "data_size"

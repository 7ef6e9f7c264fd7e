"""SFT on the authors' XL-Instruct release (sft.source=release): a local folder laid out like
`viyer98/xl-instruct` (README with its `configs`, one JSON file per language) read by `datasets`
by config name; splits mapped to ISO 639-3; languages chosen; `langs.assign` one/all."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from xlexp.config import ConfigError
from xlexp.langs import code_of
from xlexp.sft import release as release_reader

# The release card's `configs` block, shortened to four languages (same names and file layout).
README = """---
configs:
  - config_name: default
    data_files:
      - split: english
        path: en.json
      - split: german
        path: de.json
      - split: chinese
        path: zh.json
      - split: finnish
        path: fi.json
  - config_name: bestof3
    data_files:
      - split: german
        path: de_bestof3.json
      - split: chinese
        path: zh_bestof3.json
  - config_name: scored
    data_files:
      - split: english
        path: en_scored.json
---
# XL-Instruct (test fixture)
"""

N = 12


def records(lang: str, tag: str = "") -> list[dict]:
    """The same English instructions in every file; the response in the file's language."""
    return [
        {
            "instruction": f"Explain topic {i}.",
            "output": f"[{lang}{tag}] answer {i}." if i != 5 else "",
            "score": i / N,
        }
        for i in range(N)
    ]


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("xl-instruct")
    (root / "README.md").write_text(README)
    for file, lang, tag in [
        ("en", "en", ""),
        ("de", "de", ""),
        ("zh", "zh", ""),
        ("fi", "fi", ""),
        ("de_bestof3", "de", "*"),
        ("zh_bestof3", "zh", "*"),
        ("en_scored", "en", ""),
    ]:
        (root / f"{file}.json").write_text(json.dumps(records(lang, tag), ensure_ascii=False))
    return root


def rel(
    repo: Path, config: str = "default", template: str | None = "Respond in {language}."
) -> SimpleNamespace:
    return SimpleNamespace(repo=str(repo), config=config, revision=None, suffix_template=template)


def test_split_names_map_to_codes() -> None:
    names = ("german", "Chinese", "irish", "klingon", "deu", " DE ", None)
    assert [code_of(s) for s in names] == ["deu", "zho", "gle", None, "deu", "deu", None]


def test_all_keeps_every_language_of_an_instruction(release: Path) -> None:
    rows, rejects, stats = release_reader.read_release(rel(release), ["deu", "zho"], "all", seed=1)
    assert (
        len(rows) == 2 * (N - 1) and len(rejects) == 2
    )  # row 5 has an empty response in each file
    assert {r["reason"] for r in rejects} == {"empty_response"}
    assert stats["langs"] == {"deu": N - 1, "zho": N - 1}
    row = next(r for r in rows if r["id"] == "deu:3")
    assert row["messages"] == [
        {"role": "user", "content": "Explain topic 3. Respond in German."},
        {"role": "assistant", "content": "[de] answer 3."},
    ]
    assert row["qe_score"] == pytest.approx(3 / N)
    same = [r for r in rows if r["id"] in ("deu:3", "zho:3")]
    assert same[0]["seed_id"] == same[1]["seed_id"]  # one English instruction, two languages


def test_one_gives_each_instruction_one_language_balanced_and_seeded(release: Path) -> None:
    codes = ["deu", "zho", "fin"]
    rows, _, _ = release_reader.read_release(rel(release), codes, "one", seed=1)
    assert len(rows) == N - 1 and len({r["seed_id"] for r in rows}) == N - 1
    counts = Counter(r["lang"] for r in rows)
    assert set(counts) == set(codes) and max(counts.values()) - min(counts.values()) <= 1
    again, _, _ = release_reader.read_release(rel(release), codes, "one", seed=1)
    other, _, _ = release_reader.read_release(rel(release), codes, "one", seed=2)
    def lang_of(found: list[dict]) -> dict:
        return {r["seed_id"]: r["lang"] for r in found}

    assert again == rows and lang_of(other) != lang_of(rows)


def test_bestof3_config_is_read_by_name(release: Path) -> None:
    rows, _, _ = release_reader.read_release(
        rel(release, "bestof3", template=None), ["deu"], "all", seed=1
    )
    assert rows[0]["messages"][1]["content"].startswith("[de*]")
    assert (
        rows[0]["messages"][0]["content"] == "Explain topic 0."
    )  # no suffix template: as released


def test_a_language_the_config_lacks_names_the_key(release: Path) -> None:
    with pytest.raises(ConfigError) as err:
        release_reader.read_release(rel(release, "bestof3"), ["deu", "fin"], "all", seed=1)
    assert (
        err.value.key == "sft.release.langs"
        and "fin" in str(err.value)
        and "deu, zho" in str(err.value)
    )


def test_unknown_config_and_missing_repo_name_their_keys(release: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        release_reader.read_release(rel(release, "best"), ["deu"], "all", seed=1)
    assert err.value.key == "sft.release.config"
    with pytest.raises(ConfigError) as err:
        release_reader.read_release(rel(tmp_path / "nowhere"), ["deu"], "all", seed=1)
    assert err.value.key == "sft.release.repo"


def test_unknown_fields_name_the_key() -> None:
    with pytest.raises(ConfigError) as err:
        release_reader.release_rows({"deu": [{"q": "x", "a": "y"}]}, ["deu"], "all", 1, None)
    assert err.value.key == "sft.release.config" and "q, a" in str(err.value)


def test_sft_on_the_release_by_name_through_the_pipeline(
    release: Path, tmp_path: Path, tiny_model_dir: Path
) -> None:
    """`python -m xlexp stages=[sft] sft.source=release ...`: no generation; the release's rows
    (German and Chinese, one language per instruction as langs.assign=one) feed SFT."""
    from test_sft_source import compose_cfg

    from xlexp.__main__ import run
    from xlexp.config import validate

    store = tmp_path / "store"
    args = [
        "stages=[sft]", f"store_dir={store}", f"model.model={tiny_model_dir}",
        "model.gguf_file=null", "sft.source=release", f"sft.release.repo={release}",
        "sft.release.langs=[deu,zho]", "data_size=4", "sft.batch_size=2", "sft.max_seq_len=256",
    ]  # fmt: skip
    validate(compose_cfg(*args), cuda=False)
    summary = run(compose_cfg(*args), tmp_path / "run")
    assert "generate" not in summary["stages"] and summary["stages"]["sft"]["adapter"]["rows"] == 4
    (data,) = [p for p in (store / "release_data").iterdir() if not p.name.startswith(".")]
    rows = [json.loads(line) for line in (data / "dataset.jsonl").read_text().splitlines()]
    assert len(rows) == N - 1 and {r["lang"] for r in rows} == {
        "deu",
        "zho",
    }  # one language per instruction
    with pytest.raises(ConfigError) as err:
        validate(compose_cfg(*args, "sft.release.config=best"), cuda=False)
    assert err.value.key == "sft.release.config"

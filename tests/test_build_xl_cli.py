"""`python -m xlexp.build_xl` (main of xlexp/evaluate/build_xl_command.py) on an 805-row
AlpacaEval-shaped fixture, so Table 4's ids apply."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xlexp.evaluate.build_xl import (
    PAPER_EXCLUDED_IDS,
    PAPER_TEMPLATES,
    PLACEHOLDER,
    read_rewrites_file,
)
from xlexp.evaluate.build_xl_command import main

N = 805  # AlpacaEval's eval set size
LANG_NAMES = {"deu": "German", "por": "Portuguese"}


@pytest.fixture
def source(tmp_path: Path) -> Path:
    # Like alpaca_eval.json: a JSON list with no ids, so ids are 1-based positions.
    path = tmp_path / "alpaca_eval.json"
    rows = [{"instruction": f"Prompt {i}", "dataset": "x"} for i in range(1, N + 1)]
    rows[6]["instruction"] = "Write a poem in English about {x}."  # id 7: braces must survive
    for pid, text in read_rewrites_file(
        "paper"
    ).items():  # the real prompts the shipped list rewrites
        rows[pid - 1]["instruction"] = text.replace(PLACEHOLDER, "English")
    path.write_text(json.dumps(rows))
    return path


def _load(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))


def _template_of(instruction: str, lang_name: str) -> str:
    """Which paper template ends an instruction (fails the test if none does)."""
    tail = instruction.rsplit("\n\n", 1)[1]
    matches = [t for t in PAPER_TEMPLATES if t.replace("{language}", lang_name) == tail]
    assert len(matches) == 1, instruction
    return matches[0]


def test_builds_parallel_files_with_paper_exclusions(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "xl"
    assert (
        main(["--source", str(source), "--langs", "deu,por", "--out", str(out), "--seed", "3"]) == 0
    )

    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 2 and "deu" in printed[0] and "795" in printed[0] and "por" in printed[1]

    per_lang = {code: _load(out / f"{code}.json") for code in LANG_NAMES}
    templates: dict[str, dict[int, str]] = {}
    for code, rows in per_lang.items():
        # alpaca_eval rows: one per kept prompt, the expected keys, unique ids.
        assert len(rows) == N - len(PAPER_EXCLUDED_IDS) == 795
        assert all(set(r) == {"instruction", "dataset", "id", "lang"} for r in rows)
        assert all(
            isinstance(r["instruction"], str) and r["dataset"] == "x" and r["lang"] == code
            for r in rows
        )
        ids = [r["id"] for r in rows]
        assert len(set(ids)) == len(ids)
        assert set(ids) == set(range(1, N + 1)) - set(PAPER_EXCLUDED_IDS)
        by_id = {r["id"]: r for r in rows}
        assert by_id[1]["instruction"].startswith("Prompt 1\n\n")
        assert by_id[7]["instruction"].startswith(
            "Write a poem in English about {x}.\n\n"
        )  # not in the reviewed list
        assert (
            "Answer in English." not in by_id[249]["instruction"]
        )  # the reviewed rewrites, by default
        assert (
            by_id[249]["instruction"].split("\n\n")[-2].endswith(f"Answer in {LANG_NAMES[code]}.")
        )
        templates[code] = {r["id"]: _template_of(r["instruction"], LANG_NAMES[code]) for r in rows}
    assert templates["deu"] == templates["por"]  # same prompt, same template, every language
    assert len(set(templates["deu"].values())) == len(PAPER_TEMPLATES)  # all six get drawn

    manifest = _load(out / "manifest.json")
    assert manifest["source"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert manifest["source"]["path"] == str(source.resolve())
    assert manifest["langs"] == ["deu", "por"] and manifest["seed"] == 3
    assert (
        manifest["excluded_ids"] == list(PAPER_EXCLUDED_IDS)
        and manifest["exclusion_list"] == "paper"
    )
    assert manifest["prompts_remaining"] == 795 and manifest["warnings"] == []
    assert manifest["rewrites"] == "paper" and manifest["rewritten_ids"] == [139, 249, 274]
    assert manifest["templates"] == list(PAPER_TEMPLATES)
    assert manifest["counts"] == {"deu": 795, "por": 795}

    # Another seed draws other templates; the same seed reproduces the files byte for byte.
    again = tmp_path / "again"
    main(["--source", str(source), "--langs", "deu,por", "--out", str(again), "--seed", "3"])
    assert (again / "deu.json").read_bytes() == (out / "deu.json").read_bytes()
    other = tmp_path / "other"
    main(["--source", str(source), "--langs", "deu", "--out", str(other), "--seed", "4"])
    assert {
        r["id"]: _template_of(r["instruction"], "German") for r in _load(other / "deu.json")
    } != templates["deu"]


def test_options_exclude_none_limit_rewrites_templates(source: Path, tmp_path: Path) -> None:
    rewrites = tmp_path / "rewrites.json"
    rewrites.write_text(json.dumps({"7": "Write a poem in {language} about {x}."}))
    tpl = tmp_path / "templates.txt"
    tpl.write_text("# mine\nReply only in {language}.\n\n")
    out = tmp_path / "xl"
    argv = ["--source", str(source), "--langs", "por", "--out", str(out), "--exclude-ids", "none"]
    assert main([*argv, "--rewrites-file", str(rewrites), "--templates-file", str(tpl)]) == 0
    rows = _load(out / "por.json")
    assert len(rows) == N
    assert {r["id"]: r for r in rows}[7]["instruction"] == (
        "Write a poem in Portuguese about {x}.\n\nReply only in Portuguese."
    )
    manifest = _load(out / "manifest.json")
    assert manifest["excluded_ids"] == [] and manifest["templates"] == ["Reply only in {language}."]
    assert manifest["rewritten_ids"] == [7] and manifest["exclusion_list"] == "none"
    assert manifest["prompts_remaining"] == N

    # --rewrites-file none: prompt 249 keeps its request for English (and gets a template).
    assert main([*argv, "--rewrites-file", "none"]) == 0
    assert {r["id"]: r for r in _load(out / "por.json")}[249]["instruction"].endswith(
        "Answer in English.\n\n" + _tail(out)
    )

    assert main([*argv, "--exclude-ids", "1,3", "--limit", "4"]) == 0
    assert [r["id"] for r in _load(out / "por.json")] == [2, 4, 5, 6]


def _tail(out: Path) -> str:
    return {r["id"]: r for r in _load(out / "por.json")}[249]["instruction"].rsplit("\n\n", 1)[1]


def test_release_english_split_as_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The authors' english split (797 prompts, already filtered) gives their exact set with
    --exclude-ids none; the default Table 4 list on it is flagged in the manifest."""
    english = tmp_path / "english.json"
    english.write_text(
        json.dumps([{"instruction": f"Released prompt {i}", "dataset": "x"} for i in range(1, 798)])
    )
    out = tmp_path / "xl"
    base = [
        "--source",
        str(english),
        "--langs",
        "gle",
        "--out",
        str(out),
        "--rewrites-file",
        "none",
    ]
    assert main([*base, "--exclude-ids", "none"]) == 0
    manifest = _load(out / "manifest.json")
    assert (
        manifest["prompts_remaining"] == 797
        and manifest["exclusion_list"] == "none"
        and manifest["warnings"] == []
    )
    assert main(base) == 0
    manifest = _load(out / "manifest.json")
    assert manifest["prompts_remaining"] == 787 and "--exclude-ids none" in manifest["warnings"][0]
    assert "797 prompts" in capsys.readouterr().err
    # The shipped rewrites (the default) do not belong to this file: a clear error.
    with pytest.raises(SystemExit):
        main(["--source", str(english), "--langs", "gle", "--out", str(out)])
    assert "--rewrites-file none" in capsys.readouterr().err


def test_bad_arguments_exit_nonzero(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--source", str(source), "--out", str(tmp_path / "xl")]
    with pytest.raises(SystemExit) as exc:
        main([*base, "--langs", "deu,klingon"])
    assert exc.value.code != 0
    err = capsys.readouterr().err
    assert "--langs" in err and "klingon" in err and "deu (German)" in err and "por" in err
    assert not (tmp_path / "xl").exists()  # nothing half-written

    rewrites = tmp_path / "rewrites.json"
    rewrites.write_text(json.dumps({"7": "Write a poem in English."}))  # no placeholder
    with pytest.raises(SystemExit):
        main([*base, "--langs", "deu", "--rewrites-file", str(rewrites)])
    assert "{language}" in capsys.readouterr().err

    # The run's reader (eval.rewrites) reads the file; an id the source lacks is a typo here.
    rewrites.write_text(json.dumps({"9999": "Write a poem in {language}."}))
    with pytest.raises(SystemExit):
        main([*base, "--langs", "deu", "--rewrites-file", str(rewrites)])
    assert "ids not in the source: [9999]" in capsys.readouterr().err


def test_module_entry_point_subprocess(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "xl"
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    cmd = [sys.executable, "-m", "xlexp.build_xl", "--source", str(source), "--out", str(out)]
    ok = subprocess.run(
        [*cmd, "--langs", "deu,por"], capture_output=True, text=True, env=env, timeout=60
    )
    assert ok.returncode == 0, ok.stderr
    assert len(ok.stdout.strip().splitlines()) == 2
    assert _load(out / "manifest.json")["counts"] == {"deu": 795, "por": 795}

    bad = subprocess.run(
        [*cmd, "--langs", "xx"], capture_output=True, text=True, env=env, timeout=60
    )
    assert bad.returncode != 0 and "--langs" in bad.stderr and "xx" in bad.stderr

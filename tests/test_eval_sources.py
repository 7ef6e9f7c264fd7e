"""Benchmark sources: the reviewed {language} rewrites, the hub/release loaders (offline errors
name the config key), local files, and m-AlpacaEval's pure core. No /work/shared needed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from xlexp.config import ConfigError, register, validate
from xlexp.evaluate import mbench, sources
from xlexp.evaluate.build_xl import (
    PLACEHOLDER,
    build_xl,
    check_rewrites,
    load_prompts,
    read_rewrites_file,
)
from xlexp.langs import code_of
from xlexp.llm import Completion

ROOT = Path(__file__).resolve().parents[1]
register()

# AlpacaEval-shaped: the two explicit English requests of the real set (ids 249, 274, shortened
# bodies are enough since a rewrite must match its source), a prompt about English, and fillers.
PROMPT_249 = "Please provide a table of contents for the 50-listed book.\nAnswer in English."
PROMPT_274 = "Give me a brief scenario of a persona.\n\nPlease write in English language."
ABOUT_ENGLISH = "I need to learn English could you help me and make a exercise"


@pytest.fixture
def alpaca_file(tmp_path: Path) -> Path:
    rows = [
        {"id": i, "dataset": "helpful_base", "instruction": f"Question number {i}?"}
        for i in range(1, 6)
    ]
    rows += [
        {"id": 192, "dataset": "oasst", "instruction": ABOUT_ENGLISH},
        {"id": 249, "dataset": "koala", "instruction": PROMPT_249},
        {"id": 274, "dataset": "koala", "instruction": PROMPT_274},
    ]
    path = tmp_path / "alpaca_eval.json"
    path.write_text(json.dumps(rows))
    return path


def _rewrites_for_fixture() -> dict[int, str]:
    return {
        249: PROMPT_249.replace("Answer in English.", "Answer in {language}."),
        274: PROMPT_274.replace("English language", "{language} language"),
    }


def test_shipped_rewrites_are_the_reviewed_ids_with_placeholders() -> None:
    rewrites = read_rewrites_file("paper")
    assert sorted(rewrites) == [139, 249, 274]
    assert all(
        PLACEHOLDER in t and "English" not in t and "english" not in t for t in rewrites.values()
    )
    assert rewrites[249].endswith("Answer in {language}.")
    assert rewrites[274].endswith("Please write in {language} language.")
    assert read_rewrites_file(None) == {} and read_rewrites_file("none") == {}


def test_rewrites_applied_by_the_builder(alpaca_file: Path) -> None:
    prompts = load_prompts(alpaca_file)
    rewrites = check_rewrites(prompts, _rewrites_for_fixture())
    xl = build_xl(prompts, ["deu", "hin"], ["Respond in {language}."], rewrites=rewrites)
    by_id = {r["id"]: r for r in xl["deu"]}
    assert by_id[249]["instruction"].startswith(PROMPT_249.replace("English", "German"))
    assert by_id[274]["instruction"].startswith(
        "Give me a brief scenario of a persona.\n\nPlease write in German language."
    )
    assert (
        "English" not in by_id[249]["instruction"]
        and "Hindi" in {r["id"]: r for r in xl["hin"]}[249]["instruction"]
    )
    # A prompt about English keeps its wording; only the template is appended.
    assert by_id[192]["instruction"] == ABOUT_ENGLISH + "\n\nRespond in German."
    assert (
        by_id[249]["english"] == PROMPT_249
    )  # the original English prompt (for reason-then-translate)
    assert len(xl["deu"]) == 8


def test_rewrites_for_another_prompt_file_fail(alpaca_file: Path) -> None:
    prompts = load_prompts(alpaca_file)
    with pytest.raises(ValueError, match="prompt 249"):
        check_rewrites(prompts, {249: "Something else entirely in {language}."})
    # The shipped 139 is absent from this subset: skipped, not an error.
    assert sorted(check_rewrites(prompts, {139: "x {language}", **_rewrites_for_fixture()})) == [
        249,
        274,
    ]


def test_custom_rewrites_file_and_bad_file(tmp_path: Path) -> None:
    good = tmp_path / "rw.json"
    good.write_text(json.dumps({"7": "Reply in {language} please"}))
    assert read_rewrites_file(str(good)) == {7: "Reply in {language} please"}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rewrites": {"7": "no placeholder"}}))
    with pytest.raises(ValueError, match=r"bad\.json.*ids \[7\]"):
        read_rewrites_file(str(bad))


def _cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=["stages=[evaluate]", "eval.limit=null", *overrides])


def test_xl_prompts_apply_rewrites_unless_disabled(alpaca_file: Path) -> None:
    from xlexp.evaluate.prompt_sets import xl_rows as benchmark_rows

    cfg = _cfg("eval=xl_alpacaeval", f"eval.path={alpaca_file}", "eval.langs=[por]")
    validate(cfg, cuda=False)
    # The shipped list is for the real AlpacaEval file: it does not match this fixture's 249.
    with pytest.raises(ValueError, match="prompt 249"):
        benchmark_rows(cfg)
    rw = alpaca_file.parent / "rw.json"
    rw.write_text(json.dumps({str(k): v for k, v in _rewrites_for_fixture().items()}))
    rows = {
        r["id"]: r
        for r in benchmark_rows(
            _cfg(
                "eval=xl_alpacaeval",
                f"eval.path={alpaca_file}",
                "eval.langs=[por]",
                f"eval.rewrites={rw}",
            )
        )["por"]
    }
    assert "Answer in Portuguese." in rows[249]["instruction"]
    plain = {
        r["id"]: r
        for r in benchmark_rows(
            _cfg(
                "eval=xl_alpacaeval",
                f"eval.path={alpaca_file}",
                "eval.langs=[por]",
                "eval.rewrites=null",
            )
        )["por"]
    }
    assert "Answer in English." in plain[249]["instruction"]


def test_local_path_missing_names_eval_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        validate(_cfg("eval=xl_alpacaeval", f"eval.path={tmp_path / 'nope.json'}"), cuda=False)
    assert err.value.key == "eval.path"


def test_hub_download_offline_names_eval_hub_repo() -> None:
    cfg = _cfg(
        "eval=xl_alpacaeval", "profile=paper", "seed_data.source=demo"
    )  # no eval.path: the hub file
    assert sources.prompt_source(cfg.eval) == "hub"
    started = time.time()
    with pytest.raises(ConfigError) as err:
        validate(cfg, cuda=False)
    assert (
        err.value.key == "eval.hub_repo"
        and "tatsu-lab/alpaca_eval" in str(err.value)
        and "eval.path" in str(err.value)
    )
    assert time.time() - started < 30  # offline mode fails fast, no network wait


def test_release_offline_names_eval_release_repo() -> None:
    cfg = _cfg("eval=xl_alpacaeval_release")
    with pytest.raises(ConfigError) as err:
        sources.load_release(cfg.eval, ["deu"])
    assert err.value.key == "eval.release_repo" and "viyer98/XL-AlpacaEval" in str(err.value)


RELEASE_SPLITS = (
    "english",
    "german",
    "chinese",
    "portuguese",
    "maltese",
    "irish",
    "french",
    "hindi",
    "finnish",
    "turkish",
    "hungarian",
    "lithuanian",
)


def _release_fixture(root: Path, n: int = 4) -> Path:
    """A local copy laid out like viyer98/XL-AlpacaEval: one split per language, named by its
    English name, declared in the README's `configs` as a hub dataset repo declares them."""
    (root / "data").mkdir(parents=True)
    lines = ["---", "configs:", "- config_name: default", "  data_files:"]
    for split in RELEASE_SPLITS:
        lang = split.capitalize()
        rows = [
            {
                "instruction": f"Question {i}?"
                + ("" if split == "english" else f"\n\nAnswer in {lang}."),
                "output": f"ref {i}",
                "generator": "gpt-4o-mini",
                "dataset": "helpful_base",
            }
            for i in range(1, n + 1)
        ]
        (root / "data" / f"{split}.json").write_text(json.dumps(rows))
        lines += [f"  - split: {split}", f"    path: data/{split}.json"]
    (root / "README.md").write_text(
        "\n".join([*lines, "---", "", "# XL-AlpacaEval (test copy)", ""])
    )
    return root


def test_release_loader_maps_split_names_to_codes(tmp_path: Path) -> None:
    repo = _release_fixture(tmp_path / "XL-AlpacaEval")
    cfg = _cfg("eval=xl_alpacaeval_release", f"eval.release_repo={repo}")
    codes = ["deu", "gle", "zho", "hin", "mlt", "eng"]
    out = sources.load_release(cfg.eval, codes)
    assert list(out) == codes
    assert [r["id"] for r in out["gle"]] == [1, 2, 3, 4]
    assert (
        out["gle"][1]["instruction"] == "Question 2?\n\nAnswer in Irish."
        and out["gle"][1]["lang"] == "gle"
    )
    assert (
        out["eng"][0]["instruction"] == "Question 1?" and out["zho"][0]["dataset"] == "helpful_base"
    )
    codes_of_splits = {"eng", "deu", "zho", "por", "mlt", "gle", "fra", "hin", "fin", "tur", "hun",
                       "lit"}
    assert {code_of(s) for s in RELEASE_SPLITS} == codes_of_splits
    with pytest.raises(ConfigError) as err:
        sources.load_release(cfg.eval, ["deu", "spa"])  # no spanish split
    assert err.value.key == "eval.langs" and "german (deu)" in str(err.value)


def test_release_rows_single_split_with_language_column() -> None:
    records = [
        {"instruction": "Q1 Answer in German.", "language": "German", "id": 1},
        {"instruction": "Q1 Answer in Hindi.", "language": "hi", "id": 1},
        {"instruction": "Q2 Answer in German.", "language": "deu", "id": 2},
    ]
    out = sources.release_rows({"train": records}, ["deu", "hin"], "repo")
    assert [r["id"] for r in out["deu"]] == [1, 2] and out["hin"][0][
        "instruction"
    ] == "Q1 Answer in Hindi."
    with pytest.raises(ConfigError) as err:
        sources.release_rows({"train": records}, ["deu", "mlt"], "repo")
    assert err.value.key == "eval.langs"
    with pytest.raises(ConfigError) as err:
        sources.release_rows({"train": [{"instruction": "q"}]}, ["deu"], "repo")
    assert err.value.key == "eval.release_repo"


def test_m_alpacaeval_translates_the_xl_english_set(alpaca_file: Path) -> None:
    """m-AlpacaEval is the XL-AlpacaEval English set machine translated: Table 4 excluded."""
    from xlexp.evaluate.build_xl import PAPER_EXCLUDED_IDS

    cfg = _cfg("eval=m_alpacaeval", f"eval.path={alpaca_file}")
    assert list(cfg.eval.exclude_ids) == list(PAPER_EXCLUDED_IDS)
    rows = [{"id": i, "instruction": f"Prompt {i}", "dataset": "x"} for i in range(1, 806)]
    alpaca_file.write_text(json.dumps(rows))
    from xlexp.evaluate.build_xl import select_prompts

    english = select_prompts(
        sources.english_prompts(cfg.eval), cfg.eval.exclude_ids, cfg.eval.limit
    )
    assert len(english) == 795 and not {r["id"] for r in english} & set(PAPER_EXCLUDED_IDS)


def test_m_alpacaeval_core() -> None:
    prompts = [
        {"id": 3, "instruction": "Name a {placeholder} fruit.", "dataset": "d"},
        {"id": 4, "instruction": "Why?", "dataset": "d"},
    ]
    convs = mbench.build_prompts(prompts, "hun")
    assert (
        "into Hungarian" in convs[0][0]["content"]
        and "Name a {placeholder} fruit." in convs[0][0]["content"]
    )
    rows = mbench.parse(
        prompts, [Completion(text=" Nevezz meg egy gyümölcsöt. "), Completion(text="  ")], "hun"
    )
    assert rows[0] == {
        "id": 3,
        "lang": "hun",
        "english": prompts[0]["instruction"],
        "dataset": "d",
        "instruction": "Nevezz meg egy gyümölcsöt.",
    }
    assert rows[1]["reject"] == "empty translation" and "instruction" not in rows[1]
    assert [r["lang"] for r in mbench.english_rows(prompts)] == ["eng", "eng"]


def test_benchmark_cli_applies_the_shipped_rewrites(tmp_path: Path) -> None:
    from xlexp.evaluate.build_xl_command import main

    rewrites = read_rewrites_file("paper")
    rows = [{"instruction": f"Prompt {i}", "dataset": "x"} for i in range(1, 301)]
    for pid in (139, 249, 274):  # the real prompts, as the shipped list expects (positions = ids)
        rows[pid - 1]["instruction"] = rewrites[pid].replace(PLACEHOLDER, "English")
    source = tmp_path / "alpaca_eval.json"
    source.write_text(json.dumps(rows))
    out = tmp_path / "xl"
    assert (
        main(
            [
                "--source",
                str(source),
                "--langs",
                "mlt",
                "--out",
                str(out),
                "--rewrites-file",
                "paper",
            ]
        )
        == 0
    )
    by_id = {r["id"]: r for r in json.loads((out / "mlt.json").read_text())}
    assert (
        "Answer in Maltese." in by_id[249]["instruction"]
        and "Please write in Maltese language." in by_id[274]["instruction"]
    )
    assert json.loads((out / "manifest.json").read_text())["rewritten_ids"] == [139, 249, 274]
    rows[248]["instruction"] = (
        "Prompt 249"  # a file the list does not belong to: an error, not a silent skip
    )
    source.write_text(json.dumps(rows))
    with pytest.raises(SystemExit):
        main(
            [
                "--source",
                str(source),
                "--langs",
                "mlt",
                "--out",
                str(out),
                "--rewrites-file",
                "paper",
            ]
        )


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["eval.rtt=three_step"], "eval.rtt"),
        (
            ["eval.rubric=true", "eval.rubric_criteria=[precision,fluency]"],
            "eval.rubric_criteria[1]",
        ),
        (["eval.prompts=web"], "eval.prompts"),
        (["eval=m_alpacaeval", "eval.translator=null"], "eval.translator"),
        (["eval=m_alpacaeval", "eval.langs=[deu,xx]"], "eval.langs[1]"),
    ],
)
def test_eval_settings_fail_early_naming_the_key(overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate(_cfg(*overrides), cuda=False)
    assert err.value.key == key


def test_m_alpacaeval_translates_a_request_for_english_as_one_for_the_target(
    alpaca_file: Path,
) -> None:
    """A prompt that asks for an English answer (249, 274) goes to the translator asking for
    the target language (eval.rewrites, as XL-AlpacaEval's), so no translated prompt asks for
    English; the English column keeps the prompt as written."""
    import re

    from fakeserver import FakeOpenAI

    from xlexp.evaluate.prompt_sets import run_prompt_set
    from xlexp.roles import Models
    from xlexp.store import Store

    sent: list[str] = []

    def translator(body: dict) -> str:
        text = body["messages"][-1]["content"]
        src = text.split("[Instruction]\n", 1)[1].split("\n[End of Instruction]", 1)[0]
        sent.append(src)
        lang = re.search(r"into (\w+)\.", text).group(1)
        return f"[{lang}] {src}"

    rw = alpaca_file.parent / "rw.json"
    rw.write_text(json.dumps({str(k): v for k, v in _rewrites_for_fixture().items()}))
    store = Store(alpaca_file.parent / "store")
    with FakeOpenAI(translator) as srv:
        cfg = _cfg(
            "eval=m_alpacaeval",
            f"eval.path={alpaca_file}",
            "eval.langs=[deu]",
            "eval.exclude_ids=[]",
            f"eval.rewrites={rw}",
            "judge.backend=openai",  # eval.translator is ${judge}
            "judge.model=tr",
            f"judge.base_url={srv.base_url}",
            "judge.gguf_file=null",
        )
        validate(cfg, cuda=False)
        models = Models(store)
        try:
            prompt_set = run_prompt_set(cfg, store, models)
        finally:
            models.close()
    deu = {r["id"]: r["instruction"] for r in prompt_set.rows("deu.jsonl")}
    eng = {r["id"]: r["instruction"] for r in prompt_set.rows("eng.jsonl")}
    assert deu[249].endswith("Answer in German.") and deu[274].endswith("in German language.")
    assert not any("English" in sent_text for sent_text in sent if "learn" not in sent_text)
    assert deu[192] == f"[German] {ABOUT_ENGLISH}"  # a prompt about English is kept as written
    assert eng[249] == PROMPT_249 and eng[274] == PROMPT_274

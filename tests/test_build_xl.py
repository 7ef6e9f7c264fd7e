"""XL-AlpacaEval construction (paper section 3, appendix A) on a small AlpacaEval-shaped fixture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xlexp.evaluate.build_xl import (
    PAPER_EXCLUDED_IDS,
    PAPER_TEMPLATES,
    build_xl,
    demo_prompts,
    load_prompts,
    to_alpaca_eval,
)

N = 40  # a prompt set bigger than the template list, so templates must vary


@pytest.fixture
def alpaca_rows() -> list[dict]:
    rows = [
        {
            "instruction": f"Question number {i}?",
            "output": f"ref {i}",
            "generator": "gpt4",
            "dataset": "vicuna",
        }
        for i in range(1, N + 1)
    ]
    rows[4]["instruction"] = "Explain recursion in English, with code like def f(): return {}"
    return rows


@pytest.fixture
def alpaca_json(tmp_path: Path, alpaca_rows: list[dict]) -> Path:
    path = tmp_path / "alpaca_eval.json"
    path.write_text(json.dumps(alpaca_rows))
    return path


def test_load_json_list_gives_one_based_ids(alpaca_json: Path) -> None:
    prompts = load_prompts(alpaca_json)
    assert [p["id"] for p in prompts] == list(range(1, N + 1))
    assert prompts[0] == {
        "id": 1,
        "instruction": "Question number 1?",
        "dataset": "vicuna",
        "output": "ref 1",
        "generator": "gpt4",
    }


def test_load_jsonl_keeps_given_ids(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"id": 7, "instruction": "a", "dataset": "x"}\n\n'
        '{"id": 9, "instruction": "b", "dataset": "x"}\n'
    )
    assert [(p["id"], p["instruction"]) for p in load_prompts(path)] == [(7, "a"), (9, "b")]


def test_demo_prompts_shipped() -> None:
    prompts = demo_prompts()
    assert 25 <= len(prompts) <= 40
    assert [p["id"] for p in prompts] == list(range(1, len(prompts) + 1))
    assert {p["dataset"] for p in prompts} == {"demo"}
    assert all(0 < len(p["instruction"]) < 120 for p in prompts)


def test_build_excludes_substitutes_and_counts(alpaca_json: Path) -> None:
    prompts = load_prompts(alpaca_json)
    rewrites = {5: "Explain recursion in {language}, with code like def f(): return {}"}
    xl = build_xl(prompts, ["deu", "hin"], PAPER_TEMPLATES, exclude_ids=(3, 10), rewrites=rewrites)
    assert list(xl) == ["deu", "hin"]
    for lang, rows in xl.items():
        assert len(rows) == N - 2
        assert {3, 10}.isdisjoint(r["id"] for r in rows)
        assert all(r["lang"] == lang and r["dataset"] == "vicuna" for r in rows)
        assert all("{language}" not in r["instruction"] for r in rows)
    row5 = {r["id"]: r for r in xl["deu"]}[5]
    # The rewrite replaced the English request; braces in code survive; the template is appended.
    assert row5["instruction"].startswith(
        "Explain recursion in German, with code like def f(): return {}\n\n"
    )
    assert row5["instruction"].endswith(row5["template"].replace("{language}", "German"))
    assert {r["id"]: r for r in xl["hin"]}[1]["instruction"].endswith(" in Hindi.")
    assert {r["template"] for r in xl["deu"]} <= set(PAPER_TEMPLATES)


def test_templates_parallel_reproducible_and_seeded(alpaca_json: Path) -> None:
    prompts = load_prompts(alpaca_json)

    def templates(seed: int, lang: str = "deu", **kw) -> dict[int, str]:
        return {
            r["id"]: r["template"]
            for r in build_xl(prompts, ["deu", "fra"], PAPER_TEMPLATES, seed=seed, **kw)[lang]
        }

    first = templates(1)
    assert first == templates(1)  # reproducible
    assert first == templates(1, lang="fra")  # parallel across languages
    assert len(set(first.values())) > 1  # actually sampled
    assert first != templates(2)  # another seed, another draw
    # Exclusions and limits do not reshuffle the remaining prompts' templates.
    limited = templates(1, exclude_ids=(2,), limit=5)
    assert list(limited) == [1, 3, 4, 5, 6]
    assert all(first[i] == t for i, t in limited.items())


def test_paper_constants() -> None:
    # Table 4 lists 10 ids (805 - 10 = 795, while the paper's text says 797 prompts remain).
    assert (
        tuple(sorted(set(PAPER_EXCLUDED_IDS))) == PAPER_EXCLUDED_IDS
        and len(PAPER_EXCLUDED_IDS) == 10
    )
    # Table 5, six templates, with the word "language" removed (appendix A.2).
    assert len(PAPER_TEMPLATES) == 6
    assert all(
        t.count("{language}") == 1 and "language" not in t.replace("{language}", "")
        for t in PAPER_TEMPLATES
    )


def test_bad_template_and_unknown_language_fail_early() -> None:
    prompts = [{"id": 1, "instruction": "q", "dataset": "d"}]
    with pytest.raises(ValueError, match="placeholder"):
        build_xl(prompts, ["deu"], ["Answer in German."])
    with pytest.raises(KeyError):
        build_xl(prompts, ["xxx"], PAPER_TEMPLATES)


def test_to_alpaca_eval_rows() -> None:
    rows = build_xl(demo_prompts(), ["por"], ["Answer in {language}."], limit=2)["por"]
    out = to_alpaca_eval(rows, ["Olá", "Bom dia"], generator="smol")
    assert out[1] == {
        "instruction": rows[1]["instruction"], "output": "Bom dia", "generator": "smol",
        "dataset": "demo", "id": 2, "lang": "por",
    }
    with pytest.raises(ValueError):
        to_alpaca_eval(rows, ["only one"], generator="smol")

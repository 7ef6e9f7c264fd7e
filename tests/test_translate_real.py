"""Reassembly with a real translator: the tiny random Llama (hf backend) translates tricky markdown
through the translate stage, and the layout survives (paper 4.3).

The model writes gibberish, which is the point: whatever a translator returns, the markdown
prefixes, blank lines, code blocks and bare URLs around its sentences stay as they were.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from test_segment import TRICKY

from xlexp.config import Config
from xlexp.generate.segment import reassemble
from xlexp.generate.stage import run_translate
from xlexp.roles import Models
from xlexp.store import Store, write_jsonl

CAST_IRON = """# Caring for a cast-iron pan

Cast iron lasts for decades. Dr. Smith, a chef, e.g. uses one daily.

## Steps
1. Rinse it with hot water. Do not soak it.
2. Dry it well.
   - Use a towel.
10. Oil it lightly.

- **Never** put it in the dishwasher.
https://example.com/cast-iron

```python
def season(pan):
    return "Oil. Heat. Repeat."
```

> A seasoned pan is *non-stick*. It improves with use.
"""

# Written out here rather than taken from xlexp, so a regression there cannot hide.
MARKDOWN_PREFIX = re.compile(r"^[ \t]*(?:>[ \t]*)*(?:#{1,6}[ \t]+|[-*+][ \t]+|\d+[.)][ \t]+)?")


def layout(text: str) -> list[tuple[str, str]]:
    """Per line: code/fence/URL lines verbatim, blank lines as blank, other lines by their
    prefix."""
    out, in_code = [], False
    for line in text.split("\n"):
        if line.lstrip().startswith(("```", "~~~")):
            in_code = not in_code
            out.append(("fence", line))
        elif in_code:
            out.append(("code", line))
        elif not line.strip():
            out.append(("blank", line))
        elif re.fullmatch(r"\s*https?://\S+\s*", line):
            out.append(("url", line))
        else:
            out.append(("text", MARKDOWN_PREFIX.match(line).group(0)))
    return out


@pytest.fixture(scope="module")
def translated(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> list[dict]:
    """Two tricky responses, every language (assign=all), translated by the tiny Llama."""
    tmp = tmp_path_factory.mktemp("translate-real")
    card = {
        "name": "tiny",
        "backend": "hf",
        "model": str(tiny_model_dir),
        "batch_size": 32,
        "sampling": {"max_tokens": 6},
    }
    cfg = OmegaConf.merge(
        OmegaConf.structured(Config),
        {
            "teacher": card,
            "model": card,
            "judge": card,
            "reference": card,
            "translators": {"tiny": card},
            "k": 1,
            "langs": {"codes": ["deu", "fra"], "assign": "all"},
            "splitter": {"kind": "pysbd"},
        },
    )
    store = Store(tmp / "store")
    pairs = [
        {
            "id": "cast-iron",
            "seed_id": "cast-iron",
            "question": "How do I care for a cast-iron pan?",
            "response": CAST_IRON,
        },
        {
            "id": "mixed",
            "seed_id": "mixed",
            "question": "Show me some markdown.",
            "response": TRICKY["mixed"],
        },
    ]
    refined, _ = store.build(
        "refine", "handmade", lambda work, parts: {"out": write_jsonl(work / "rows.jsonl", pairs)}
    )
    seeds, _ = store.build(
        "seed",
        "handmade",
        lambda work, parts: {
            "out": write_jsonl(
                work / "rows.jsonl", [{"id": p["id"], "order": i} for i, p in enumerate(pairs)]
            )
        },
    )
    models = Models(store)
    try:
        art = run_translate(cfg, store, models, refined, seeds)
        calls = models.roles()["translator:tiny"].usage.calls
    finally:
        models.close()
    rows = art.rows()
    assert art.meta["counts"]["sentence_jobs"] == sum(
        len(r["sentences"]) for r in rows
    )  # one call per sentence and language
    assert calls == art.meta["counts"]["sentence_jobs"]
    return rows


def test_every_language_of_every_pair_is_translated(translated):
    assert sorted((r["seed_id"], r["lang"]) for r in translated) == [
        ("cast-iron", "deu"), ("cast-iron", "fra"), ("mixed", "deu"), ("mixed", "fra")]
    for row in translated:
        assert row["instruction"].endswith(
            {"deu": "Respond in German.", "fra": "Respond in French."}[row["lang"]]
        )


@pytest.mark.parametrize("index", range(4))
def test_layout_survives_the_tiny_llama(translated, index):
    row = translated[index]
    mt = [cands[0] for cands in row["candidates"]]
    assert all(t is not None for t in mt), row["candidates"]
    source = row["response"]
    out = reassemble(row["segments"], mt)
    assert out != source
    assert layout(out) == layout(
        source
    )  # same lines, prefixes, blank lines; code and URLs byte-identical
    if row["seed_id"] == "cast-iron":
        block = source[
            source.index("```python") : source.index("```\n", source.index("```python") + 3) + 4
        ]
        assert block in out  # the code block, untranslated, byte for byte
        assert "\n1. " in out and "\n10. " in out and "\n   - " in out and out.startswith("# ")
        assert "\n\n" in out and out.count("\n\n") == source.count("\n\n")
    # No source sentence survives untranslated outside code and URLs.
    for sentence in row["sentences"]:
        assert sentence not in out


def test_load_keeps_an_empty_cache_it_is_given(tmp_path, tiny_card):
    from xlexp.llm import ResponseCache, load

    mine = ResponseCache(tmp_path / "mine.sqlite")
    assert len(mine) == 0
    assert load(tiny_card(), tmp_path / "store", mine).cache is mine  # an empty cache is falsy

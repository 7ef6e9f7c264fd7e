"""Target-language assignment (one per pair, balanced; or all) and configurable suffix templates."""

from __future__ import annotations

from collections import Counter

import pytest
from test_config import make

from xlexp import langs
from xlexp.config import ConfigError, validate
from xlexp.generate import translate

TEMPLATES = [
    "Respond in {language}.",
    "Answer in {language}, please.",
    "Write your reply in {language}.",
]
PAIRS = [{"id": f"p{i:02d}", "question": f"Question {i}?", "response": "R."} for i in range(40)]


def suffix_of(item: dict) -> str:
    return item["instruction"].removeprefix(item["question"] + " ")


def test_one_language_per_pair_balanced_with_sampled_templates():
    codes = ["deu", "fra", "hun"]
    items = translate.assign_languages(PAIRS, codes, "one", TEMPLATES, seed=1)
    assert [i["id"].rsplit("-", 1)[0] for i in items] == [
        p["id"] for p in PAIRS
    ]  # one item per pair
    assert sorted(Counter(i["lang"] for i in items).values()) == [13, 13, 14]  # balanced
    used = Counter()
    for it in items:
        suffix = suffix_of(it)
        matches = [t for t in TEMPLATES if t.format(language=langs.name(it["lang"])) == suffix]
        assert len(matches) == 1, suffix  # a template, filled with this item's language
        used[matches[0]] += 1
    assert set(used) == set(TEMPLATES)
    assert items == translate.assign_languages(PAIRS, codes, "one", TEMPLATES, seed=1)  # seeded
    other = translate.assign_languages(PAIRS, codes, "one", TEMPLATES, seed=2)
    assert [suffix_of(i) for i in other] != [suffix_of(i) for i in items]
    # The template list does not move the language assignment.
    single = translate.assign_languages(PAIRS, codes, "one", TEMPLATES[:1], seed=1)
    assert [i["lang"] for i in single] == [i["lang"] for i in items]
    assert all(suffix_of(i) == f"Respond in {langs.name(i['lang'])}." for i in single)


def test_every_language_per_pair():
    codes = ["deu", "fra", "hun"]
    items = translate.assign_languages(PAIRS[:5], codes, "all", TEMPLATES, seed=1)
    assert len(items) == 15 and len({i["id"] for i in items}) == 15
    assert {(i["seed_id"], i["lang"]) for i in items} == {
        (p["id"], c) for p in PAIRS[:5] for c in codes
    }
    assert all(langs.name(i["lang"]) in suffix_of(i) for i in items)


def test_suffix_templates_compose_and_validate():
    cfg = make(
        "generate.suffix_templates=['Respond in {language}.','Please answer in {language}.']",
        "langs.assign=all",
    )
    validate(cfg, cuda=False)
    assert list(cfg.generate.suffix_templates) == [
        "Respond in {language}.",
        "Please answer in {language}.",
    ]


@pytest.mark.parametrize(
    "templates,key",
    [
        ("[]", "generate.suffix_templates"),
        ("['Respond in German.']", "generate.suffix_templates[0]"),
        ("['Respond in {language}.','Answer in {lang}.']", "generate.suffix_templates[1]"),
    ],
)
def test_bad_suffix_templates_name_the_key(templates, key):
    with pytest.raises(ConfigError) as err:
        validate(make(f"generate.suffix_templates={templates}"), cuda=False)
    assert err.value.key == key

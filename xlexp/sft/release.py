"""The authors' release as SFT data (sft.source=release): `viyer98/xl-instruct` on the hub,
configs `default` (one split per language, named by its English name: english, german, ...,
lithuanian), `bestof3` (the 8 core languages, best-of-3 translations) and `scored` (split `english`,
with scores). Splits map to ISO 639-3 codes through the language table; the row fields are found by
name (the card does not list them), so a field layout the reader does not know fails naming the
config key instead of training on the wrong text.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from xlexp.errors import ConfigError
from xlexp.langs import code_of
from xlexp.sft.source import stats, to_messages, to_row

RELEASE_REPO = "viyer98/xl-instruct"
RELEASE_CONFIGS = ("default", "bestof3", "scored")
_MESSAGE_FIELDS = ("messages", "conversations", "conversation")
_INSTRUCTION_FIELDS = ("instruction", "prompt", "query", "question")
_RESPONSE_FIELDS = ("response", "output", "answer", "completion", "translation")
_SCORE_FIELDS = ("qe_score", "score", "cometkiwi", "comet", "qe")
_ID_FIELDS = ("id", "uid", "idx")


def release_fields(columns: Sequence[str]) -> dict[str, str | None]:
    """The field mapping of a release table from its column names (first known name wins)."""

    def first(names: Sequence[str]) -> str | None:
        return next((c for c in names if c in columns), None)

    fields = {
        "messages_field": first(_MESSAGE_FIELDS),
        "id_field": first(_ID_FIELDS),
        "qe_field": first(_SCORE_FIELDS),
    }
    fields["instruction_field"] = first(_INSTRUCTION_FIELDS)
    fields["response_field"] = first(_RESPONSE_FIELDS)
    if fields["messages_field"] is None and (
        fields["instruction_field"] is None or fields["response_field"] is None
    ):
        raise ConfigError(
            "sft.release.config",
            "cannot find the instruction and response in the release's columns "
            f"({', '.join(columns)}); known names: "
            f"{', '.join(_MESSAGE_FIELDS + _INSTRUCTION_FIELDS + _RESPONSE_FIELDS)}",
        )
    return fields


def with_language(messages: list[dict], code: str, template: str | None) -> list[dict]:
    """The user turn names the target language (paper 4.1): `template` ("Respond in {language}.")
    is appended when the English instruction does not already name it, so a release row and a
    generated row ask the same thing. English rows and `template=None` are left as they are."""
    from xlexp.langs import name

    if template is None or code == "eng":
        return messages
    language = name(code)
    user = next(i for i in range(len(messages) - 1, -1, -1) if messages[i]["role"] == "user")
    if language.lower() in messages[user]["content"].lower():
        return messages
    out = [dict(m) for m in messages]
    out[user]["content"] = f"{out[user]['content']} {template.format(language=language)}"
    return out


def release_rows(
    tables: dict[str, list[dict]],
    codes: Sequence[str],
    assign: str,
    seed: int,
    template: str | None,
) -> tuple[list[dict], list[dict]]:
    """SFT rows from release tables {code: records} for the languages `codes`.

    `assign` reads as `langs.assign` does for generated data: `all` keeps every language's row of
    an instruction; `one` keeps one language per English instruction (records with the same
    instruction across the language files are one instruction), chosen seeded and balanced over
    `codes` like `generate.translate.assign_languages`. Returns (rows sorted by id, rejects)."""
    rows: list[dict] = []
    rejects: list[dict] = []
    by_instruction: dict[str, list[dict]] = {}
    for code in codes:
        records = tables.get(code)
        if not records:
            continue
        fields = release_fields(list(records[0]))
        mapping = SimpleNamespace(input_field=None, **fields)
        for index, record in enumerate(records):
            row = to_row(record, code, index, code, mapping)
            if "reason" in row:
                rejects.append(row)
                continue
            row["messages"] = with_language(row["messages"], code, template)
            english = next(
                m["content"] for m in to_messages(record, mapping) if m["role"] == "user"
            )
            row["seed_id"] = english
            by_instruction.setdefault(english, []).append(row)
    if assign == "all":
        rows = [row for group in by_instruction.values() for row in group]
    elif assign == "one":
        order = sorted(by_instruction)
        random.Random(seed).shuffle(order)
        for position, english in enumerate(order):
            present = {r["lang"]: r for r in by_instruction[english]}
            # The balanced choice when the release has that language for this instruction, else
            # the next language in the rotation that it has.
            rotation = list(codes[position % len(codes) :]) + list(codes)
            rows.append(next(present[c] for c in rotation if c in present))
    else:
        raise ConfigError("langs.assign", f"must be 'one' or 'all', not {assign!r}")
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise ConfigError("sft.release", "the release has duplicate row ids within a language")
    for row in rows:
        row["seed_id"] = hashlib.sha256(row["seed_id"].encode()).hexdigest()[:16]
    return sorted(rows, key=lambda r: r["id"]), rejects


def load_release(rel: Any, codes: Sequence[str]) -> dict[str, list[dict]]:
    """{code: records} of the release's splits in `codes`, read by `datasets` (`rel.repo` is a hub
    id or a local folder laid out like the release: a README with its `configs`, JSON files).
    A language the chosen config lacks is a ConfigError naming `sft.release.langs`."""
    from datasets import load_dataset

    if str(rel.config) not in RELEASE_CONFIGS:
        raise ConfigError(
            "sft.release.config", f"must be one of {', '.join(RELEASE_CONFIGS)}, not {rel.config!r}"
        )
    try:
        loaded = load_dataset(str(rel.repo), str(rel.config), revision=rel.revision)
    except Exception as e:  # DatasetNotFoundError, ConnectionError, a config the folder lacks, ...
        offline = os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True", "YES", "ON")
        hint = (
            " (HF_HUB_OFFLINE is set: the release must already be in the local cache)"
            if offline
            else ""
        )
        raise ConfigError(
            "sft.release.repo",
            f"cannot load {rel.repo!r} config {rel.config!r}: {type(e).__name__}: {e}{hint}",
        ) from e
    splits = {code_of(name): name for name in loaded}  # a split the table lacks: None
    missing = [c for c in codes if c not in splits]
    if missing:
        have = ", ".join(sorted(c for c in splits if c))
        raise ConfigError(
            "sft.release.langs",
            f"{', '.join(missing)} not in config {rel.config!r} of {rel.repo!r} (it has {have})",
        )
    return {code: loaded[splits[code]].to_list() for code in codes}


def read_release(
    rel: Any, codes: Sequence[str], assign: str, seed: int
) -> tuple[list[dict], list[dict], dict]:
    """Load the release and make SFT rows: (rows, rejects, stats)."""
    tables = load_release(rel, codes)
    rows, rejects = release_rows(tables, codes, assign, seed, rel.suffix_template)
    return rows, rejects, stats(rows, rejects, sum(len(t) for t in tables.values()))

"""External SFT data (paper Table 9, appendix B.2: X-Instruction, a 40K subset): any dataset
`datasets` can read (hub id, local JSONL/JSON/Parquet), mapped to the SFT row format of the
generated dataset (`id`, `lang`, `messages`, `qe_score`), filtered by language and subsampled
with a seed.

The core (`matching`, `draw`, `to_row`, `select_rows`) is pure (the release reader,
`xlexp/sft/release.py`, shares it); `load_tables` and `fingerprint`
do the I/O and run in the SFT stage shell (`xlexp.sft.stage.run_external_data`).
"""

from __future__ import annotations

import hashlib
import os
import random
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from xlexp.errors import ConfigError
from xlexp.integrity import hash_file_into
from xlexp.plain import plain

LOCAL_SUFFIXES = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}


def looks_local(dataset: str) -> bool:
    """A path (absolute, relative, or with a data-file suffix) rather than a hub id `org/name`."""
    text = str(dataset)
    return (
        text.startswith(("/", "./", "../", "~"))
        or Path(text).suffix.lower() in LOCAL_SUFFIXES
        or os.path.exists(text)
    )


# ---------------------------------------------------------------- pure core


def matching(langs: Sequence[Any], allowed: Sequence[str] | None) -> list[int]:
    """Positions whose language is allowed (all positions when `allowed` is None)."""
    if allowed is None:
        return list(range(len(langs)))
    keep = {str(a) for a in allowed}
    return [i for i, lang in enumerate(langs) if lang is not None and str(lang) in keep]


def draw(candidates: Sequence[Any], seed: int) -> list[Any]:
    """A seeded permutation of `candidates`: the first n of it are the seeded subset of size n,
    and a row that turns out malformed is replaced by the next one, so the subset keeps its size."""
    order = list(candidates)
    random.Random(seed).shuffle(order)
    return order


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def to_messages(record: dict, ext: Any) -> list[dict] | str:
    """The row's chat (user ... assistant last), or the reason it cannot be one."""
    if ext.messages_field:
        turns = record.get(ext.messages_field)
        if not isinstance(turns, list) or not turns:
            return "no_messages"
        messages = []
        for turn in turns:
            if not isinstance(turn, dict):
                return "bad_turn"
            role = turn.get("role", turn.get("from"))
            content = _text(turn.get("content", turn.get("value")))
            role = _SHAREGPT_ROLES.get(str(role).lower()) if role is not None else None
            if role is None or content is None:
                return "bad_turn"
            messages.append({"role": role, "content": content})
        if len(messages) < 2 or messages[-1]["role"] != "assistant":
            return "no_final_assistant_turn"
        return messages
    instruction = _text(record.get(ext.instruction_field))
    if instruction is None:
        return "empty_instruction"
    if ext.input_field and _text(record.get(ext.input_field)):
        instruction = f"{instruction}\n\n{_text(record.get(ext.input_field))}"
    response = _text(record.get(ext.response_field))
    if response is None:
        return "empty_response"
    return [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}]


def to_row(record: dict, table: str, index: int, lang: Any, ext: Any) -> dict:
    """One SFT row, or a reject `{"id", "reason"}` (rejects are data: counted, never raised)."""
    row_id = f"{table}:{record[ext.id_field]}" if ext.id_field else f"{table}:{index}"
    messages = to_messages(record, ext)
    if isinstance(messages, str):
        return {"id": row_id, "reason": messages}
    qe_score = None
    if ext.qe_field:
        try:
            qe_score = float(record.get(ext.qe_field))
        except (TypeError, ValueError):
            return {"id": row_id, "reason": "no_qe_score"}
    return {
        "id": row_id,
        "lang": None if lang is None else str(lang),
        "messages": messages,
        "qe_score": qe_score,
    }


def select_rows(
    candidates: list[tuple[str, int, Any]],
    fetch: Callable[[list[tuple[str, int, Any]]], list[dict]],
    ext: Any,
    seed: int,
    chunk: int = 1000,
) -> tuple[list[dict], list[dict]]:
    """Walk the seeded permutation of `candidates` (table, index, lang), turning records into rows
    until `ext.n` are good (all of them when n is None). `fetch` returns the records of a chunk.

    Returns (rows sorted by id, rejects met on the way)."""
    order = draw(candidates, seed) if ext.n is not None else list(candidates)
    want = len(order) if ext.n is None else ext.n
    rows: list[dict] = []
    rejects: list[dict] = []
    seen: set[str] = set()
    for start in range(0, len(order), chunk):
        if len(rows) >= want:
            break
        batch = order[start : start + chunk]
        for (table, index, lang), record in zip(batch, fetch(batch), strict=True):
            if len(rows) >= want:
                break
            row = to_row(record, table, index, lang, ext)
            if "reason" not in row and row["id"] in seen:
                row = {"id": row["id"], "reason": "duplicate_id"}
            if "reason" in row:
                rejects.append(row)
            else:
                seen.add(row["id"])
                rows.append(row)
    if ext.n is not None and len(rows) < want:
        raise ConfigError(
            "sft.external.n",
            f"asked for {want} rows but only {len(rows)} usable rows match "
            f"({len(candidates)} in the allowed languages, {len(rejects)} rejected)",
        )
    return sorted(rows, key=lambda r: r["id"]), rejects


def stats(rows: list[dict], rejects: list[dict], candidates: int) -> dict:
    return {
        "rows": len(rows),
        "matching_lang": candidates,
        "rejects": len(rejects),
        "reject_reasons": dict(Counter(r["reason"] for r in rejects)),
        "langs": dict(Counter(str(r["lang"]) for r in rows)),
    }


# ---------------------------------------------------------------- I/O (called by the stage shell)


def load_tables(ext: Any) -> list[tuple[str, Any]]:
    """[(table name, datasets.Dataset)]: one per language when data_files is {lang: file}, else one.

    Errors (no such hub dataset, offline, unreadable file) become a ConfigError naming the key."""
    from datasets import load_dataset

    data_files = plain(ext.data_files)
    path = Path(str(ext.dataset)).expanduser()
    try:
        if path.is_file():
            builder = LOCAL_SUFFIXES.get(path.suffix.lower())
            if builder is None:
                raise ConfigError(
                    "sft.external.dataset",
                    f"unknown file type {path.suffix!r} (known: {', '.join(LOCAL_SUFFIXES)})",
                )
            loaded = load_dataset(builder, data_files=str(path), split="train")
        elif isinstance(data_files, dict):
            loaded = load_dataset(
                str(path) if path.is_dir() else str(ext.dataset),
                data_files=data_files,
                revision=ext.revision,
            )
            return [(str(lang), loaded[str(lang)]) for lang in data_files]
        else:
            loaded = load_dataset(
                str(path) if path.is_dir() else str(ext.dataset),
                data_files=data_files,
                revision=ext.revision,
                split=ext.split,
            )
    except ConfigError:
        raise
    except (
        Exception
    ) as e:  # datasets raises many kinds (DatasetNotFoundError, ConnectionError, ...)
        offline = os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True", "YES", "ON")
        hint = (
            " (HF_HUB_OFFLINE is set: a hub dataset must already be in the local cache)"
            if offline
            else ""
        )
        raise ConfigError(
            "sft.external.dataset", f"cannot load {ext.dataset!r}: {type(e).__name__}: {e}{hint}"
        ) from e
    return [(str(ext.split), loaded)]


def check_columns(tables: list[tuple[str, Any]], ext: Any) -> None:
    """Every mapped field exists in every table, else a ConfigError naming the mapping key."""
    wanted = {"lang_field": ext.lang_field, "id_field": ext.id_field, "qe_field": ext.qe_field}
    if ext.messages_field:
        wanted["messages_field"] = ext.messages_field
    else:
        wanted |= {
            "instruction_field": ext.instruction_field,
            "response_field": ext.response_field,
            "input_field": ext.input_field,
        }
    for name, table in tables:
        for key, column in wanted.items():
            if column and column not in table.column_names:
                raise ConfigError(
                    f"sft.external.{key}",
                    f"no column {column!r} in {name!r} of {ext.dataset!r} "
                    f"(columns: {', '.join(table.column_names)})",
                )


def read(ext: Any, seed: int) -> tuple[list[dict], list[dict], dict]:
    """Load, filter by language, take the seeded subset: (rows, rejects, stats)."""
    tables = load_tables(ext)
    check_columns(tables, ext)
    langs = plain(ext.langs)
    candidates: list[tuple[str, int, Any]] = []
    for name, table in tables:
        column = (
            table[ext.lang_field]
            if ext.lang_field
            else [name if isinstance(plain(ext.data_files), dict) else None] * len(table)
        )
        candidates += [(name, i, column[i]) for i in matching(column, langs)]
    by_name = dict(tables)

    def fetch(batch: list[tuple[str, int, Any]]) -> list[dict]:
        """Records of a chunk, read with one `select` per table, returned in the chunk's order."""
        found: dict[tuple[str, int], dict] = {}
        for name in dict.fromkeys(t for t, _, _ in batch):
            idx = [i for t, i, _ in batch if t == name]
            found.update(
                zip(((name, i) for i in idx), by_name[name].select(idx).to_list(), strict=True)
            )
        return [found[(t, i)] for t, i, _ in batch]

    rows, rejects = select_rows(candidates, fetch, ext, seed)
    return rows, rejects, stats(rows, rejects, len(candidates))


def fingerprint(ext: Any) -> str | None:
    """A content hash of a local dataset (file, or every file in a folder) for the store key;
    None for a hub dataset (its `revision` is in the key instead)."""
    path = Path(str(ext.dataset)).expanduser()
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
    else:
        return None
    h = hashlib.sha256()
    for file in files:
        h.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        hash_file_into(h, file)
    return h.hexdigest()

"""Human preference labels for a sample of the benchmark (`eval.human_labels`): a CSV file with a
header, or JSON lines, each row `id` (the prompt id), `lang` (or `language`: a code, English name
or ISO 639-1 code of an evaluated language) and `preferred` (system | reference | tie). Other
columns (an annotator, a comment) are kept out of it. A bad row fails the run before any model
call, naming the file and its line: a label nobody can place would silently shrink the sample.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xlexp.errors import ConfigError
from xlexp.evaluate.agreement import REFERENCE, SYSTEM, TIE
from xlexp.langs import code_of

KEY = "eval.human_labels"
PREFERRED = {"system": SYSTEM, "reference": REFERENCE, "tie": TIE}


@dataclass(frozen=True)
class HumanLabel:
    line: int  # in the file, from 1 (a CSV's header is line 1)
    id: str
    lang: str
    preferred: int  # agreement.SYSTEM, TIE or REFERENCE


def _fail(path: Path, line: int, why: str) -> ConfigError:
    return ConfigError(KEY, f"{path}:{line}: {why}")


def _records(path: Path, text: str) -> Iterator[tuple[int, dict]]:
    if path.suffix.lower() in (".jsonl", ".json"):
        for line, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as e:
                raise _fail(path, line, f"not JSON ({e.msg})") from None
            if not isinstance(record, dict):
                raise _fail(path, line, "not a JSON object")
            yield line, record
        return
    reader = csv.DictReader(io.StringIO(text, newline=""))
    for record in reader:
        if any(v is not None and str(v).strip() for v in record.values()):
            yield reader.line_num, record


def read(path: str | Path, langs: Iterable[str]) -> list[HumanLabel]:
    """The labels of the file, every row checked (ConfigError naming `file:line`): an id, an
    evaluated language, a known label, no prompt labelled twice."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(KEY, f"human labels file not found: {str(path)!r}")
    if path.suffix.lower() not in (".csv", ".jsonl", ".json"):
        raise ConfigError(KEY, f"{path}: a .csv or .jsonl file, not {path.suffix or 'no suffix'}")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM from a spreadsheet's CSV export
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(KEY, f"{path}: cannot be read as UTF-8 text ({e})") from None
    evaluated = list(langs)
    out: list[HumanLabel] = []
    first: dict[tuple[str, str], int] = {}
    for line, record in _records(path, text):
        rid = _field(record, "id")
        lang_text = _field(record, "lang") or _field(record, "language")
        pick = _field(record, "preferred").lower()
        if not rid:
            raise _fail(path, line, "no prompt id (column `id`)")
        if not lang_text:
            raise _fail(path, line, "no language (column `lang`)")
        lang = code_of(lang_text)
        if lang not in evaluated:
            raise _fail(path, line, f"language {lang_text!r} is not evaluated "
                                    f"({', '.join(evaluated)})")
        if pick not in PREFERRED:
            raise _fail(path, line, f"preferred {_field(record, 'preferred')!r} is not one of "
                                    f"{', '.join(PREFERRED)}")
        if (rid, lang) in first:
            raise _fail(path, line, f"prompt {rid} ({lang}) is labelled twice "
                                    f"(first on line {first[rid, lang]})")
        first[rid, lang] = line
        out.append(HumanLabel(line, rid, lang, PREFERRED[pick]))
    return out


def _field(record: dict, name: str) -> str:
    value: Any = record.get(name)
    return "" if value is None else str(value).strip()


def check_ids(path: str | Path, labels: list[HumanLabel], ids: dict[str, Iterable[Any]]) -> None:
    """Every label names a prompt of its language (`ids`: the benchmark's prompt ids per
    language); else a ConfigError naming the file and line."""
    known = {lang: {str(i) for i in values} for lang, values in ids.items()}
    for row in labels:
        if row.id not in known.get(row.lang, set()):
            raise _fail(Path(path), row.line,
                        f"unknown prompt id {row.id!r} for {row.lang} (the benchmark's "
                        f"{row.lang} prompts have no such id)")


def by_lang(labels: list[HumanLabel]) -> dict[str, dict[str, int]]:
    """lang -> prompt id -> label."""
    out: dict[str, dict[str, int]] = {}
    for row in labels:
        out.setdefault(row.lang, {})[row.id] = row.preferred
    return out

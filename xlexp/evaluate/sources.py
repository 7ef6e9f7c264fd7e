"""Where benchmark prompts come from: the shipped demo prompts, a local AlpacaEval JSON/JSONL
file, AlpacaEval's `alpaca_eval.json` on the HF hub, or the XL-AlpacaEval authors' release.

Hub access fails offline (or without the file): the error is a ConfigError naming the config
key to change, raised before any model loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xlexp import langs as langtable
from xlexp.errors import ConfigError
from xlexp.evaluate.benchmarks import BENCHMARKS
from xlexp.evaluate.build_xl import demo_prompts, load_prompts

ALPACA_EVAL_REPO = "tatsu-lab/alpaca_eval"  # its loading script fails with current `datasets`
ALPACA_EVAL_FILE = "alpaca_eval.json"
XL_RELEASE_REPO = "viyer98/XL-AlpacaEval"


def prompt_source(ev: Any) -> str:
    """`path`, `demo` or `hub`: where the English prompts of `eval` come from.

    An explicit eval.path wins (also over the tiny profile's `prompts: demo`); then the demo
    prompts (a benchmark of the demo prompts, or prompts demo); else AlpacaEval's file on the hub.
    """
    if ev.path:
        return "path"
    if ev.prompts == "demo" or BENCHMARKS.get(ev.benchmark, "eval.benchmark").prompts == "demo":
        return "demo"
    return "hub"


def hub_alpaca_eval(repo: str, filename: str, revision: str | None = None) -> Path:
    """Local path of `filename` in the dataset repo (downloaded once into the HF cache)."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(
            hf_hub_download(repo_id=repo, filename=filename, repo_type="dataset", revision=revision)
        )
    except Exception as e:  # offline, unknown repo/file, no network: say which key to change
        raise ConfigError(
            "eval.hub_repo",
            f"cannot get {filename!r} from dataset repo {repo!r} ({type(e).__name__}: "
            f"{str(e)[:200]}); set eval.path to a local alpaca_eval.json/JSONL file instead",
        ) from None


def prompts_path(ev: Any) -> Path | None:
    """The English prompt file (local or downloaded); None for the demo prompts."""
    source = prompt_source(ev)
    if source == "demo":
        return None
    if source == "path":
        path = Path(ev.path)
        if not path.is_file():
            raise ConfigError("eval.path", f"AlpacaEval prompts file not found: {ev.path!r}")
        return path
    return hub_alpaca_eval(ev.hub_repo, ev.hub_file, ev.hub_revision)


def english_prompts(ev: Any) -> list[dict]:
    """`{id, instruction, dataset}` rows, ids 1-based positions in AlpacaEval's order."""
    path = prompts_path(ev)
    return demo_prompts() if path is None else load_prompts(path)


def release_rows(
    splits: dict[str, list[dict]], codes: list[str], where: str
) -> dict[str, list[dict]]:
    """Benchmark rows per language from the release's splits (pure).

    The authors' layout: one split per language named by its English name (english, german,
    chinese, ..., irish, ...), the rows of a split in the same prompt order; a row's `id` is
    its `id` column when present, else its 1-based position (the same prompt has the same
    position in every split). A release with a single split and a language column
    (`lang`, `language` or `target_lang`) is read by that column instead.
    """
    by_code: dict[str, str] = {}
    for split in splits:
        code = langtable.code_of(split)
        if code is not None:
            by_code.setdefault(code, split)
    records_by_code: dict[str, list[dict]] = {}
    if by_code:
        for code in codes:
            if code in by_code:
                records_by_code[code] = list(splits[by_code[code]])
    elif len(splits) == 1:
        (records,) = splits.values()
        for rec in records:
            lang_col = next((k for k in ("lang", "language", "target_lang") if k in rec), None)
            if lang_col is None:
                raise ConfigError(
                    "eval.release_repo",
                    f"{where}: split {next(iter(splits))!r} is not named by a language and "
                    f"has no language column (lang/language/target_lang) in {sorted(rec)}",
                )
            code = langtable.code_of(rec[lang_col])
            if code in codes:
                records_by_code.setdefault(code, []).append(rec)
    else:
        raise ConfigError(
            "eval.release_repo", f"{where}: no split is named by a language: {sorted(splits)}"
        )
    out: dict[str, list[dict]] = {}
    for code in codes:
        records = records_by_code.get(code, [])
        if not records:
            known = ", ".join(f"{s} ({c})" for c, s in sorted(by_code.items())) or "none"
            raise ConfigError(
                "eval.langs",
                f"{where} has no prompts for {code} ({langtable.name(code)}); "
                f"language splits: {known}",
            )
        rows = []
        for i, rec in enumerate(records, start=1):
            if "instruction" not in rec:
                raise ConfigError(
                    "eval.release_repo",
                    f"{where}: {code} record {i} has no 'instruction' column "
                    f"(columns: {sorted(rec)})",
                )
            pid = rec.get("id")
            rows.append(
                {
                    "id": int(pid) if pid is not None else i,
                    "lang": code,
                    "instruction": rec["instruction"],
                    "dataset": rec.get("dataset") or "xl_alpacaeval",
                }
            )
        ids = [r["id"] for r in rows]
        if len(set(ids)) != len(ids):
            raise ConfigError(
                "eval.release_repo", f"{where}: duplicate prompt ids in the {code} split"
            )
        out[code] = rows
    return out


def load_release(ev: Any, codes: list[str]) -> dict[str, list[dict]]:
    """The authors' XL-AlpacaEval through `datasets`: a hub repo by name, or a local copy of it
    (a directory laid out like the repo, its README's `configs` naming one split per language)."""
    try:
        from datasets import load_dataset

        loaded = load_dataset(ev.release_repo, revision=ev.hub_revision)
        splits = (
            {str(name): list(loaded[name]) for name in loaded}
            if hasattr(loaded, "keys")
            else {"default": list(loaded)}
        )
    except Exception as e:
        raise ConfigError(
            "eval.release_repo",
            f"cannot load dataset {ev.release_repo!r} ({type(e).__name__}: {str(e)[:200]}); "
            "offline? use eval.benchmark=xl_alpacaeval with eval.path "
            "(builds the same benchmark from AlpacaEval)",
        ) from None
    return release_rows(splits, codes, ev.release_repo)


def check_prompts_file(path: str | Path, key: str = "eval.path") -> int:
    """Before any work: a prompts file is UTF-8 JSON (a list) or JSONL with at least one prompt,
    each an object with a non-empty `instruction`; else one line naming `key`. The count."""
    import json

    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise ConfigError(key, f"cannot read {str(path)!r} ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(key, f"{str(path)!r} is not UTF-8 (byte {e.start})") from None
    stripped = text.lstrip()
    rows: list[tuple[str, object]] = []
    if stripped.startswith("["):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as e:
            raise ConfigError(
                key, f"{str(path)!r} is not valid JSON (line {e.lineno}: {e.msg})"
            ) from None
        rows = [(f"item {i}", row) for i, row in enumerate(data, 1)]
    else:
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append((f"line {n}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise ConfigError(
                    key,
                    f"{str(path)!r} line {n} is not JSON ({e.msg}); expected a JSON list or JSONL",
                ) from None
    if not rows:
        raise ConfigError(key, f"{str(path)!r} holds no prompts")
    for where, row in rows:
        if not isinstance(row, dict) or not str(row.get("instruction") or "").strip():
            raise ConfigError(key, f"{str(path)!r} {where} has no 'instruction'")
        if not isinstance(row["instruction"], str):
            kind = type(row["instruction"]).__name__
            raise ConfigError(
                key, f"{str(path)!r} {where}: 'instruction' must be text, not {kind}"
            )
    return len(rows)


def check_limit(limit: int | None, key: str = "eval.limit") -> None:
    """`eval.limit` is a number of prompts: None (all) or at least 1."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(key, f"must be null (all prompts) or a whole number >= 1, got {limit!r}")


def check_eval_inputs(ev: Any) -> None:
    """The evaluation's own inputs, checked with the rest of the config (before any model)."""
    check_limit(ev.limit)
    if ev.path is not None and not str(ev.path).strip():
        # An empty path is a mistake, not a request for the demo or hub prompts.
        raise ConfigError("eval.path", "is empty: name a prompts file, or null for the default")
    if prompt_source(ev) == "path":
        if not Path(ev.path).is_file():
            raise ConfigError("eval.path", f"AlpacaEval prompts file not found: {ev.path!r}")
        check_prompts_file(ev.path)

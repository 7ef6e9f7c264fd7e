"""XL-AlpacaEval (paper section 3 and appendix A): English prompts + "Answer in {language}".

Construction: drop the prompts of Table 4, replace explicit requests for English with a
`{language}` placeholder (A.1), substitute the target language's English name and append one
cross-lingual instruction sampled from the Table 5 templates with the word "language" removed
(A.2). The template drawn for a prompt depends only on (seed, prompt id), so every language
gets the same template for the same prompt (a parallel benchmark) and a different `limit` or
exclusion list does not reshuffle the others.

`python -m xlexp.build_xl` (`build_xl_command.py`, beside this file) writes the benchmark as files,
the counterpart of the XL-Instruct authors' `add_langs.py`: `DIR/<lang>.json` (alpaca_eval rows) per
language plus `DIR/manifest.json` recording what went in. The run builds the same rows from the
config.

    python -m xlexp.build_xl --source alpaca_eval.json --langs deu,por --out xl_alpaca_eval
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path

from xlexp import langs as langtable

# Table 4: prompts too culturally specific or tailored to an English answer. The ids are
# 1-based positions in AlpacaEval's 805-prompt eval set (the order of alpaca_eval.json).
PAPER_EXCLUDED_IDS: tuple[int, ...] = (183, 200, 350, 458, 476, 495, 635, 662, 663, 714)

# Table 5 with "language" removed, as appendix A.2 does ("Answer in German language" ->
# "Answer in German").
PAPER_TEMPLATES: tuple[str, ...] = (
    "Answer in {language}.",
    "Output an answer in {language}.",
    "Generate your answer in {language}.",
    "Respond in {language}.",
    "Produce an answer in {language}.",
    "Please write in {language}.",
)

# Paper facts that configs name as `${paper:NAME}` (conf/eval/*.yaml), so each is stated once.
PAPER_FACTS: dict[str, tuple] = {
    "table4_excluded_ids": PAPER_EXCLUDED_IDS,
    "table5_templates": PAPER_TEMPLATES,
}

ROW_KEYS = ("instruction", "dataset", "id", "lang")  # alpaca_eval needs the first two
ALPACA_EVAL_SIZE = 805  # prompts in AlpacaEval's eval set, whose positions Table 4's ids are
PLACEHOLDER = "{language}"
SEPARATOR = "\n\n"  # between the prompt and the appended template; prompts may end in code/lists


def _normalize(rows: Iterable[dict]) -> list[dict]:
    out = []
    for pos, row in enumerate(rows, start=1):
        if "instruction" not in row:
            raise ValueError(f"prompt #{pos} has no 'instruction' field")
        item = {
            "id": int(row["id"]) if row.get("id") is not None else pos,
            "instruction": str(row["instruction"]),
            "dataset": str(row.get("dataset", "")),
        }
        for key in ("output", "generator"):
            if key in row:
                item[key] = row[key]
        out.append(item)
    ids = [r["id"] for r in out]
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate prompt ids")
    return out


def _parse(text: str) -> list[dict]:
    stripped = text.lstrip()
    if stripped.startswith("["):
        return json.loads(stripped)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def load_prompts(path: str | Path) -> list[dict]:
    """AlpacaEval-shaped prompts from a JSON list or JSONL file.

    Rows: `{id, instruction, dataset}` plus `output`/`generator` when present; `id` is the
    1-based position when the file has none (AlpacaEval's own file has none).
    """
    return _normalize(_parse(Path(path).read_text(encoding="utf-8")))


def demo_prompts() -> list[dict]:
    """The ~30 short English prompts shipped for the tiny profile (dataset "demo")."""
    text = (
        resources.files("xlexp").joinpath("data", "demo_prompts.jsonl").read_text(encoding="utf-8")
    )
    return _normalize(_parse(text))


def template_index(prompt_id: int, n_templates: int, seed: int) -> int:
    """The template drawn for a prompt: a function of (seed, id) only, the same for every
    language."""
    # A str seed is hashed with SHA-512 by `random`, so this is stable across processes.
    return random.Random(f"xl-template:{seed}:{prompt_id}").randrange(n_templates)


def select_prompts(
    prompts: Sequence[dict], exclude_ids: Iterable[int] = (), limit: int | None = None
) -> list[dict]:
    """The prompts left after dropping `exclude_ids`, the first `limit` of them (all if None)."""
    excluded = {int(i) for i in exclude_ids}
    kept = [p for p in prompts if int(p["id"]) not in excluded]
    return kept[:limit] if limit is not None else kept


def build_xl(
    prompts: Sequence[dict],
    langs: Sequence[str],
    templates: Sequence[str],
    exclude_ids: Iterable[int] = (),
    rewrites: dict[int, str] | None = None,
    seed: int = 1,
    limit: int | None = None,
) -> dict[str, list[dict]]:
    """XL-AlpacaEval rows per language: `{lang: [{id, lang, instruction, dataset, template}]}`.

    `rewrites` maps a prompt id to its instruction with explicit requests for English replaced
    by `{language}`; `limit` keeps the first N prompts left after exclusion. `template` in a row
    is the raw template (with its placeholder), identical across languages.
    """
    templates = list(templates)
    if not templates:
        raise ValueError("no cross-lingual templates given")
    for t in templates:
        if PLACEHOLDER not in t:
            raise ValueError(f"template {t!r} has no {PLACEHOLDER} placeholder")
    names = {code: langtable.name(code) for code in langs}  # KeyError names an unknown code
    rewrites = {int(k): v for k, v in (rewrites or {}).items()}
    kept = select_prompts(prompts, exclude_ids, limit)

    out: dict[str, list[dict]] = {code: [] for code in langs}
    for p in kept:
        pid = int(p["id"])
        base = rewrites.get(pid, p["instruction"]).rstrip()
        template = templates[template_index(pid, len(templates), seed)]
        for code, lang_name in names.items():
            # str.replace, not str.format: prompts hold code with literal braces.
            text = (
                base.replace(PLACEHOLDER, lang_name)
                + SEPARATOR
                + template.replace(PLACEHOLDER, lang_name)
            )
            out[code].append(
                {
                    "id": pid,
                    "lang": code,
                    "instruction": text,
                    "dataset": p.get("dataset", ""),
                    "template": template,
                    "english": p["instruction"],
                }
            )
    return out


def to_alpaca_eval(
    rows: Sequence[dict], outputs: Sequence[str | None], generator: str
) -> list[dict]:
    """alpaca_eval `model_outputs.json` rows for one language, outputs aligned with `rows`
    (None: the response failed; the judge counts it and never sees it as an answer)."""
    if len(rows) != len(outputs):
        raise ValueError(f"{len(rows)} rows but {len(outputs)} outputs")
    return [
        {
            "instruction": r["instruction"],
            "output": o,
            "generator": generator,
            "dataset": r.get("dataset", ""),
            "id": r["id"],
            "lang": r["lang"],
        }
        for r, o in zip(rows, outputs, strict=True)
    ]


# Appendix A.1: prompts asking for an English answer get `{language}` instead. The reviewed
# list ships in xlexp/data/english_rewrites.json; `eval.rewrites` points at another file.
PAPER_REWRITES = "paper"
NO_REWRITES = ("", "none", "null", "false")  # what `eval.rewrites` / `--rewrites-file` say for none


def read_rewrites_file(spec: str | Path | None) -> dict[int, str]:
    """Rewrites `{id: instruction with {language}}` from `paper` (shipped), a JSON path, or none.

    The file is `{"rewrites": {"249": "..."}}` or a plain `{"249": "..."}` object. Raises
    ValueError naming the file for a malformed one.
    """
    if spec is None or str(spec).lower() in NO_REWRITES:
        return {}
    if str(spec) == PAPER_REWRITES:
        text = (
            resources.files("xlexp")
            .joinpath("data", "english_rewrites.json")
            .read_text(encoding="utf-8")
        )
        where = "xlexp/data/english_rewrites.json"
    else:
        text, where = Path(spec).read_text(encoding="utf-8"), str(spec)
    raw = json.loads(text)
    raw = raw.get("rewrites", raw) if isinstance(raw, dict) else raw
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a JSON object id -> instruction")
    try:
        rewrites = {int(k): str(v) for k, v in raw.items() if not str(k).startswith("_")}
    except ValueError:
        raise ValueError(f"{where}: keys must be integer prompt ids") from None
    missing = sorted(i for i, t in rewrites.items() if PLACEHOLDER not in t)
    if missing:
        raise ValueError(f"{where}: rewrites without {PLACEHOLDER}: ids {missing}")
    return rewrites


def check_rewrites(prompts: Sequence[dict], rewrites: dict[int, str]) -> dict[int, str]:
    """The rewrites that apply to `prompts`: ids absent from a subset are skipped.

    A rewrite must only replace the English request: with {language} -> English it gives back
    the source prompt (case aside). Otherwise the list belongs to another prompt file: ValueError.
    """
    by_id = {int(p["id"]): p["instruction"] for p in prompts}
    out = {}
    for pid, text in rewrites.items():
        if pid not in by_id:
            continue
        if " ".join(text.replace(PLACEHOLDER, "English").lower().split()) != " ".join(
            by_id[pid].lower().split()
        ):
            raise ValueError(
                f"rewrite for prompt {pid} does not match the source prompt (another prompt file?)"
            )
        out[pid] = text
    return out

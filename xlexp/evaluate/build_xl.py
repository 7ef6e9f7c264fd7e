"""XL-AlpacaEval (paper section 3 and appendix A): English prompts + "Answer in {language}".

Construction: drop the prompts of Table 4, replace explicit requests for English with a
`{language}` placeholder (A.1), substitute the target language's English name and append one
cross-lingual instruction sampled from the Table 5 templates with the word "language" removed
(A.2). The template drawn for a prompt depends only on (seed, prompt id), so every language
gets the same template for the same prompt (a parallel benchmark) and a different `limit` or
exclusion list does not reshuffle the others.

`python -m xlexp.build_xl` (main, below) writes the benchmark as files, the counterpart of the
XL-Instruct authors' `add_langs.py`: `DIR/<lang>.json` (alpaca_eval rows) per language plus
`DIR/manifest.json` recording what went in. The run builds the same rows from the config.

    python -m xlexp.build_xl --source alpaca_eval.json --langs deu,por --out xl_alpaca_eval
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from xlexp import langs as langtable
from xlexp.integrity import sha256_file

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
PAPER_FACTS: dict[str, tuple] = {"table4_excluded_ids": PAPER_EXCLUDED_IDS, "table5_templates": PAPER_TEMPLATES}

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
    text = resources.files("xlexp").joinpath("data", "demo_prompts.jsonl").read_text(encoding="utf-8")
    return _normalize(_parse(text))


def template_index(prompt_id: int, n_templates: int, seed: int) -> int:
    """The template drawn for a prompt: a function of (seed, id) only, the same for every language."""
    # A str seed is hashed with SHA-512 by `random`, so this is stable across processes.
    return random.Random(f"xl-template:{seed}:{prompt_id}").randrange(n_templates)


def select_prompts(prompts: Sequence[dict], exclude_ids: Iterable[int] = (), limit: int | None = None) -> list[dict]:
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
            text = base.replace(PLACEHOLDER, lang_name) + SEPARATOR + template.replace(PLACEHOLDER, lang_name)
            out[code].append(
                {"id": pid, "lang": code, "instruction": text, "dataset": p.get("dataset", ""), "template": template, "english": p["instruction"]}
            )
    return out


def to_alpaca_eval(rows: Sequence[dict], outputs: Sequence[str | None], generator: str) -> list[dict]:
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
        text = resources.files("xlexp").joinpath("data", "english_rewrites.json").read_text(encoding="utf-8")
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
        if " ".join(text.replace(PLACEHOLDER, "English").lower().split()) != " ".join(by_id[pid].lower().split()):
            raise ValueError(f"rewrite for prompt {pid} does not match the source prompt (another prompt file?)")
        out[pid] = text
    return out


# ---------------------------------------------------- the command: python -m xlexp.build_xl

ROW_KEYS = ("instruction", "dataset", "id", "lang")  # alpaca_eval needs the first two
ALPACA_EVAL_SIZE = 805  # prompts in AlpacaEval's eval set, whose positions Table 4's ids are


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m xlexp.build_xl",
        description="Build XL-AlpacaEval (one alpaca_eval JSON file per language) "
        "from AlpacaEval prompts.",
    )
    p.add_argument("--source", required=True, type=Path, help="AlpacaEval prompts, JSON or JSONL")
    p.add_argument("--langs", required=True, help="comma-separated language codes, e.g. deu,por")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--seed", type=int, default=1, help="seed of the template draw (default 1)")
    p.add_argument("--limit", type=int, help="keep the first N prompts left after exclusion")
    p.add_argument("--exclude-ids", default="paper", help="comma-separated 1-based prompt ids to "
                   "drop; 'paper' (default) = Table 4, 'none' = keep all")
    p.add_argument("--templates-file", type=Path, help="cross-lingual templates with {language}: "
                   "a JSON list or one per line (default: Table 5)")
    p.add_argument(
        "--rewrites-file",
        default=PAPER_REWRITES,
        help="'paper' (default): the reviewed appendix A.1 list shipped in "
        "xlexp/data/english_rewrites.json (explicit requests for English -> {language}); a JSON "
        "object mapping 1-based prompt id -> instruction text containing {language}; 'none': no "
        "rewrites (then a prompt such as 249 ends 'Answer in English.' before the template)",
    )
    return p


def parse_langs(text: str) -> list[str]:
    """Codes from `deu,por`, order kept, duplicates dropped; ValueError names unknown ones."""
    codes = list(dict.fromkeys(c.strip() for c in text.split(",") if c.strip()))
    if not codes:
        raise ValueError("--langs: no language codes given")
    unknown = [c for c in codes if c not in langtable.LANGUAGES]
    if unknown:
        known = ", ".join(f"{c} ({n})" for c, (n, _) in langtable.LANGUAGES.items())
        unknown_text = ", ".join(unknown)
        raise ValueError(f"--langs: unknown language code(s) {unknown_text}; known codes: {known}")
    return codes


def exclusion_list_name(text: str) -> str:
    """Which exclusion list `--exclude-ids` names: paper (Table 4), none, or custom."""
    key = text.strip().lower()
    return key if key in ("paper", "none") else ("none" if not key else "custom")


def parse_exclude_ids(text: str) -> tuple[int, ...]:
    """`paper` -> Table 4, `none` -> nothing, else comma-separated ints."""
    key = text.strip().lower()
    if key == "paper":
        return PAPER_EXCLUDED_IDS
    if key in ("none", ""):
        return ()
    try:
        return tuple(sorted({int(x) for x in key.split(",") if x.strip()}))
    except ValueError:
        raise ValueError(
            f"--exclude-ids: expected 'paper', 'none' or comma-separated ints, got {text!r}"
        ) from None


def read_templates(path: Path) -> list[str]:
    """Templates from a JSON list, or one per line (blank lines and `#` comments skipped)."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        templates = json.loads(text)
        if not all(isinstance(t, str) for t in templates):
            raise ValueError(f"--templates-file {path}: the JSON list must hold strings")
    else:
        lines = (ln.strip() for ln in text.splitlines())
        templates = [ln for ln in lines if ln and not ln.startswith("#")]
    if not templates:
        raise ValueError(f"--templates-file {path}: no templates")
    bad = [t for t in templates if PLACEHOLDER not in t]
    if bad:
        raise ValueError(f"--templates-file {path}: template(s) without {PLACEHOLDER}: {bad}")
    return templates


def cli_rewrites(spec: str, prompts: Sequence[dict]) -> dict[int, str]:
    """The rewrites `--rewrites-file` names, read and checked as the run reads `eval.rewrites`.

    A list of the user's own must name prompts of the source (an absent id is a typo there); the
    shipped one skips ids absent from a subset. Errors say which flag to change.
    """
    try:
        rewrites = read_rewrites_file(spec)
        if spec != PAPER_REWRITES:
            absent = sorted(set(rewrites) - {int(p["id"]) for p in prompts})
            if absent:
                raise ValueError(f"ids not in the source: {absent}")
        return check_rewrites(prompts, rewrites)
    except ValueError as e:
        if spec == PAPER_REWRITES:
            raise ValueError(
                f"--rewrites-file paper (the default): {e}; the shipped list is for AlpacaEval's "
                "alpaca_eval.json (ids = positions); for another source pass --rewrites-file none "
                "or a list of its own"
            ) from None
        raise ValueError(f"--rewrites-file {spec}: {e}") from None


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """Build the files; returns 0. Bad arguments exit with status 2 via argparse's `error`."""
    parser = _parser()
    args = parser.parse_args(argv)
    rewrites_spec = str(args.rewrites_file)
    try:
        codes = parse_langs(args.langs)
        exclude = parse_exclude_ids(args.exclude_ids)
        if args.limit is not None and args.limit < 1:
            raise ValueError("--limit must be a positive integer")
        if not args.source.is_file():
            raise ValueError(f"--source: no such file {args.source}")
        prompts = load_prompts(args.source)
        templates = list(PAPER_TEMPLATES)
        if args.templates_file:
            templates = read_templates(args.templates_file)
        rewrites = cli_rewrites(rewrites_spec, prompts)
    except (ValueError, OSError) as e:  # json.JSONDecodeError is a ValueError
        parser.error(str(e))

    warnings = []
    absent = sorted(set(exclude) - {int(p["id"]) for p in prompts})
    if absent:
        # Harmless for a subset file, but a sign of a wrong id base on the full set.
        warnings.append(f"excluded ids not in the source: {absent}")
    if exclusion_list_name(args.exclude_ids) == "paper" and len(prompts) != ALPACA_EVAL_SIZE:
        # Table 4's ids are positions in the 805-prompt file: on an already filtered set (the
        # authors' english split holds 797) they would drop other prompts.
        warnings.append(
            f"the source holds {len(prompts)} prompts, not AlpacaEval's {ALPACA_EVAL_SIZE}: Table "
            "4's ids are positions in alpaca_eval.json; for an already filtered set such as the "
            "release's english split use --exclude-ids none"
        )
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    xl = build_xl(prompts, codes, templates, exclude_ids=exclude, rewrites=rewrites,
                  seed=args.seed, limit=args.limit)

    args.out.mkdir(parents=True, exist_ok=True)
    for code, rows in xl.items():
        path = args.out / f"{code}.json"
        _write_json(path, [{k: r[k] for k in ROW_KEYS} for r in rows])
        print(f"{code} ({langtable.name(code)}): {len(rows)} prompts -> {path}")

    manifest = {
        "source": {"path": str(args.source.resolve()), "sha256": sha256_file(args.source),
                   "n_prompts": len(prompts)},
        "langs": codes,
        "seed": args.seed,
        "limit": args.limit,
        # Which exclusion list was applied and how many prompts remain: the paper's Table 4
        # leaves 795 of AlpacaEval's 805, the authors' release holds 797.
        "exclusion_list": exclusion_list_name(args.exclude_ids),
        "excluded_ids": list(exclude),
        "excluded_ids_absent": absent,
        "prompts_remaining": len(next(iter(xl.values()))),
        "rewrites": "none" if rewrites_spec.lower() in NO_REWRITES else rewrites_spec,
        "rewritten_ids": sorted(rewrites),
        "warnings": warnings,
        "templates": templates,
        "counts": {code: len(rows) for code, rows in xl.items()},
    }
    _write_json(args.out / "manifest.json", manifest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`python -m xlexp.build_xl`: XL-AlpacaEval written as files (`DIR/<lang>.json` in alpaca_eval's
row format and `DIR/manifest.json`), from the core in `build_xl.py` beside it; the run builds the
same rows from the config.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xlexp import langs as langtable
from xlexp.evaluate.build_xl import (
    ALPACA_EVAL_SIZE,
    NO_REWRITES,
    PAPER_EXCLUDED_IDS,
    PAPER_REWRITES,
    PAPER_TEMPLATES,
    PLACEHOLDER,
    ROW_KEYS,
    build_xl,
    check_rewrites,
    load_prompts,
    read_rewrites_file,
)
from xlexp.integrity import sha256_file


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

"""The generate stage, declared once (paper section 4): seed -> reverse -> refine -> translate ->
qe -> select. The run loop, the cost plan, preflight, results.md, the view and W&B read this.
"""

from __future__ import annotations

import math
from typing import Any

from xlexp.config import Config
from xlexp.generate import config as generate_config
from xlexp.generate.config import translator_cards
from xlexp.sft.config import needs_generated_data
from xlexp.stage import (
    ArtifactSpec,
    Expected,
    Measured,
    RoleCount,
    RunContext,
    Stage,
    TableRow,
    ViewSpec,
    signature,
)
from xlexp.store import Artifact

# Without a measurement in the store: sentences a refined response is split into.
DEFAULT_SENTENCES_PER_RESPONSE = 10.0


def wanted(cfg: Config) -> bool:
    """Generation runs when asked for, or when SFT needs the generated dataset."""
    return "generate" in cfg.stages or needs_generated_data(cfg)


def run(ctx: RunContext, arts: dict[str, Artifact]) -> None:
    from xlexp.generate.stage import run_generate

    run_generate(ctx.cfg, ctx.store, ctx.models, arts)


def seed_count(cfg: Config) -> tuple[int, bool]:
    """Seed passages: exact for local sources (the seed core reads the file; no model), else n."""
    from xlexp.generate import seed

    if str(cfg.seed_data.source) == "hf":
        return int(cfg.seed_data.n), False
    rows, _ = seed.take(seed.stream(cfg.seed_data, cfg.seed), cfg.seed_data)
    return len(rows), True


def expected(cfg: Config, measured: Measured) -> Expected:
    """Teacher calls per seed and per pair, translation calls per sentence (measured in the
    store's finished artifacts where it can, else assumed: those rows say `estimate`)."""
    out = Expected()
    shared = signature(
        cfg.seed_data,
        cfg.seed,
        cfg.teacher,
        cfg.langs,
        cfg.generate,
        cfg.splitter,
        cfg.qe,
        cfg.k,
        cfg.translators,
    )
    seeds, exact = seed_count(cfg)
    if cfg.generate.get("target_rows"):
        out.notes.append("generate.target_rows: more seeds may be drawn until the target is kept")
        exact = False
    out.calls.append(RoleCount("reverse", "teacher", cfg.teacher, seeds, exact, shared=shared))
    pairs_yield = measured.ratio("reverse", "out", "in")
    pairs = seeds * (pairs_yield if pairs_yield is not None else 1.0)
    out.calls.append(
        RoleCount(
            "refine", "teacher", cfg.teacher, pairs, exact and pairs_yield == 1.0, shared=shared
        )
    )
    refine_yield = measured.ratio("refine", "out", "in")
    items = pairs * (1.0 if refine_yield is None else refine_yield)
    items *= len(cfg.langs.codes) if cfg.langs.assign == "all" else 1
    per_item = measured.ratio("translate", "sentence_jobs", "items")
    jobs = math.ceil(items * (DEFAULT_SENTENCES_PER_RESPONSE if per_item is None else per_item))
    cards = translator_cards(cfg)
    for name, card in cards:
        out.calls.append(
            RoleCount("translate", f"translator:{name}", card, jobs, False, shared=shared)
        )
    if cfg.qe.kind == "llm":
        out.calls.append(RoleCount("qe", "qe", cfg.qe.llm, jobs * len(cards), False, shared=shared))
    elif cfg.qe.kind == "comet":
        out.notes.append(
            f"QE by {cfg.qe.model}: {jobs * len(cards)} segments on the GPU, no model calls"
        )
    return out


def summarize(ctx: RunContext, arts: dict[str, Artifact]) -> None:
    from xlexp.generate.stage import generation_stats

    ctx.summary["generation_stats"] = generation_stats(arts)


def log(tracker: Any, ctx: RunContext, arts: dict[str, Artifact]) -> None:
    """Per-stage counts, reject reasons, QE by language/translator, translator wins."""
    from xlexp.generate.stats import flatten

    tracker.log_values(flatten(ctx.summary.get("generation_stats") or {}))


def table_rows(entry: dict, summary: dict) -> list[TableRow]:
    """Rows in and out of each artifact as the generation's funnel counts them."""
    funnel = (summary.get("generation_stats") or {}).get("stages") or {}
    skip = ("in", "out", "rejects", "reject_reasons", "read", "items", "kind")
    rows = []
    # A merge of shards (or top-up rounds) names only its select artifact; the stages before it
    # are each piece's: their rows come from the funnel, summed over the pieces.
    pieces = (entry.get("select") or {}).get("pieces") if isinstance(entry, dict) else None
    for spec in STAGE.artifacts:
        f = funnel.get(spec.name) or {}
        if not isinstance(entry.get(spec.name), dict):
            if not (pieces and f):
                continue
            entry = {**entry, spec.name: {"key": f"{pieces} pieces"}}
        info = dict(entry[spec.name])
        key = info.pop("key", None)
        n_in = f.get("in", info.get("in", info.get("read", info.get("items"))))
        n_out = f.get("out", info.get("out", info.get("rows", info.get("items"))))
        reasons = f.get("reject_reasons") or info.get("reject_reasons") or {}
        rest = {k: v for k, v in info.items() if k not in skip and v not in (0, {}, None)}
        if f.get("dropped_by_qe_filter"):
            rest["dropped by the QE cut"] = f["dropped_by_qe_filter"]
        details = {**({"reasons": reasons} if reasons else {}), **rest}
        rows.append(
            TableRow(spec.name, key, n_in, n_out, f.get("rejects", info.get("rejects")), details)
        )
    return rows


def _read_view(store: Any, keys: dict[str, str | None], runs: list[str]) -> dict:
    from xlexp.generate.view import read_generation

    return {**read_generation(store, keys), "runs": runs}


def _read_store_view(store: Any) -> list[dict]:
    from xlexp.generate.view import _generation_inputs, read_generation
    from xlexp.view.read_common import _finished

    return [
        read_generation(store, _generation_inputs(store, sel)) for sel in _finished(store, "select")
    ]


STAGE = Stage(
    name="generate",
    artifacts=(
        ArtifactSpec("seed"),
        ArtifactSpec("reverse"),
        ArtifactSpec("refine"),
        ArtifactSpec("translate"),
        ArtifactSpec("qe"),
        ArtifactSpec("select", logged_as="dataset", files=("dataset.jsonl", "stats.json", "DONE")),
    ),
    run=run,
    wanted=wanted,
    roles=generate_config.roles,
    validate=generate_config.validate,
    expected=expected,
    summarize=summarize,
    log=log,
    table_rows=table_rows,
    view=ViewSpec("generation", "select", _read_view, _read_store_view),
)

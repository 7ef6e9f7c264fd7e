"""The evaluate stage, declared once (paper sections 3, 5, 6): the benchmark's prompts -> the
system's and the reference's answers -> the judge's verdicts -> metrics (and rubric scores).
The run loop, the cost plan, preflight, results.md, the view and W&B read this.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from xlexp.config import Config
from xlexp.evaluate import config as evaluate_config
from xlexp.evaluate.benchmarks import benchmark
from xlexp.evaluate.config import eval_codes, extra_judges, wants_agreement
from xlexp.roles import card_key
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
from xlexp.store import Artifact, MissingArtifact

logger = logging.getLogger("xlexp")


def run(ctx: RunContext, arts: dict[str, Artifact]) -> None:
    from xlexp.evaluate.stage import run_evaluate

    tuned = "sft" in ctx.cfg.stages
    if tuned and "adapter" not in ctx.arts:  # a probe that stopped before the adapter
        try:  # the reference's answers do not depend on it
            run_evaluate(ctx.cfg, ctx.store, ctx.models, None, arts, with_system=False)
        except MissingArtifact as e:
            e.name = "reference" if e.stage == "respond" else e.name
            raise
    adapter = ctx.need("adapter") if tuned else None
    run_evaluate(ctx.cfg, ctx.store, ctx.models, adapter, arts)


def eval_prompt_rows(cfg: Config) -> tuple[int, bool]:
    """Prompts times languages of the evaluation, and whether the benchmark knows it exactly."""
    per, exact = benchmark(cfg).prompts_per_lang(cfg)
    return per * len(eval_codes(cfg)), exact


# Without a tokenizer: characters per token of English prose (OpenAI's rule of thumb), and the
# prompt tokens of an instruction before any response is measured.
CHARS_PER_TOKEN = 4.0
INSTRUCTION_TOKENS = 60.0


def judge_prompt_tokens(cfg: Config, measured: Measured, template: str) -> float:
    """Prompt tokens of one judge call: the protocol's template, the instruction and both
    answers, each answer as long as measured in the store (else half its card's max_tokens)."""

    def answer(kind: str, role: str, card: Any) -> float:
        found = measured.per_call(kind, role, "completion_tokens")
        return found if found is not None else 0.5 * float(card.sampling.max_tokens or 256)

    instruction = measured.per_call("respond", "model", "prompt_tokens") or INSTRUCTION_TOKENS
    answers = answer("respond", "model", cfg.model) + answer("respond", "reference", cfg.reference)
    return len(template) / CHARS_PER_TOKEN + instruction + answers


def expected(cfg: Config, measured: Measured) -> Expected:
    """Answers of the system and the reference per prompt and language, judge calls per
    comparison (the protocol's calls_per_prompt), prompt translations and rubric scores."""
    from xlexp.evaluate.judge import judge_protocol

    out = Expected()
    rows, exact = eval_prompt_rows(cfg)
    bench = signature(cfg.eval, cfg.langs.codes, cfg.seed)
    system = signature(
        cfg.model, cfg.data_size if "sft" in cfg.stages else None, cfg.sft, cfg.generate, bench
    )
    two_step = cfg.eval.rtt == "two_step"
    out.calls.append(
        RoleCount(
            "respond",
            "model",
            cfg.model,
            rows * (2 if two_step else 1),
            exact and not two_step,
            shared=system,
        )
    )
    out.calls.append(
        RoleCount(
            "reference",
            "reference",
            cfg.reference,
            rows,
            exact,
            shared=signature(cfg.reference, bench),
        )
    )
    judging = judge_protocol(cfg.eval.judge_protocol)
    judged = rows * judging.calls_per_prompt
    out.calls.append(
        RoleCount("judge", "judge", cfg.judge, judged, exact, shared=signature(cfg.judge, system),
                  prompt_tokens_per_call=judge_prompt_tokens(cfg, measured, judging.prompt_text()),
                  completion_tokens_per_call=float(judging.sampling()["max_tokens"]))
    )
    for name, card in extra_judges(cfg).items():  # the same calls per card as the main judge
        same = card_key(card) == card_key(cfg.judge)
        out.calls.append(RoleCount(
            "judges", f"judge:{name}", card, 0 if same else judged, exact,
            shared=signature("judges", card, system, cfg.eval.judge_protocol),
            measured_kind="judge",
            prompt_tokens_per_call=judge_prompt_tokens(cfg, measured, judging.prompt_text()),
            completion_tokens_per_call=float(judging.sampling()["max_tokens"])))
        if same:
            out.notes.append(f"eval.judges: {name} is the main judge's card: its verdicts are the "
                             "main judge's, from the response cache (no call)")
    out.calls += benchmark(cfg).expected_calls(cfg, rows, exact, bench)  # building its prompts
    if cfg.eval.rubric:
        criteria = len(cfg.eval.rubric_criteria)
        out.calls.append(RoleCount("rubric", "judge", cfg.judge, rows * criteria, False,
                                   shared=signature("rubric", cfg.judge, system)))
    return out


def _json(art: Artifact, name: str) -> Any:
    return json.loads(art.file(name).read_text())


def repeated_instruction_warnings(per_lang: dict[str, list[dict]]) -> list[str]:
    """One line per language whose prompts repeat an instruction text: xlexp pairs the system's
    and the reference's outputs by prompt id, alpaca_eval by instruction text, so the two would
    pair (and judge) those prompts differently."""
    lines = []
    for code, rows in per_lang.items():
        ids: dict[str, list] = {}
        for row in rows:
            ids.setdefault(row["instruction"], []).append(row["id"])
        repeats = [group for group in ids.values() if len(group) > 1]
        if repeats:
            shown = "; ".join(", ".join(map(str, g)) for g in repeats[:5])
            lines.append(
                f"{code}: {len(repeats)} instruction(s) repeated in the prompts (ids {shown}"
                f"{'; ...' if len(repeats) > 5 else ''}): alpaca_eval pairs outputs by "
                "instruction text, xlexp by id, so a cross-check with alpaca_eval pairs them "
                "differently"
            )
    return lines


def summarize(ctx: RunContext, arts: dict[str, Artifact]) -> None:
    """The metrics table and its columns, the rubric scores, and the labels of the judged
    system (what `python -m xlexp.report <sweep dir>` lays out)."""
    from xlexp import track

    ctx.summary["metrics"] = _json(arts["metrics"], "metrics.json")
    ctx.summary["columns"] = _json(arts["metrics"], "columns.json")
    outputs = {code: _json(arts["respond"], f"{code}.json") for code in eval_codes(ctx.cfg)}
    for warning in repeated_instruction_warnings(outputs):
        logger.warning("evaluate: %s", warning)
        ctx.summary.setdefault("warnings", []).append(f"evaluate: {warning}")
    if "rubric" in arts:  # Table 8 fine-grained scores
        ctx.summary["rubric"] = _json(arts["rubric"], "metrics.json")
    if "agreement" in arts:  # how far to trust the judge: its own table, beside the main one
        ctx.summary["agreement"] = _json(arts["agreement"], "agreement.json")
    labels = arts["judge"].meta.get("system") or {}
    exp = track.hydra_context().get("exp") or ctx.cfg.logger.group
    ctx.summary["system"] = {**labels, "exp": exp, "judge_key": arts["judge"].key}


def log(tracker: Any, ctx: RunContext, arts: dict[str, Artifact]) -> None:
    """Per-language metrics under the judge protocol, rubric scores, and judged samples."""
    from xlexp.track import sample_rows

    if "rubric" in ctx.summary:
        rubric = ctx.summary["rubric"]
        tracker.log_metrics(
            {lang: {f"rubric_{k}": v for k, v in row.items()} for lang, row in rubric.items()}
        )
    tracker.log_metrics(ctx.summary["metrics"], ctx.cfg.eval.judge_protocol)
    if "agreement" in ctx.summary:
        from xlexp.evaluate.agreement import wandb_values

        tracker.log_values(wandb_values(ctx.summary["agreement"]))
    tracker.log_samples(
        sample_rows(arts["respond"], arts["reference"], arts["judge"], ctx.cfg.logger.samples)
    )


def table_rows(entry: dict, summary: dict) -> list[TableRow]:
    """One row per artifact: prompts (rows) out, prompts without a usable verdict as rejects."""
    rows = []
    for spec in STAGE.artifacts:
        if not isinstance(entry.get(spec.name), dict):
            continue
        counts = {k: v for k, v in entry[spec.name].items() if k not in ("key", "kind")}
        n = counts.get("rows")
        details = {k: v for k, v in counts.items() if k not in ("rows", "malformed")}
        rows.append(
            TableRow(
                spec.name,
                entry[spec.name].get("key"),
                None,
                n if not isinstance(n, dict) else None,
                counts.get("malformed"),
                details,
            )
        )
    return rows


def _read_view(store: Any, keys: dict[str, str | None], runs: list[str]) -> dict:
    from xlexp.evaluate.view import read_evaluation

    return read_evaluation(store, str(keys["judge"]), keys, runs)


def _read_store_view(store: Any) -> list[dict]:
    from xlexp.evaluate.view import read_evaluation
    from xlexp.view.read_common import _finished

    return [read_evaluation(store, judge.key) for judge in _finished(store, "judge")]


STAGE = Stage(
    name="evaluate",
    artifacts=(
        ArtifactSpec("prompt_set", when=lambda cfg: benchmark(cfg).stored),
        ArtifactSpec("respond", role="model"),  # the judged system's answers
        # the reference's: one model's answers are one artifact, whichever role asks
        ArtifactSpec("reference", kind="respond", role="reference"),
        ArtifactSpec("judge"),
        ArtifactSpec("metrics"),
        # the extra judges' verdicts (eval.judges), and the table of how far to trust the judge
        ArtifactSpec("judges", when=lambda cfg: bool(cfg.eval.get("judges"))),
        ArtifactSpec("agreement", when=wants_agreement),
        ArtifactSpec("rubric", when=lambda cfg: bool(cfg.eval.rubric)),
    ),
    run=run,
    roles=evaluate_config.roles,
    validate=evaluate_config.validate,
    expected=expected,
    summarize=summarize,
    log=log,
    table_rows=table_rows,
    view=ViewSpec("evaluation", "judge", _read_view, _read_store_view),
)

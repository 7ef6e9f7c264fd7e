"""Evaluation's store shell (paper sections 3, 5, 6): respond (system and reference) -> judge
-> metrics, and the rubric scores. Each step is an artifact; metrics are their own artifact
computed from the judge's stored verdicts, so a new metric never costs a judge call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xlexp.config import Config
from xlexp.evaluate import build_xl, judge, metrics, pairing, rtt, rubric
from xlexp.evaluate.config import eval_codes, wants_agreement
from xlexp.evaluate.prompt_sets import bench_key, eval_rows, run_prompt_set
from xlexp.evaluate.verdicts import chat_by_lang, judge_langs
from xlexp.evaluate.verdicts import outputs as _outputs
from xlexp.parallel import batches_in_flight, can_run_together, together
from xlexp.roles import Models, card_key, reasons
from xlexp.sft.config import parse_data_size
from xlexp.store import Artifact, Store, digest, write_json, write_jsonl


def run_respond(
    cfg: Config,
    store: Store,
    models: Models,
    role: str,
    card: Any,
    adapter: Artifact | None,
    prompt_set: Artifact | None = None,
) -> Artifact:
    """Outputs of one system on the benchmark, alpaca_eval format, one file per language.

    `prompt_set`: a stored prompt set (m-AlpacaEval, the authors' release); None: built from config.
    """
    inputs = ([adapter.key] if adapter else []) + ([prompt_set.key] if prompt_set else [])
    bench = bench_key(cfg, prompt_set)
    key = store.key("respond", {"model": card_key(card), "bench": bench}, inputs)
    generator = f"{card.name}+{adapter.key}" if adapter else card.name

    def produce(work: Path, parts: Any) -> dict:
        model = models.role(role, card)
        counts = {}
        per_lang = eval_rows(cfg, prompt_set)
        convs = {
            code: [[{"role": "user", "content": r["instruction"]}] for r in rows]
            for code, rows in per_lang.items()
        }
        answers = chat_by_lang(
            model, convs, adapter=str(adapter.file("adapter")) if adapter else None
        )
        for code, rows in per_lang.items():
            comps = answers[code]
            # A rejected call has no answer: null, counted, never shown to the judge as one.
            outputs = [c.text.strip() if c.ok else None for c in comps]
            write_json(work / f"{code}.json", build_xl.to_alpaca_eval(rows, outputs, generator))
            counts[code] = {"rows": len(rows), "errors": sum(not c.ok for c in comps)}
        return {"langs": counts, "generator": generator}

    return store.build("respond", key, produce)[0]


def run_judge(
    cfg: Config,
    store: Store,
    models: Models,
    system: Artifact,
    reference: Artifact,
    labels: dict | None = None,
) -> Artifact:
    """Per-prompt verdicts of the judge role under `eval.judge_protocol`, system vs reference,
    one `<lang>.jsonl` per language (see judge.combine for a row)."""
    protocol = cfg.eval.judge_protocol
    key = store.key(
        "judge",
        {"judge": card_key(cfg.judge), **judge.key_info(protocol)},
        [system.key, reference.key],
        version=3,  # 3: judge protocols; per-prompt statuses (judged, identical, failed, malformed)
    )

    def produce(work: Path, parts: Any) -> dict:
        counts = judge_langs(cfg, models.role("judge", cfg.judge), system, reference, work)
        return {"protocol": protocol, **counts}

    # `system` labels the judged system in DONE, so a report can build tables from the store alone.
    return store.build("judge", key, produce, info={"system": labels} if labels else None)[0]


def run_metrics(
    cfg: Config, store: Store, verdicts: Artifact, system: Artifact, reference: Artifact
) -> Artifact:
    """Win rates, CIs, LC, fidelity, lengths from stored verdicts and outputs (no model call).

    Keyed on the judge artifact and the metric list, so adding a metric recomputes this
    artifact from the stored verdicts of every judged system.
    """
    from xlexp.evaluate import lc

    names = metrics.METRICS.names()
    key = store.key(
        "metrics",
        {"metrics": names, "bootstrap": cfg.eval.bootstrap, "seed": cfg.seed, "lc": lc.GLM_NAME,
         "lc_bootstrap": cfg.eval.lc_bootstrap},
        [verdicts.key, system.key, reference.key],
        version=2,  # 2: the LC s.e. is a bootstrap of the fit; CIs need n >= 2
    )

    def produce(work: Path, parts: Any) -> dict:
        data = []
        for i, code in enumerate(eval_codes(cfg)):
            # By prompt id (pairing.py): in file order, a reference or verdicts stored in another
            # order would pair each answer with another prompt's (preferences, lengths, LC).
            entry = metrics.entry_from_rows(
                *pairing.for_metrics(
                    _outputs(system, code),
                    _outputs(reference, code),
                    verdicts.rows(f"{code}.jsonl"),
                    code,
                    (
                        f"the judge artifact {verdicts.key}",
                        f"the reference artifact {reference.key}",
                    ),
                )
            )
            data.append(metrics.lang_data(code, i, entry, cfg.eval.lc_bootstrap))
        table = metrics.summarize_langs(data, names, n_boot=cfg.eval.bootstrap, seed=cfg.seed)
        write_json(work / "metrics.json", table)
        write_json(work / "columns.json", metrics.stored_columns(names))
        return {"langs": len(data), "metrics": names}

    labels = {**(verdicts.meta.get("system") or {}), "judge_key": verdicts.key}
    return store.build("metrics", key, produce, info={"system": labels})[0]


def run_evaluate(
    cfg: Config,
    store: Store,
    models: Models,
    adapter: Artifact | None,
    arts: dict[str, Artifact] | None = None,
    with_system: bool = True,
) -> dict[str, Artifact]:
    """The evaluation's artifacts, each put into `arts` as soon as it is made. `with_system`
    False: only what does not depend on the judged system (the prompts, the reference's answers)."""
    arts = {} if arts is None else arts
    prompt_set = run_prompt_set(cfg, store, models)
    if prompt_set:
        arts["prompt_set"] = prompt_set
        if cfg.eval.get("human_labels"):  # a stored set's ids are known now, before any answer
            from xlexp.evaluate import human_labels

            path = cfg.eval.human_labels
            ids = {c: [r["id"] for r in rows] for c, rows in eval_rows(cfg, prompt_set).items()}
            human_labels.check_ids(path, human_labels.read(path, eval_codes(cfg)), ids)

    def system() -> None:
        if cfg.eval.rtt:
            arts["respond"] = run_respond_rtt(cfg, store, models, cfg.model, adapter, prompt_set)
        else:
            arts["respond"] = run_respond(
                cfg, store, models, "model", cfg.model, adapter, prompt_set
            )

    def reference() -> None:
        arts["reference"] = run_respond(
            cfg, store, models, "reference", cfg.reference, None, prompt_set
        )

    if not with_system:
        reference()
        return arts
    # The system and the reference do not wait for each other: both out at once when they can.
    together(
        {"respond": system, "reference": reference}, can_run_together([cfg.model, cfg.reference])
    )
    arts["judge"] = run_judge(
        cfg, store, models, arts["respond"], arts["reference"], system_labels(cfg, adapter)
    )
    arts["metrics"] = run_metrics(cfg, store, arts["judge"], arts["respond"], arts["reference"])
    # How far to trust the judge (trust.py, which builds on this module: imported here).
    if cfg.eval.get("judges"):
        from xlexp.evaluate.trust import run_judges

        arts["judges"] = run_judges(cfg, store, models, arts["respond"], arts["reference"])
    if wants_agreement(cfg):
        from xlexp.evaluate.trust import run_agreement

        arts["agreement"] = run_agreement(
            cfg, store, arts["judge"], arts.get("judges"), arts["respond"]
        )
    if cfg.eval.rubric:
        arts["rubric"] = run_rubric(cfg, store, models, arts["respond"])
    return arts


def system_labels(cfg: Config, adapter: Artifact | None) -> dict:
    """What a report needs to name a judged system: a row (model, data size, selection) and the
    comparison its win rates belong to (reference, judge, benchmark). Only what determines the
    judge artifact, so labels stay true when another experiment reuses it."""
    tuned = adapter is not None
    return {
        "model": cfg.model.name,
        "rtt": cfg.eval.rtt or None,  # the Reason-then-Translate mode; None: answered directly
        "model_id": cfg.model.model,
        "adapter": adapter.key if tuned else None,
        "data_size": parse_data_size(cfg.data_size) if tuned else None,
        "selection": cfg.generate.selection if tuned else None,
        "subset": ("random" if cfg.generate.selection == "random" else cfg.sft.subset)
        if tuned
        else None,
        "k": cfg.k if tuned else None,
        "reference": cfg.reference.name,
        "judge": cfg.judge.name,
        "judge_protocol": cfg.eval.judge_protocol,
        "benchmark": cfg.eval.benchmark,
        "langs": eval_codes(cfg),
    }


def run_respond_rtt(
    cfg: Config,
    store: Store,
    models: Models,
    card: Any,
    adapter: Artifact | None,
    prompt_set: Artifact | None,
) -> Artifact:
    """Reason-then-Translate outputs (Table 2), alpaca_eval format like any system's."""
    mode = cfg.eval.rtt
    prompts = (
        {"one_prompt": rtt.prompt("rtt_one_prompt")}
        if mode == "one_prompt"
        else {"translate": rtt.prompt("rtt_translate")}
    )
    inputs = ([adapter.key] if adapter else []) + ([prompt_set.key] if prompt_set else [])
    key = store.key(
        "respond",
        {
            "model": card_key(card),
            "bench": bench_key(cfg, prompt_set),
            "rtt": mode,
            "rtt_max_tokens": cfg.eval.rtt_max_tokens,
            "prompts": digest(prompts),
        },
        inputs,
    )
    generator = f"{card.name}+rtt-{mode}" + (f"+{adapter.key}" if adapter else "")

    def produce(work: Path, parts: Any) -> dict:
        model = models.role("model", card)
        sampling = model.sampling(
            **({"max_tokens": cfg.eval.rtt_max_tokens} if cfg.eval.rtt_max_tokens else {})
        )
        lora = str(adapter.file("adapter")) if adapter else None
        by_code = eval_rows(cfg, prompt_set)
        if mode == "one_prompt":
            comps = chat_by_lang(
                model,
                {c: [rtt.one_prompt(r) for r in rows] for c, rows in by_code.items()},
                sampling,
                lora,
            )
            results = {c: [rtt.from_completion(x, c) for x in comps[c]] for c in by_code}
        else:
            # The answers do not depend on the language: a prompt asked for each is asked once.
            asked = chat_by_lang(
                model,
                {c: [rtt.answer_prompt(r) for r in rows] for c, rows in by_code.items()},
                sampling,
                lora,
            )
            results = {c: [rtt.from_completion(x) for x in asked[c]] for c in by_code}
            todo = {c: [i for i, (text, _) in enumerate(results[c]) if text] for c in by_code}
            comps = chat_by_lang(
                model,
                {c: [rtt.translate_prompt(results[c][i][0], c) for i in todo[c]] for c in by_code},
                sampling,
                lora,
            )
            for c in by_code:
                for i, x in zip(todo[c], comps[c], strict=True):
                    results[c][i] = rtt.from_completion(x)
        counts = {}
        for code, rows in by_code.items():
            mine = results[code]
            outputs = [text if text else None for text, _ in mine]  # a failed step: no answer
            write_json(work / f"{code}.json", build_xl.to_alpaca_eval(rows, outputs, generator))
            rejects = reasons([{"reject": reason} for _, reason in mine if reason])
            counts[code] = {
                "rows": len(rows),
                "empty_outputs": sum(not o for o in outputs),
                **rejects,
            }
        return {"langs": counts, "generator": generator, "rtt": mode}

    return store.build("respond", key, produce)[0]


def run_rubric(cfg: Config, store: Store, models: Models, system: Artifact) -> Artifact:
    """Fine-grained 1-5 scores of a system's outputs by the judge role (Table 8)."""
    criteria = list(cfg.eval.rubric_criteria)
    key = store.key(
        "rubric",
        {
            "judge": card_key(cfg.judge),
            "criteria": criteria,
            "prompt": digest(rubric.prompt_text(criteria)),
            "parser": rubric.PARSER_VERSION,
        },
        [system.key],
    )

    def produce(work: Path, parts: Any) -> dict:
        model = models.role("judge", cfg.judge)
        sampling = model.sampling(temperature=0.0, max_tokens=4, logprobs=20)
        all_rows = []
        for code in eval_codes(cfg):
            plan = rubric.plan(_outputs(system, code), criteria)

            def run_batch(batch: list[dict]) -> list[dict]:
                return rubric.combine(
                    batch, model.chat([p["conversation"] for p in batch], sampling)
                )

            size = max(cfg.generate.batch_size * 4, 1)
            rows = parts.map_batches(
                code, plan, size, run_batch, workers=batches_in_flight(cfg.judge, size)
            )
            write_jsonl(work / f"{code}.jsonl", rows)
            all_rows += rows
        summary = rubric.summarize(all_rows, criteria)
        write_json(work / "metrics.json", summary)
        malformed = [{"reject": r["reason"]} for r in all_rows if r["score"] is None]
        return {
            "scored": len(all_rows) - len(malformed),
            "malformed": len(malformed),
            **reasons(malformed),
        }

    return store.build("rubric", key, produce)[0]

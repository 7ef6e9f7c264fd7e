"""The I/O shell around the pure stage cores: load inputs from the store, call model roles,
write artifacts. Each function returns a store Artifact; its key is the hash of the config
slice the stage reads, the keys of its inputs and the stage's format version, so the same
work is never done twice (by a rerun, a resumed job, or another job of a sweep).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from xlexp.config import ConfigError, parse_data_size, translator_cards
from xlexp.generate import qe, refine, reverse, seed, segment, select, translate
from xlexp.generate import stats as gen_stats
from xlexp.llm import ChatModel, ResponseCache, load
from xlexp.llm.base import identity_of
from xlexp.progress import bar
from xlexp.store import Artifact, Store, digest, write_json, write_jsonl

log = logging.getLogger("xlexp")


def card_key(card: Any) -> dict:
    """What of a model card determines its outputs (not concurrency, prices or batch size)."""
    c = OmegaConf.to_container(card, resolve=True) if OmegaConf.is_config(card) else dict(vars(card))
    return {"identity": identity_of(card), "sampling": c.get("sampling"), "chat_template": c.get("chat_template")}


def plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


@dataclass
class Models:
    """Model roles for one run: one cache, and one backend per distinct model, loaded lazily."""

    store: Store
    cache: ResponseCache = field(init=False)
    _roles: dict[str, ChatModel] = field(default_factory=dict)
    _backends: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.cache = ResponseCache(self.store.root / "cache.sqlite")

    def role(self, role: str, card: Any) -> ChatModel:
        if role not in self._roles:
            self._roles[role] = load(card, self.store.root, self.cache, pool=self._backends)
        return self._roles[role]

    def usage(self) -> dict[str, dict]:
        out = {}
        for role, model in self._roles.items():
            u = model.usage
            out[role] = {
                "calls": u.calls,
                "cache_hits": u.cache_hits,
                "errors": u.errors,
                "prompt_tokens": u.prompt_tokens,
                "completion_tokens": u.completion_tokens,
                "seconds": round(u.seconds, 2),
                "usd": round(u.cost(model.card), 4),
            }
        return out

    def backend_calls(self) -> int:
        return sum(m.usage.calls for m in self._roles.values())

    def roles(self) -> dict[str, ChatModel]:
        """The roles loaded so far (the cost ledger reads their usage)."""
        return dict(self._roles)

    def close(self) -> None:
        for backend in self._backends.values():
            close = getattr(backend, "close", None)
            if close:
                close()
        self._backends.clear()


def _split_rejects(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    ok = [r for r in rows if "reject" not in r]
    return ok, [r for r in rows if "reject" in r]


def _chat_stage(
    store: Store,
    stage: str,
    key: str,
    inputs: list[dict],
    model: ChatModel,
    build: Any,
    parse: Any,
    batch_size: int,
    sampling: Any = None,
) -> Artifact:
    """A chat stage: prompts in batches (finished batches kept as parts), rows + rejects out."""

    def produce(work: Path, parts: Any) -> dict:
        def run_batch(batch: list[dict]) -> list[dict]:
            return parse(batch, model.chat(build(batch), sampling))

        rows = parts.map_batches("batch", inputs, batch_size, run_batch, desc=stage)
        ok, rejects = _split_rejects(rows)
        write_jsonl(work / "rows.jsonl", ok)
        write_jsonl(work / "rejects.jsonl", rejects)
        return {"in": len(inputs), "out": len(ok), "rejects": len(rejects), **_reasons(rejects)}

    artifact, _ = store.build(stage, key, produce)
    return artifact


def _reasons(rejects: list[dict]) -> dict:
    reasons: dict[str, int] = {}
    for r in rejects:
        reasons[r["reject"]] = reasons.get(r["reject"], 0) + 1
    return {"reject_reasons": reasons} if reasons else {}


# ---------------------------------------------------------------- generate


def run_seed(cfg: Any, store: Store) -> Artifact:
    key = store.key("seed", {"seed_data": plain(cfg.seed_data), "seed": cfg.seed, "files": seed.fingerprint(cfg.seed_data)})

    def produce(work: Path, parts: Any) -> dict:
        rows, counts = seed.take(seed.stream(cfg.seed_data, cfg.seed), cfg.seed_data)
        write_jsonl(work / "rows.jsonl", rows)
        return counts

    return store.build("seed", key, produce)[0]


def run_reverse(cfg: Any, store: Store, models: Models, seeds: Artifact) -> Artifact:
    key = store.key("reverse", {"teacher": card_key(cfg.teacher), "prompt": digest(reverse.prompt("reverse"))}, [seeds.key])
    model = models.role("teacher", cfg.teacher)
    return _chat_stage(store, "reverse", key, seeds.rows(), model, reverse.build_prompts, reverse.parse, cfg.generate.batch_size)


def run_refine(cfg: Any, store: Store, models: Models, pairs: Artifact) -> Artifact:
    key = store.key("refine", {"teacher": card_key(cfg.teacher), "prompt": digest(refine.prompt("refine"))}, [pairs.key])
    model = models.role("teacher", cfg.teacher)
    return _chat_stage(store, "refine", key, pairs.rows(), model, refine.build_prompts, refine.parse, cfg.generate.batch_size)


def run_translate(cfg: Any, store: Store, models: Models, pairs: Artifact) -> Artifact:
    cards = translator_cards(cfg)
    key = store.key(
        "translate",
        {
            "translators": [card_key(c) for _, c in cards],
            "splitter": plain(cfg.splitter),
            "langs": plain(cfg.langs),
            "templates": plain(cfg.generate.suffix_templates),
            "prompt": digest(translate.prompt("translate")),
            "seed": cfg.seed,
        },
        [pairs.key],
    )

    def produce(work: Path, parts: Any) -> dict:
        items = translate.assign_languages(
            pairs.rows(), list(cfg.langs.codes), cfg.langs.assign, list(cfg.generate.suffix_templates), cfg.seed
        )
        translate.add_segments(items, segment.make_splitter(cfg.splitter))
        job_list = translate.jobs(items)
        results: dict[str, dict[tuple[str, str], tuple[str | None, str | None]]] = {}
        for name, card in cards:
            model = models.role(f"translator:{name}", card)

            def run_batch(batch: list[tuple[str, str]], model: ChatModel = model) -> list[dict]:
                comps = model.chat(translate.build_prompts(batch))
                return [
                    dict(zip(("text", "reject"), translate.parse_one(src, c), strict=True))
                    for (src, _), c in zip(batch, comps, strict=True)
                ]

            # Each translator gets all its sentences; parts bound the loss of a killed job.
            out = parts.map_batches(f"{name}", job_list, max(cfg.generate.batch_size * 4, 1), run_batch, desc=f"translate {name}")
            results[name] = {job: (r["text"], r["reject"]) for job, r in zip(job_list, out, strict=True)}
        rejects: dict[str, int] = {}
        rows = []
        for item in items:
            sents = segment.sentences(item["segments"])
            candidates = []
            for s in sents:
                cands = []
                for name, _ in cards:
                    text, reason = results[name][(s, item["lang"])]
                    if reason:
                        rejects[f"{name}: {reason}"] = rejects.get(f"{name}: {reason}", 0) + 1
                    cands.append(text)
                candidates.append(cands)
            rows.append({**item, "sentences": sents, "candidates": candidates})
        write_jsonl(work / "rows.jsonl", rows)
        return {"items": len(rows), "sentence_jobs": len(job_list), "translations": len(job_list) * len(cards), "rejected_translations": rejects}

    return store.build("translate", key, produce)[0]


def run_qe(cfg: Any, store: Store, models: Models, translations: Artifact) -> Artifact:
    info = qe.scorer_info(cfg.qe)
    if cfg.qe.kind == "llm":
        info.update(llm=card_key(cfg.qe.llm), prompt=digest(qe.prompt("qe")))
    key = store.key("qe", info, [translations.key])

    def produce(work: Path, parts: Any) -> dict:
        triples = qe.unique_triples(translations.rows())
        if cfg.qe.kind == "llm":
            model = models.role("qe", cfg.qe.llm)
            sampling = model.sampling(temperature=0.0, max_tokens=1, logprobs=qe.TOP_LOGPROBS)

            def run_batch(batch: list[list[str]]) -> list[dict]:
                comps = model.chat(qe.build_prompts([tuple(t) for t in batch]), sampling)
                return [dict(zip(("score", "reject"), qe.parse_score(c), strict=True)) for c in comps]
        else:
            scorer = qe.CometQE(cfg.qe.model, cfg.qe.batch_size)

            def run_batch(batch: list[list[str]]) -> list[dict]:
                scores = scorer.score([(s, t) for s, t, _ in batch])
                return [{"score": s, "reject": None} for s in scores]

        out = parts.map_batches("scores", [list(t) for t in triples], max(cfg.generate.batch_size * 4, 1), run_batch, desc=f"qe {cfg.qe.kind}")
        rows = [{"key": qe.triple_key(*t), "source": t[0], "translation": t[1], "lang": t[2], **r} for t, r in zip(triples, out, strict=True)]
        write_jsonl(work / "rows.jsonl", rows)
        failed = [r for r in rows if r["score"] is None]
        return {"scored_pairs": len(rows), "failed": len(failed), **_reasons([{"reject": r["reject"]} for r in failed])}

    return store.build("qe", key, produce)[0]


def run_select(
    cfg: Any, store: Store, translations: Artifact, scores: Artifact, upstream: dict[str, Artifact] | None = None
) -> Artifact:
    """The SFT dataset, plus `stats.json` (per-stage counts from `upstream`'s artifacts, QE by
    language and translator, translator wins)."""
    names = [name for name, _ in translator_cards(cfg)]
    key = store.key(
        "select",
        {"selection": cfg.generate.selection, "keep": cfg.generate.keep, "seed": cfg.seed, "translators": names},
        [translations.key, scores.key],
        version=2,  # 2: stats.json holds the whole generation's stats
    )

    def produce(work: Path, parts: Any) -> dict:
        score_of = {r["key"]: r["score"] for r in scores.rows()}
        chosen = [select.choose(item, score_of, names, cfg.generate.selection) for item in translations.rows()]
        ok, rejects = _split_rejects(chosen)
        kept = select.filter_rows(ok, cfg.generate.keep, cfg.generate.selection, cfg.seed)
        write_jsonl(work / "dataset.jsonl", kept)
        write_jsonl(work / "rejects.jsonl", rejects)
        stage_counts = {name: art.meta.get("counts", {}) for name, art in (upstream or {}).items()}
        stats = gen_stats.generation_stats(stage_counts, translations.rows(), score_of, chosen, kept, names)
        write_json(work / "stats.json", stats)
        return {"rows": len(kept), "before_filter": len(ok), "rejects": len(rejects)}

    return store.build("select", key, produce)[0]


def run_generate(cfg: Any, store: Store, models: Models) -> dict[str, Artifact]:
    arts: dict[str, Artifact] = {}
    arts["seed"] = run_seed(cfg, store)
    arts["reverse"] = run_reverse(cfg, store, models, arts["seed"])
    arts["refine"] = run_refine(cfg, store, models, arts["reverse"])
    arts["translate"] = run_translate(cfg, store, models, arts["refine"])
    arts["qe"] = run_qe(cfg, store, models, arts["translate"])
    arts["select"] = run_select(cfg, store, arts["translate"], arts["qe"], upstream=arts)
    return arts


def generation_stats(arts: dict[str, Artifact]) -> dict:
    """The generate run's stats (written beside the select artifact), for the summary and W&B."""
    import json

    path = arts["select"].file("stats.json")
    return json.loads(path.read_text()) if path.exists() else {}


# ---------------------------------------------------------------- sft


# Not part of what the adapter is: checkpoint cadence, process count, and where the rows came
# from (the data artifact's key, an input of the sft key, already says that).
_SFT_KEY_SKIPS = ("save_steps", "num_processes", "source", "external")


def sft_subset(cfg: Any) -> str:
    """`top` or `random`: a `random` selection ablation (paper B.3) also samples randomly."""
    if cfg.sft.source == "generated" and cfg.generate.selection == "random":
        return "random"
    return cfg.sft.subset


def sft_key(cfg: Any, store: Store, dataset: Artifact) -> str:
    """The adapter's key: base model, data artifact, data_size, selection and hyperparameters.
    Sampling settings of the model card are left out: they change answers, not the adapter."""
    sft_cfg = {k: v for k, v in plain(cfg.sft).items() if k not in _SFT_KEY_SKIPS}
    model = {"identity": identity_of(cfg.model), "chat_template": cfg.model.chat_template}
    n = parse_data_size(cfg.data_size)
    return store.key("sft", {"model": model, "sft": sft_cfg, "n": n, "subset": sft_subset(cfg), "seed": cfg.seed}, [dataset.key])


def report_to(cfg: Any) -> str:
    """Where TRL's trainer logs its metrics: the run's W&B logger, or nowhere."""
    return "wandb" if cfg.logger.kind == "wandb" else "none"


def run_external_data(cfg: Any, store: Store) -> Artifact:
    """The external SFT dataset (sft.source=external) as a store artifact shaped like the
    generated one (`dataset.jsonl`), so the sft key depends on it the same way."""
    from xlexp.sft import source

    ext = cfg.sft.external
    config = {"external": plain(ext), "seed": cfg.seed, "content": source.fingerprint(ext)}
    key = store.key("external_data", config)

    def produce(work: Path, parts: Any) -> dict:
        rows, rejects, stats = source.read(ext, cfg.seed)
        write_jsonl(work / "dataset.jsonl", rows)
        write_jsonl(work / "rejects.jsonl", rejects)
        write_json(work / "stats.json", stats)
        return {"rows": len(rows), "matching_lang": stats["matching_lang"], "rejects": len(rejects)}

    return store.build("external_data", key, produce)[0]


def sft_dataset(cfg: Any, store: Store, arts: dict[str, Artifact]) -> Artifact:
    """The rows SFT trains on: the generated dataset (`select`) or the external one."""
    if cfg.sft.source == "external":
        arts["external_data"] = run_external_data(cfg, store)
        return arts["external_data"]
    return arts["select"]


def run_sft(cfg: Any, store: Store, dataset: Artifact) -> Artifact:
    from xlexp.llm.hf import materialize
    from xlexp.sft.data import take
    from xlexp.sft.launch import train

    n = parse_data_size(cfg.data_size)
    rows = dataset.rows("dataset.jsonl")
    subset = sft_subset(cfg)
    try:
        chosen = take(rows, n, subset, cfg.seed)
    except ValueError as e:  # more rows asked for than the dataset holds: fail before training
        raise ConfigError("data_size", str(e).removeprefix("data_size: ")) from None
    key = sft_key(cfg, store, dataset)

    def produce(work: Path, parts: Any) -> dict:
        # Checkpoints live outside the partial dir's parts so a killed job resumes from them.
        model_dir = materialize(cfg.model, store.root / "models")
        metrics = train(chosen, model_dir, cfg.sft, work, cfg.seed, chat_template=cfg.model.chat_template, report_to=report_to(cfg))
        shutil.rmtree(work / "checkpoints", ignore_errors=True)  # only needed to resume
        shutil.rmtree(work / "launch", ignore_errors=True)  # the accelerate spec (a copy of the rows)
        return {"rows": len(chosen), **{k: v for k, v in metrics.items() if not isinstance(v, list | dict)}}

    return store.build("sft", key, produce)[0]


# ---------------------------------------------------------------- evaluate


def benchmark_rows(cfg: Any) -> dict[str, list[dict]]:
    from xlexp.evaluate import benchmark, sources

    prompts = sources.english_prompts(cfg.eval)
    rewrites = benchmark.check_rewrites(prompts, benchmark.read_rewrites_file(cfg.eval.rewrites))
    codes = list(cfg.eval.langs or cfg.langs.codes)
    return benchmark.build_xl(
        prompts, codes, list(cfg.eval.templates), exclude_ids=list(cfg.eval.exclude_ids), rewrites=rewrites, seed=cfg.seed, limit=cfg.eval.limit
    )


def _bench_key(cfg: Any) -> dict:
    return {
        "benchmark": cfg.eval.benchmark,
        "path": _prompts_digest(cfg),
        "rewrites": _rewrites_digest(cfg),
        "langs": list(cfg.eval.langs or cfg.langs.codes),
        "templates": plain(cfg.eval.templates),
        "exclude": plain(cfg.eval.exclude_ids),
        "limit": cfg.eval.limit,
        "seed": cfg.seed,
    }


def run_respond(
    cfg: Any, store: Store, models: Models, role: str, card: Any, adapter: Artifact | None, bench: Artifact | None = None
) -> Artifact:
    """Outputs of one system on the benchmark, alpaca_eval format, one file per language.

    `bench`: a benchmark artifact (m-AlpacaEval, the authors' release); None: built from config.
    """
    from xlexp.evaluate import benchmark

    inputs = ([adapter.key] if adapter else []) + ([bench.key] if bench else [])
    key = store.key("respond", {"model": card_key(card), "bench": _bench_key(cfg) if bench is None else "artifact"}, inputs)
    generator = f"{card.name}+{adapter.key}" if adapter else card.name

    def produce(work: Path, parts: Any) -> dict:
        model = models.role(role, card)
        counts = {}
        for code, rows in bar(eval_rows(cfg, bench).items(), desc=f"respond {card.name}", unit="lang"):
            convs = [[{"role": "user", "content": r["instruction"]}] for r in rows]
            comps = model.chat(convs, adapter=str(adapter.file("adapter")) if adapter else None)
            outputs = [c.text.strip() if c.ok else "" for c in comps]
            write_json(work / f"{code}.json", benchmark.to_alpaca_eval(rows, outputs, generator))
            counts[code] = {"rows": len(rows), "errors": sum(not c.ok for c in comps)}
        return {"langs": counts, "generator": generator}

    return store.build("respond", key, produce)[0]


def run_judge(
    cfg: Any, store: Store, models: Models, system: Artifact, reference: Artifact, labels: dict | None = None
) -> Artifact:
    import json

    from xlexp.evaluate import judge, langid, lc, metrics

    key = store.key(
        "judge",
        {"judge": card_key(cfg.judge), "both_orders": cfg.eval.both_orders, "prompt": digest(judge.PROMPT), "parser": judge.PARSER_VERSION, "seed": cfg.seed, "bootstrap": cfg.eval.bootstrap, "lc": lc.GLM_NAME},
        [system.key, reference.key],
    )

    def produce(work: Path, parts: Any) -> dict:
        model = models.role("judge", cfg.judge)
        sampling = model.sampling(temperature=0.0, max_tokens=4, logprobs=20)
        per_lang = {}
        for code in bar(eval_codes(cfg), desc="judge", unit="lang"):
            sys_rows = json.loads(system.file(f"{code}.json").read_text())
            ref_rows = json.loads(reference.file(f"{code}.json").read_text())
            plan = judge.plan(
                sys_rows, [r["output"] for r in sys_rows], [r["output"] for r in ref_rows], cfg.eval.both_orders, cfg.seed
            )
            comps = model.chat([p["conversation"] for p in plan], sampling)
            combined = judge.combine(plan, comps)
            write_jsonl(work / f"{code}.jsonl", combined)
            prefs = [r["preference"] for r in combined]
            outputs = [r["output"] for r in sys_rows]
            per_lang[code] = {
                "prefs": prefs,
                "outputs": outputs,
                "ref_outputs": [r["output"] for r in ref_rows],
                "n_malformed": sum(len(r.get("malformed", [])) for r in combined),
                "lang_fidelity": langid.fidelity(outputs, code),
            }
        summary = metrics.summarize(per_lang, n_boot=cfg.eval.bootstrap, seed=cfg.seed)
        write_json(work / "metrics.json", summary)
        malformed = sum(v["n_malformed"] for v in per_lang.values())
        return {"langs": len(per_lang), "rows": sum(len(v["prefs"]) for v in per_lang.values()), "malformed": malformed}

    # `system` labels the judged system in DONE, so a report can build tables from the store alone.
    return store.build("judge", key, produce, info={"system": labels} if labels else None)[0]


def run_evaluate(cfg: Any, store: Store, models: Models, adapter: Artifact | None) -> dict[str, Artifact]:
    bench = run_benchmark(cfg, store, models)
    arts = {"benchmark": bench} if bench else {}
    if cfg.eval.rtt:
        arts["respond"] = run_respond_rtt(cfg, store, models, cfg.model, adapter, bench)
    else:
        arts["respond"] = run_respond(cfg, store, models, "model", cfg.model, adapter, bench)
    arts["reference"] = run_respond(cfg, store, models, "reference", cfg.reference, None, bench)
    arts["judge"] = run_judge(cfg, store, models, arts["respond"], arts["reference"], system_labels(cfg, adapter))
    if cfg.eval.rubric:
        arts["rubric"] = run_rubric(cfg, store, models, arts["respond"])
    return arts


def system_labels(cfg: Any, adapter: Artifact | None) -> dict:
    """What a report needs to name a judged system: a row (model, data size, selection) and the
    comparison its win rates belong to (reference, judge, benchmark). Only what determines the
    judge artifact, so labels stay true when another experiment reuses it."""
    tuned = adapter is not None
    return {
        "model": cfg.model.name + (f" (RTT {cfg.eval.rtt})" if cfg.eval.rtt else ""),
        "model_id": cfg.model.model,
        "adapter": adapter.key if tuned else None,
        "data_size": parse_data_size(cfg.data_size) if tuned else None,
        "selection": cfg.generate.selection if tuned else None,
        "subset": ("random" if cfg.generate.selection == "random" else cfg.sft.subset) if tuned else None,
        "k": cfg.k if tuned else None,
        "reference": cfg.reference.name,
        "judge": cfg.judge.name,
        "benchmark": cfg.eval.benchmark,
        "langs": eval_codes(cfg),
    }


# ---------------------------------------------------------------- evaluate: benchmarks, baselines, rubric (issue 5)


def eval_codes(cfg: Any) -> list[str]:
    """Languages evaluated: eval.langs (else langs.codes), plus `eng` for m-AlpacaEval's English column."""
    codes = list(cfg.eval.langs or cfg.langs.codes)
    if cfg.eval.benchmark == "m_alpacaeval" and cfg.eval.english and "eng" not in codes:
        codes.append("eng")
    return codes


def _prompts_digest(cfg: Any) -> str | None:
    from xlexp.evaluate import sources

    path = sources.prompts_path(cfg.eval)
    return digest(path.read_bytes()) if path else None


def _rewrites_digest(cfg: Any) -> str | None:
    from xlexp.evaluate import benchmark

    rewrites = benchmark.read_rewrites_file(cfg.eval.rewrites)
    return digest({str(k): v for k, v in sorted(rewrites.items())}) if rewrites else None


def bench_rows(cfg: Any, bench: Artifact) -> dict[str, list[dict]]:
    return {code: bench.rows(f"{code}.jsonl") for code in eval_codes(cfg)}


def eval_rows(cfg: Any, bench: Artifact | None) -> dict[str, list[dict]]:
    """The prompts per language: from the benchmark artifact, else built from the config (XL-AlpacaEval)."""
    return benchmark_rows(cfg) if bench is None else bench_rows(cfg, bench)


def _limited(prompts: list[dict], cfg: Any) -> list[dict]:
    excluded = {int(i) for i in cfg.eval.exclude_ids}
    kept = [p for p in prompts if int(p["id"]) not in excluded]
    return kept[: cfg.eval.limit] if cfg.eval.limit is not None else kept


def run_mtranslate(cfg: Any, store: Store, models: Models, prompts: list[dict], lang: str) -> Artifact:
    """m-AlpacaEval prompts in one language, built once per (translator, prompts, language)."""
    from xlexp.evaluate import mbench

    card = cfg.eval.translator
    key = store.key(
        "mtranslate",
        {
            "translator": card_key(card),
            "prompt": digest(mbench.prompt("m_translate")),
            "parser": mbench.PARSER_VERSION,
            "max_tokens": cfg.eval.translate_max_tokens,
            "prompts": digest(prompts),
            "lang": lang,
        },
    )

    model = models.role("eval.translator", card)  # loaded lazily, on the first cache miss
    sampling = model.sampling(temperature=0.0, max_tokens=cfg.eval.translate_max_tokens)
    return _chat_stage(
        store,
        "mtranslate",
        key,
        prompts,
        model,
        lambda batch: mbench.build_prompts(batch, lang),
        lambda batch, comps: mbench.parse(batch, comps, lang),
        max(cfg.generate.batch_size * 4, 1),
        sampling,
    )


def run_benchmark(cfg: Any, store: Store, models: Models) -> Artifact | None:
    """The benchmark as an artifact for m-AlpacaEval and the authors' release; None for XL built from config."""
    from xlexp.evaluate import mbench, sources

    codes = eval_codes(cfg)
    if cfg.eval.benchmark == "m_alpacaeval":
        prompts = _limited(sources.english_prompts(cfg.eval), cfg)
        translated = {code: run_mtranslate(cfg, store, models, prompts, code) for code in codes if code != mbench.ENGLISH}
        key = store.key("benchmark", {"kind": "m_alpacaeval", "langs": codes, "prompts": digest(prompts)}, [a.key for a in translated.values()])

        def produce(work: Path, parts: Any) -> dict:
            counts = {}
            for code in codes:
                rows = mbench.english_rows(prompts) if code == mbench.ENGLISH else translated[code].rows()
                write_jsonl(work / f"{code}.jsonl", rows)
                counts[code] = {"rows": len(rows), "dropped": len(prompts) - len(rows)}
            return {"langs": counts}

        return store.build("benchmark", key, produce)[0]
    if cfg.eval.benchmark == "xl_alpacaeval_release":
        key = store.key("benchmark", {"kind": "release", "repo": cfg.eval.release_repo, "revision": cfg.eval.hub_revision, "langs": codes, "limit": cfg.eval.limit})

        def produce_release(work: Path, parts: Any) -> dict:
            per_lang = sources.load_release(cfg.eval, codes)
            for code, rows in per_lang.items():
                write_jsonl(work / f"{code}.jsonl", rows[: cfg.eval.limit] if cfg.eval.limit is not None else rows)
            return {"langs": {code: len(rows) for code, rows in per_lang.items()}}

        return store.build("benchmark", key, produce_release)[0]
    return None


def run_respond_rtt(cfg: Any, store: Store, models: Models, card: Any, adapter: Artifact | None, bench: Artifact | None) -> Artifact:
    """Reason-then-Translate outputs (Table 2), alpaca_eval format like any system's."""
    from xlexp.evaluate import benchmark, rtt

    mode = cfg.eval.rtt
    prompts = {"one_prompt": rtt.prompt("rtt_one_prompt")} if mode == "one_prompt" else {"translate": rtt.prompt("rtt_translate")}
    inputs = ([adapter.key] if adapter else []) + ([bench.key] if bench else [])
    key = store.key(
        "respond",
        {
            "model": card_key(card),
            "bench": _bench_key(cfg) if bench is None else "artifact",
            "rtt": mode,
            "rtt_max_tokens": cfg.eval.rtt_max_tokens,
            "prompts": digest(prompts),
        },
        inputs,
    )
    generator = f"{card.name}+rtt-{mode}" + (f"+{adapter.key}" if adapter else "")

    def produce(work: Path, parts: Any) -> dict:
        model = models.role("model", card)
        sampling = model.sampling(**({"max_tokens": cfg.eval.rtt_max_tokens} if cfg.eval.rtt_max_tokens else {}))
        lora = str(adapter.file("adapter")) if adapter else None
        counts = {}
        for code, rows in eval_rows(cfg, bench).items():
            if mode == "one_prompt":
                comps = model.chat([rtt.one_prompt(r) for r in rows], sampling, adapter=lora)
                results = [rtt.from_completion(c, code) for c in comps]
            else:
                answers = [rtt.from_completion(c) for c in model.chat([rtt.answer_prompt(r) for r in rows], sampling, adapter=lora)]
                todo = [i for i, (text, _) in enumerate(answers) if text]
                comps = model.chat([rtt.translate_prompt(answers[i][0], code) for i in todo], sampling, adapter=lora)
                results = list(answers)
                for i, c in zip(todo, comps, strict=True):
                    results[i] = rtt.from_completion(c)
            outputs = [text or "" for text, _ in results]
            write_json(work / f"{code}.json", benchmark.to_alpaca_eval(rows, outputs, generator))
            rejects = _reasons([{"reject": reason} for _, reason in results if reason])
            counts[code] = {"rows": len(rows), "empty_outputs": sum(not o for o in outputs), **rejects}
        return {"langs": counts, "generator": generator, "rtt": mode}

    return store.build("respond", key, produce)[0]


def run_rubric(cfg: Any, store: Store, models: Models, system: Artifact) -> Artifact:
    """Fine-grained 1-5 scores of a system's outputs by the judge role (Table 8)."""
    import json

    from xlexp.evaluate import rubric

    criteria = list(cfg.eval.rubric_criteria)
    key = store.key(
        "rubric",
        {"judge": card_key(cfg.judge), "criteria": criteria, "prompt": digest(rubric.prompt_text(criteria)), "parser": rubric.PARSER_VERSION},
        [system.key],
    )

    def produce(work: Path, parts: Any) -> dict:
        model = models.role("judge", cfg.judge)
        sampling = model.sampling(temperature=0.0, max_tokens=4, logprobs=20)
        all_rows = []
        for code in eval_codes(cfg):
            plan = rubric.plan(json.loads(system.file(f"{code}.json").read_text()), criteria)

            def run_batch(batch: list[dict]) -> list[dict]:
                return rubric.combine(batch, model.chat([p["conversation"] for p in batch], sampling))

            rows = parts.map_batches(code, plan, max(cfg.generate.batch_size * 4, 1), run_batch)
            write_jsonl(work / f"{code}.jsonl", rows)
            all_rows += rows
        summary = rubric.summarize(all_rows, criteria)
        write_json(work / "metrics.json", summary)
        malformed = [{"reject": r["reason"]} for r in all_rows if r["score"] is None]
        return {"scored": len(all_rows) - len(malformed), "malformed": len(malformed), **_reasons(malformed)}

    return store.build("rubric", key, produce)[0]

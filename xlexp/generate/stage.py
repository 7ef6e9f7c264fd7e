"""Generation's store shell (paper section 4): seed -> reverse -> refine -> translate -> qe ->
select. Each function loads its inputs from the store, calls model roles through the pure cores
of this package and writes one artifact keyed by the config slice it reads and its inputs' keys.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xlexp.config import Config
from xlexp.generate import qe, refine, reverse, seed, segment, select, translate
from xlexp.generate import stats as gen_stats
from xlexp.generate.config import translator_cards
from xlexp.parallel import batches_in_flight, can_run_together, together
from xlexp.roles import Models, card_key, chat_stage, plain, reasons, split_rejects
from xlexp.store import Artifact, Store, digest, write_json, write_jsonl


def run_seed(cfg: Config, store: Store) -> Artifact:
    key = store.key(
        "seed",
        {
            "seed_data": plain(cfg.seed_data),
            "seed": cfg.seed,
            "files": seed.fingerprint(cfg.seed_data),
        },
    )

    def produce(work: Path, parts: Any) -> dict:
        rows, counts = seed.take(seed.stream(cfg.seed_data, cfg.seed), cfg.seed_data)
        write_jsonl(work / "rows.jsonl", rows)
        rejected = sum(counts.get(reason, 0) for reason in seed.REJECT_REASONS)
        return {"in": counts["read"], "rejects": rejected, **counts}  # every row read accounted

    return store.build("seed", key, produce)[0]


def run_reverse(cfg: Config, store: Store, models: Models, seeds: Artifact) -> Artifact:
    key = store.key(
        "reverse",
        {"teacher": card_key(cfg.teacher), "prompt": digest(reverse.prompt("reverse"))},
        [seeds.key],
    )
    model = models.role("teacher", cfg.teacher)
    return chat_stage(
        store,
        "reverse",
        key,
        seeds.rows(),
        model,
        reverse.build_prompts,
        reverse.parse,
        cfg.generate.batch_size,
    )


def run_refine(cfg: Config, store: Store, models: Models, pairs: Artifact) -> Artifact:
    key = store.key(
        "refine",
        {"teacher": card_key(cfg.teacher), "prompt": digest(refine.prompt("refine"))},
        [pairs.key],
    )
    model = models.role("teacher", cfg.teacher)
    return chat_stage(
        store,
        "refine",
        key,
        pairs.rows(),
        model,
        refine.build_prompts,
        refine.parse,
        cfg.generate.batch_size,
    )


def run_translate(cfg: Config, store: Store, models: Models, pairs: Artifact) -> Artifact:
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
            pairs.rows(),
            list(cfg.langs.codes),
            cfg.langs.assign,
            list(cfg.generate.suffix_templates),
            cfg.seed,
        )
        roles = {name: models.role(f"translator:{name}", card) for name, card in cards}
        parallel = can_run_together(card for _, card in cards)  # the k translators at once
        size = max(cfg.generate.batch_size * 4, 1)

        def run_batch(batch: list[tuple[str, str]]) -> list[dict]:
            prompts = translate.build_prompts(batch)
            comps = together(
                {name: (lambda m=m: m.chat(prompts)) for name, m in roles.items()}, parallel
            )
            return [
                {name: list(translate.parse_one(src, comps[name][j])) for name in roles}
                for j, (src, _) in enumerate(batch)
            ]

        job_list: list[tuple[str, str]] = []

        def split_as_needed() -> Iterator[tuple[str, str]]:
            # Sentences are split while the first batches are out (pysbd takes ms a passage).
            for job in translate.stream_jobs(items, segment.make_splitter(cfg.splitter)):
                job_list.append(job)
                yield job

        # Every translator gets each batch; parts bound the loss of a killed job.
        workers = max(batches_in_flight(card, size) for _, card in cards)
        out = parts.map_batches(
            "jobs", split_as_needed(), size, run_batch, desc="translate", workers=workers
        )
        results = {
            name: {job: (r[name][0], r[name][1]) for job, r in zip(job_list, out, strict=True)}
            for name in roles
        }
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
        return {
            "in": len(items),
            "out": len(rows),
            "items": len(rows),
            "sentence_jobs": len(job_list),
            "translations": len(job_list) * len(cards),
            "rejected_translations": rejects,
        }

    return store.build("translate", key, produce)[0]


def run_qe(cfg: Config, store: Store, models: Models, translations: Artifact) -> Artifact:
    scorer_cls = qe.SCORERS.get(cfg.qe.kind, "qe.kind")
    key = store.key("qe", scorer_cls.key_info(cfg.qe), [translations.key])

    def produce(work: Path, parts: Any) -> dict:
        triples = qe.unique_triples(translations.rows())
        scorer = scorer_cls.from_config(cfg.qe, models)

        def run_batch(batch: list[list[str]]) -> list[dict]:
            return scorer.score([tuple(t) for t in batch])

        size = max(cfg.generate.batch_size * 4, 1)
        workers = batches_in_flight(cfg.qe.llm, size) if cfg.qe.kind == "llm" else 1
        out = parts.map_batches(
            "scores",
            [list(t) for t in triples],
            size,
            run_batch,
            desc=f"qe {cfg.qe.kind}",
            workers=workers,
        )
        rows = [
            {"key": qe.triple_key(*t), "source": t[0], "translation": t[1], "lang": t[2], **r}
            for t, r in zip(triples, out, strict=True)
        ]
        write_jsonl(work / "rows.jsonl", rows)
        failed = [r for r in rows if r["score"] is None]
        return {
            "in": len(triples),
            "out": len(rows) - len(failed),
            "scored_pairs": len(rows),
            "failed": len(failed),
            **reasons([{"reject": r["reject"]} for r in failed]),
        }

    return store.build("qe", key, produce)[0]


def run_select(
    cfg: Config,
    store: Store,
    translations: Artifact,
    scores: Artifact,
    upstream: dict[str, Artifact] | None = None,
) -> Artifact:
    """The SFT dataset, plus `stats.json` (per-stage counts from `upstream`'s artifacts, QE by
    language and translator, translator wins)."""
    names = [name for name, _ in translator_cards(cfg)]
    key = store.key(
        "select",
        {
            "selection": cfg.generate.selection,
            "keep": cfg.generate.keep,
            "seed": cfg.seed,
            "translators": names,
        },
        [translations.key, scores.key],
        version=2,  # 2: stats.json holds the whole generation's stats
    )

    def produce(work: Path, parts: Any) -> dict:
        score_of = {r["key"]: r["score"] for r in scores.rows()}
        items = translations.rows()
        chosen = [select.choose(item, score_of, names, cfg.generate.selection) for item in items]
        ok, rejects = split_rejects(chosen)
        kept = select.filter_rows(ok, cfg.generate.keep, cfg.generate.selection, cfg.seed)
        write_jsonl(work / "dataset.jsonl", kept)
        write_jsonl(work / "rejects.jsonl", rejects)
        stage_counts = {name: art.meta.get("counts", {}) for name, art in (upstream or {}).items()}
        stats = gen_stats.generation_stats(
            stage_counts, items, score_of, chosen, kept, names
        )
        write_json(work / "stats.json", stats)
        return {
            "in": len(items),
            "out": len(kept),
            "rejects": len(rejects),
            "filtered": len(ok) - len(kept),  # the bottom share by QE (generate.keep)
            "rows": len(kept),
            "before_filter": len(ok),
        }

    return store.build("select", key, produce)[0]


def run_generate(
    cfg: Config, store: Store, models: Models, arts: dict[str, Artifact] | None = None
) -> dict[str, Artifact]:
    """The generation chain; with generate.target_rows, rerun on more (fresh) seeds until the
    filter keeps the target (the earlier seeds' model calls are cache hits). Each artifact goes
    into `arts` as soon as it is made."""
    import copy

    from xlexp.errors import ConfigError
    from xlexp.generate import topup
    from xlexp.sft.config import parse_data_size

    made: dict[str, Artifact] = {} if arts is None else arts

    def chain(n_seeds: int) -> dict[str, Artifact]:
        round_cfg = cfg
        if n_seeds != cfg.seed_data.n:
            round_cfg = copy.deepcopy(cfg)
            round_cfg.seed_data.n = n_seeds
        return _generate_chain(round_cfg, store, models, made)

    target = (
        parse_data_size(cfg.generate.target_rows) if cfg.generate.target_rows is not None else None
    )
    try:
        return topup.generate_to_target(
            chain, int(cfg.seed_data.n), target, float(cfg.generate.keep)
        )
    except ConfigError:  # raised inside the chain (a seed source that gives nothing): as is
        raise
    except ValueError as e:
        raise ConfigError(
            "generate.target_rows", str(e).removeprefix("generate.target_rows: ")
        ) from None


def _generate_chain(
    cfg: Config, store: Store, models: Models, arts: dict[str, Artifact]
) -> dict[str, Artifact]:
    arts["seed"] = run_seed(cfg, store)
    arts["reverse"] = run_reverse(cfg, store, models, arts["seed"])
    arts["refine"] = run_refine(cfg, store, models, arts["reverse"])
    arts["translate"] = run_translate(cfg, store, models, arts["refine"])
    arts["qe"] = run_qe(cfg, store, models, arts["translate"])
    arts["select"] = run_select(cfg, store, arts["translate"], arts["qe"], upstream=arts)
    return arts


def generation_stats(arts: dict[str, Artifact]) -> dict:
    """The generate run's stats (written beside the select artifact), for the summary and W&B."""
    path = arts["select"].file("stats.json")
    return json.loads(path.read_text()) if path.exists() else {}

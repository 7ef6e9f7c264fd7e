"""Generation's store shell (paper section 4): seed -> reverse -> refine -> translate -> qe ->
select. Each function loads its inputs from the store, calls model roles through the pure cores
of this package and writes one artifact keyed by the config slice it reads and its inputs' keys.
"""

from __future__ import annotations

import copy
import heapq
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xlexp.config import Config
from xlexp.generate import qe, refine, reverse, seed, segment, select, translate
from xlexp.generate import stats as gen_stats
from xlexp.generate.config import translator_cards
from xlexp.parallel import batches_in_flight, can_run_together, together
from xlexp.roles import Models, card_key, chat_stage, plain, reasons
from xlexp.store import Artifact, Store, digest, iter_jsonl, write_json, write_jsonl


def run_seed(cfg: Config, store: Store, share: seed.Share | None = None) -> Artifact:
    """The seed passages (all of them, or one generation shard's `share`)."""
    share = share or seed.Share()
    config = {
        "seed_data": plain(cfg.seed_data),
        "seed": cfg.seed,
        "files": seed.fingerprint(cfg.seed_data),
    }
    if not share.whole:
        config["share"] = {"of": share.of, "index": share.index, "start": share.start}
    key = store.key("seed", config, version=2)  # 2: rows carry their stream position (`order`)

    def produce(work: Path, parts: Any) -> dict:
        rows, counts = seed.take(seed.stream(cfg.seed_data, cfg.seed), cfg.seed_data, share)
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


def run_translate(
    cfg: Config, store: Store, models: Models, pairs: Artifact, seeds: Artifact
) -> Artifact:
    """Each pair's response in its target language(s), sentence by sentence, by every
    translator; a pair's language follows its seed passage's stream position (`seeds`)."""
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
        [pairs.key, seeds.key],
        version=2,  # 2: languages by seed position, templates seeded per item
    )

    def produce(work: Path, parts: Any) -> dict:
        items = translate.assign_languages(
            pairs.rows(),
            list(cfg.langs.codes),
            cfg.langs.assign,
            list(cfg.generate.suffix_templates),
            cfg.seed,
            {r["id"]: r["order"] for r in iter_jsonl(seeds.file("rows.jsonl"))},
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


def run_select(cfg: Config, store: Store, pieces: list[dict[str, Artifact]]) -> Artifact:
    """The SFT dataset from the translations and QE scores of every piece of the generation (one
    piece unsharded; each generation shard and top-up round is one), plus `stats.json` (the
    pieces' stage counts added up, QE by language and translator, translator wins).

    The filter is global (paper 4.4: the bottom share of all passages), but rows are streamed:
    a piece's rows are in memory only while that piece is read, so the merge of many shards
    needs the memory of one shard plus an (id, QE) pair per row."""
    names = [name for name, _ in translator_cards(cfg)]
    key = store.key(
        "select",
        {
            "selection": cfg.generate.selection,
            "keep": cfg.generate.keep,
            "seed": cfg.seed,
            "translators": names,
        },
        [art.key for piece in pieces for art in (piece["translate"], piece["qe"])],
        version=3,  # 3: rows in their rank order however many pieces; rejects by id
    )

    def produce(work: Path, parts: Any) -> dict:
        acc = gen_stats.StatsAccumulator(names)
        scored: list[tuple[str, float]] = []
        for i, piece in enumerate(pieces):
            score_of = {r["key"]: r["score"] for r in iter_jsonl(piece["qe"].file("rows.jsonl"))}
            ok, rejects = [], []
            for item in iter_jsonl(piece["translate"].file("rows.jsonl")):
                acc.add_translation(item, score_of)
                row = select.choose(item, score_of, names, cfg.generate.selection)
                acc.add_chosen(row)
                (rejects if "reject" in row else ok).append(row)
            scored += [(row["id"], row["qe_score"]) for row in ok]
            write_jsonl(work / f".ok-{i}.jsonl", ok)
            write_jsonl(work / f".rejects-{i}.jsonl", sorted(rejects, key=lambda r: r["id"]))
        ranks = select.kept_ranks(scored, cfg.generate.keep, cfg.generate.selection, cfg.seed)
        for i in range(len(pieces)):
            kept = [
                {**row, "rank": ranks[row["id"]]}
                for row in iter_jsonl(work / f".ok-{i}.jsonl")
                if row["id"] in ranks
            ]
            for row in kept:
                acc.add_kept(row)
            write_jsonl(work / f".kept-{i}.jsonl", sorted(kept, key=lambda r: r["rank"]))
            (work / f".ok-{i}.jsonl").unlink()
        _merge_files(work, "kept", len(pieces), "rank", work / "dataset.jsonl")
        _merge_files(work, "rejects", len(pieces), "id", work / "rejects.jsonl")
        stage_counts = gen_stats.merged_counts(
            [{name: art.meta.get("counts", {}) for name, art in piece.items()} for piece in pieces]
        )
        write_json(work / "stats.json", acc.result(stage_counts))
        return {
            "in": acc.chosen,
            "out": acc.kept,
            "rejects": acc.chosen - acc.ok,
            "filtered": acc.ok - acc.kept,  # the bottom share by QE (generate.keep)
            "rows": acc.kept,
            "before_filter": acc.ok,
            **({"pieces": len(pieces)} if len(pieces) > 1 else {}),
        }

    return store.build("select", key, produce)[0]


def _merge_files(work: Path, name: str, n: int, field: str, out: Path) -> None:
    """The files `.{name}-0..n-1.jsonl`, each sorted by `field`, as one sorted file (a k-way
    merge: one row of each in memory); the pieces are removed."""
    paths = [work / f".{name}-{i}.jsonl" for i in range(n)]
    write_jsonl(out, heapq.merge(*(iter_jsonl(p) for p in paths), key=lambda r: r[field]))
    for path in paths:
        path.unlink()


def run_piece(
    cfg: Config, store: Store, models: Models, share: seed.Share, arts: dict[str, Artifact]
) -> dict[str, Artifact]:
    """seed -> reverse -> refine -> translate -> qe for one piece of the seed set; each artifact
    goes into `arts` as soon as it is made."""
    arts["seed"] = run_seed(cfg, store, share)
    arts["reverse"] = run_reverse(cfg, store, models, arts["seed"])
    arts["refine"] = run_refine(cfg, store, models, arts["reverse"])
    arts["translate"] = run_translate(cfg, store, models, arts["refine"], arts["seed"])
    arts["qe"] = run_qe(cfg, store, models, arts["translate"])
    return arts


def run_generate(
    cfg: Config, store: Store, models: Models, arts: dict[str, Artifact] | None = None
) -> dict[str, Artifact]:
    """The generation. With `generate.shard`, one shard's pieces up to QE (`arts`: its
    artifacts). Else the dataset: every shard's pieces (with `generate.shards` > 1 they must be
    finished: a missing one stops the run before any work, naming it), then `select` over all
    of them; with generate.target_rows, more rounds of fresh seeds (each one more piece; the
    earlier pieces are reused as they are) until the filter keeps the target. `arts` gets each
    artifact as soon as it is made: unsharded, the piece's and `select`; merged, `select`."""
    from xlexp.errors import ConfigError
    from xlexp.generate import shards, topup
    from xlexp.sft.config import parse_data_size

    made: dict[str, Artifact] = {} if arts is None else arts
    gen = cfg.generate
    if gen.shard is not None:
        return run_piece(cfg, store, models, seed.Share(gen.shards, gen.shard), made)
    if gen.shards > 1 and not store.read_only:  # (read only: the plan's probe, which says)
        shards.check_finished(cfg, store, run_piece)
    first = [
        run_piece(cfg, store, models, share, made if gen.shards == 1 else {})
        for share in shards.shares(cfg)
    ]
    pieces = list(first)

    def chain(n_seeds: int) -> dict[str, Artifact]:
        if n_seeds > int(cfg.seed_data.n):  # a top-up round: its fresh seeds, one more piece
            counts = pieces[-1]["seed"].meta.get("counts", {})
            start = int(counts.get("out", 0)) + int(counts.get("elsewhere", 0))
            round_cfg = copy.deepcopy(cfg)
            round_cfg.seed_data.n = n_seeds
            pieces.append(run_piece(round_cfg, store, models, seed.Share(start=start), {}))
        made["select"] = run_select(cfg, store, pieces)
        return {"seed": pieces[-1]["seed"], "select": made["select"]}

    target = parse_data_size(gen.target_rows) if gen.target_rows is not None else None
    try:
        topup.generate_to_target(chain, int(cfg.seed_data.n), target, float(gen.keep))
    except ConfigError:  # raised inside the chain (a seed source that gives nothing): as is
        raise
    except ValueError as e:
        raise ConfigError(
            "generate.target_rows", str(e).removeprefix("generate.target_rows: ")
        ) from None
    return made


def generation_stats(arts: dict[str, Artifact]) -> dict:
    """The generate run's stats (written beside the select artifact), for the summary and W&B."""
    if "select" not in arts:  # one shard's run: its dataset is made by the merge
        return {}
    path = arts["select"].file("stats.json")
    return json.loads(path.read_text()) if path.exists() else {}

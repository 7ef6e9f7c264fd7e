"""The prompts each evaluated language gets, per `eval.benchmark`.

XL-AlpacaEval (and the demo set) is built from the config on the fly: cheap and deterministic,
so its config slice is part of each respond key. m-AlpacaEval (prompts machine-translated by
`eval.translator`) and the authors' release are stored as a `prompt_set` artifact whose key
the respond stage takes as an input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xlexp.evaluate import build_xl, mbench, sources
from xlexp.evaluate.config import eval_codes
from xlexp.parallel import is_remote, together
from xlexp.roles import Models, card_key, chat_stage, plain
from xlexp.store import Artifact, Store, digest, write_jsonl


def xl_rows(cfg: Any) -> dict[str, list[dict]]:
    """XL-AlpacaEval rows per language, built from the English prompts the config names."""
    prompts = sources.english_prompts(cfg.eval)
    rewrites = build_xl.check_rewrites(prompts, build_xl.read_rewrites_file(cfg.eval.rewrites))
    codes = list(cfg.eval.langs or cfg.langs.codes)
    return build_xl.build_xl(
        prompts, codes, list(cfg.eval.templates), exclude_ids=list(cfg.eval.exclude_ids), rewrites=rewrites, seed=cfg.seed, limit=cfg.eval.limit
    )


def xl_key(cfg: Any) -> dict:
    """What of the config determines `xl_rows` (part of each respond key)."""
    path = sources.prompts_path(cfg.eval)
    rewrites = build_xl.read_rewrites_file(cfg.eval.rewrites)
    return {
        "benchmark": cfg.eval.benchmark,
        "path": digest(path.read_bytes()) if path else None,
        "rewrites": digest({str(k): v for k, v in sorted(rewrites.items())}) if rewrites else None,
        "langs": list(cfg.eval.langs or cfg.langs.codes),
        "templates": plain(cfg.eval.templates),
        "exclude": plain(cfg.eval.exclude_ids),
        "limit": cfg.eval.limit,
        "seed": cfg.seed,
    }


def eval_rows(cfg: Any, prompt_set: Artifact | None) -> dict[str, list[dict]]:
    """The prompts per language: from the prompt-set artifact, else built from the config."""
    if prompt_set is None:
        return xl_rows(cfg)
    return {code: prompt_set.rows(f"{code}.jsonl") for code in eval_codes(cfg)}


def run_mtranslate(cfg: Any, store: Store, models: Models, prompts: list[dict], lang: str) -> Artifact:
    """m-AlpacaEval prompts in one language, built once per (translator, prompts, language)."""
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
    return chat_stage(
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


def _m_alpacaeval(cfg: Any, store: Store, models: Models) -> Artifact:
    codes = eval_codes(cfg)
    prompts = build_xl.select_prompts(sources.english_prompts(cfg.eval), cfg.eval.exclude_ids, cfg.eval.limit)
    # One artifact per language, all in flight together when the translator is behind a server.
    tasks = {code: (lambda code=code: run_mtranslate(cfg, store, models, prompts, code)) for code in codes if code != mbench.ENGLISH}
    translated = together(tasks, is_remote(cfg.eval.translator))
    key = store.key("prompt_set", {"kind": "m_alpacaeval", "langs": codes, "prompts": digest(prompts)}, [a.key for a in translated.values()])

    def produce(work: Path, parts: Any) -> dict:
        counts = {}
        for code in codes:
            rows = mbench.english_rows(prompts) if code == mbench.ENGLISH else translated[code].rows()
            write_jsonl(work / f"{code}.jsonl", rows)
            counts[code] = {"rows": len(rows), "dropped": len(prompts) - len(rows)}
        return {"langs": counts}

    return store.build("prompt_set", key, produce)[0]


def _release(cfg: Any, store: Store, models: Models) -> Artifact:
    codes = eval_codes(cfg)
    key = store.key("prompt_set", {"kind": "release", "repo": cfg.eval.release_repo, "revision": cfg.eval.hub_revision, "langs": codes, "limit": cfg.eval.limit})

    def produce(work: Path, parts: Any) -> dict:
        per_lang = sources.load_release(cfg.eval, codes)
        for code, rows in per_lang.items():
            write_jsonl(work / f"{code}.jsonl", rows[: cfg.eval.limit] if cfg.eval.limit is not None else rows)
        return {"langs": {code: len(rows) for code, rows in per_lang.items()}}

    return store.build("prompt_set", key, produce)[0]


# eval.benchmark -> the builder of its stored prompt set; the others are built from the config.
STORED = {"m_alpacaeval": _m_alpacaeval, "xl_alpacaeval_release": _release}


def run_prompt_set(cfg: Any, store: Store, models: Models) -> Artifact | None:
    """The stored prompt set of `eval.benchmark`; None when prompts are built from the config."""
    build = STORED.get(cfg.eval.benchmark)
    return build(cfg, store, models) if build else None

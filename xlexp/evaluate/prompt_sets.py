"""The built-in benchmarks (entries of benchmarks.BENCHMARKS) and the prompts each evaluated
language gets.

XL-AlpacaEval (and the demo set) is built from the config on the fly: cheap and deterministic,
so its config slice is part of each respond key. m-AlpacaEval (prompts machine-translated by
`eval.translator`) and the authors' release are stored as a `prompt_set` artifact whose key
the respond stage takes as an input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xlexp import langs
from xlexp.config import Config
from xlexp.errors import ConfigError
from xlexp.evaluate import build_xl, mbench, sources
from xlexp.evaluate.benchmarks import Benchmark, benchmark
from xlexp.evaluate.config import eval_codes
from xlexp.parallel import is_remote, together
from xlexp.roles import Models, card_key, chat_stage, plain
from xlexp.stage import RoleCount, signature
from xlexp.store import Artifact, Store, digest, write_jsonl


def xl_rows(cfg: Config) -> dict[str, list[dict]]:
    """XL-AlpacaEval rows per language, built from the English prompts the config names."""
    prompts = sources.english_prompts(cfg.eval)
    rewrites = build_xl.check_rewrites(prompts, build_xl.read_rewrites_file(cfg.eval.rewrites))
    codes = list(cfg.eval.langs or cfg.langs.codes)
    return build_xl.build_xl(
        prompts,
        codes,
        list(cfg.eval.templates),
        exclude_ids=list(cfg.eval.exclude_ids),
        rewrites=rewrites,
        seed=cfg.seed,
        limit=cfg.eval.limit,
    )


def xl_key(cfg: Config) -> dict:
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


def eval_rows(cfg: Config, prompt_set: Artifact | None) -> dict[str, list[dict]]:
    """The prompts per language: from the prompt-set artifact, else built from the config."""
    if prompt_set is None:
        return benchmark(cfg).rows(cfg)
    return {code: prompt_set.rows(f"{code}.jsonl") for code in eval_codes(cfg)}


def bench_key(cfg: Config, prompt_set: Artifact | None) -> Any:
    """The benchmark's part of a respond key: its config slice when built on the fly (the
    stored prompt set's key is an input of the respond key instead)."""
    return benchmark(cfg).key(cfg) if prompt_set is None else "artifact"


def run_mtranslate(
    cfg: Config, store: Store, models: Models, prompts: list[dict], lang: str
) -> Artifact:
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


def asking_for(prompts: list[dict], rewrites: dict[int, str], code: str) -> list[dict]:
    """The English prompts as they go to the translator into `code`: one that asks for an English
    answer (eval.rewrites, appendix A.1) asks for the target language, so its translation never
    asks for English."""
    name = langs.name(code)
    return [
        {**p, "instruction": rewrites[int(p["id"])].replace(build_xl.PLACEHOLDER, name)}
        if int(p["id"]) in rewrites
        else p
        for p in prompts
    ]


def _m_alpacaeval(cfg: Config, store: Store, models: Models) -> Artifact:
    codes = eval_codes(cfg)
    prompts = build_xl.select_prompts(
        sources.english_prompts(cfg.eval), cfg.eval.exclude_ids, cfg.eval.limit
    )
    rewrites = build_xl.check_rewrites(prompts, build_xl.read_rewrites_file(cfg.eval.rewrites))
    # One artifact per language, all in flight together when the translator is behind a server.
    tasks = {
        code: (
            lambda code=code: run_mtranslate(
                cfg, store, models, asking_for(prompts, rewrites, code), code
            )
        )
        for code in codes
        if code != mbench.ENGLISH
    }
    translated = together(tasks, is_remote(cfg.eval.translator))
    key = store.key(
        "prompt_set",
        {"kind": "m_alpacaeval", "langs": codes, "prompts": digest(prompts)},
        [a.key for a in translated.values()],
    )

    def produce(work: Path, parts: Any) -> dict:
        counts = {}
        for code in codes:
            rows = (
                mbench.english_rows(prompts) if code == mbench.ENGLISH else translated[code].rows()
            )
            write_jsonl(work / f"{code}.jsonl", rows)
            counts[code] = {"rows": len(rows), "dropped": len(prompts) - len(rows)}
        return {"langs": counts}

    return store.build("prompt_set", key, produce)[0]


def _release(cfg: Config, store: Store, models: Models) -> Artifact:
    codes = eval_codes(cfg)
    key = store.key(
        "prompt_set",
        {
            "kind": "release",
            "repo": cfg.eval.release_repo,
            "revision": cfg.eval.hub_revision,
            "langs": codes,
            "limit": cfg.eval.limit,
        },
    )

    def produce(work: Path, parts: Any) -> dict:
        per_lang = sources.load_release(cfg.eval, codes)
        for code, rows in per_lang.items():
            write_jsonl(
                work / f"{code}.jsonl",
                rows[: cfg.eval.limit] if cfg.eval.limit is not None else rows,
            )
        return {"langs": {code: len(rows) for code, rows in per_lang.items()}}

    return store.build("prompt_set", key, produce)[0]


def run_prompt_set(cfg: Config, store: Store, models: Models) -> Artifact | None:
    """The stored prompt set of `eval.benchmark`; None when prompts are built from the config."""
    bench = benchmark(cfg)
    return bench.build(cfg, store, models) if bench.stored else None


class XLAlpacaEval(Benchmark):
    """XL-AlpacaEval built from an AlpacaEval prompt file (eval.path, else the hub's)."""

    name = "xl_alpacaeval"
    rewrites = True  # applies eval.rewrites (appendix A.1)

    def check(self, ev: Any, runs: bool) -> None:
        if not runs:
            return
        if self.rewrites:
            try:
                build_xl.read_rewrites_file(ev.rewrites)
            except (OSError, ValueError) as e:
                raise ConfigError("eval.rewrites", str(e)) from None
        sources.prompts_path(ev)  # ConfigError naming eval.path or eval.hub_repo

    def prompts_per_lang(self, cfg: Config) -> tuple[int, bool]:
        """Exact when the English prompts are local."""
        try:
            english = sources.english_prompts(cfg.eval)
        except Exception:  # noqa: BLE001 (the hub file, offline or not fetched yet: an estimate)
            return super().prompts_per_lang(cfg)
        return len(build_xl.select_prompts(english, cfg.eval.exclude_ids, cfg.eval.limit)), True

    def rows(self, cfg: Config) -> dict[str, list[dict]]:
        return xl_rows(cfg)

    def key(self, cfg: Config) -> Any:
        return xl_key(cfg)


class Demo(XLAlpacaEval):
    """The shipped demo prompts, made cross-lingual like XL-AlpacaEval (the tiny profile's)."""

    name = "demo"
    prompts = "demo"


class MAlpacaEval(XLAlpacaEval):
    """m-AlpacaEval (section 6): the XL-AlpacaEval English set machine translated by
    eval.translator, plus the English column; stored, a translation costs a call."""

    name = "m_alpacaeval"
    stored = True
    # eval.rewrites apply before translation: "Answer in English." goes out as "Answer in German."
    rewrites = True

    def codes(self, cfg: Config) -> list[str]:
        codes = super().codes(cfg)
        if cfg.eval.english and mbench.ENGLISH not in codes:
            codes.append(mbench.ENGLISH)  # the English column (Table 3)
        return codes

    def roles(self, cfg: Config) -> dict[str, Any]:
        return {"eval.translator": cfg.eval.translator}

    def expected_calls(self, cfg: Config, rows: int, exact: bool, shared: str) -> list[Any]:
        codes = self.codes(cfg)
        translated = rows - (rows // len(codes) if mbench.ENGLISH in codes else 0)
        card = cfg.eval.translator
        return [RoleCount("prompt_set", "eval.translator", card, translated, exact,
                          shared=signature(card, shared), measured_kind="mtranslate")]

    def build(self, cfg: Config, store: Any, models: Any) -> Artifact:
        return _m_alpacaeval(cfg, store, models)


class Release(Benchmark):
    """The XL-AlpacaEval authors' release, loaded by name when the stage runs (datasets caches
    it): its size is not known before."""

    name = "xl_alpacaeval_release"
    stored = True

    def build(self, cfg: Config, store: Any, models: Any) -> Artifact:
        return _release(cfg, store, models)


DEMO, XL_ALPACAEVAL, M_ALPACAEVAL, RELEASE = Demo(), XLAlpacaEval(), MAlpacaEval(), Release()

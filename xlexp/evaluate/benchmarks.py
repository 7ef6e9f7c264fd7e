"""Benchmarks: the prompt sets `eval.benchmark` names, found in `BENCHMARKS`.

A benchmark declares what it needs (its languages, model roles beyond the model, reference and
judge, its checks before any model loads, the calls it costs) and builds its prompts: either
from the config on the fly (`rows`, `key`: cheap and deterministic, the config slice part of
each respond key) or as a stored `prompt_set` artifact (`stored`, `build`: its key an input of
each respond key). The built-in ones live in prompt_sets.py and are imported when first asked
for; adding one is a class and one `register` line.
"""

from __future__ import annotations

from typing import Any

from xlexp.evaluate.build_xl import ALPACA_EVAL_SIZE
from xlexp.registry import Registry


class Benchmark:
    """A prompt set evaluate can run on; the defaults fit a benchmark in `langs`' languages
    that calls no model of its own."""

    name: str = ""
    stored: bool = False  # built as a `prompt_set` artifact by `build`; else `rows` on the fly
    prompts: str | None = None  # "demo": always the shipped English prompts; None: the config's

    def codes(self, cfg: Any) -> list[str]:
        """The languages evaluated (a file per language in every evaluation artifact)."""
        return list(cfg.eval.langs or cfg.langs.codes)

    def roles(self, cfg: Any) -> dict[str, Any]:
        """Model roles it calls beyond the model, the reference and the judge, by config path."""
        return {}

    def check(self, ev: Any, runs: bool) -> None:
        """Its own inputs, before any model loads (with `runs`: resolved now); a ConfigError
        names the key to change."""

    def prompts_per_lang(self, cfg: Any) -> tuple[int, bool]:
        """Prompts per language for the cost plan, and whether that is exact (default: AlpacaEval's
        size or eval.limit, an estimate)."""
        limit = cfg.eval.limit
        return (int(limit) if limit is not None else ALPACA_EVAL_SIZE), False

    def expected_calls(self, cfg: Any, rows: int, exact: bool, shared: str) -> list[Any]:
        """The cost plan's RoleCounts of building the prompts (`rows`: prompts x languages;
        `shared`: the benchmark's signature)."""
        return []

    def rows(self, cfg: Any) -> dict[str, list[dict]]:
        """Prompts per language `{code: [{id, lang, instruction, dataset, ...}]}` (not stored)."""
        raise NotImplementedError(f"benchmark {self.name!r} builds no prompts from the config")

    def key(self, cfg: Any) -> Any:
        """What of the config determines `rows` (part of each respond key; not stored)."""
        raise NotImplementedError(f"benchmark {self.name!r} builds no prompts from the config")

    def build(self, cfg: Any, store: Any, models: Any) -> Any:
        """The stored `prompt_set` artifact: one `<code>.jsonl` of rows per language (stored)."""
        return None


BENCHMARKS: Registry[Benchmark] = Registry("benchmark")
BENCHMARKS.register("demo", "xlexp.evaluate.prompt_sets:DEMO")
BENCHMARKS.register("xl_alpacaeval", "xlexp.evaluate.prompt_sets:XL_ALPACAEVAL")
BENCHMARKS.register("xl_alpacaeval_release", "xlexp.evaluate.prompt_sets:RELEASE")
BENCHMARKS.register("m_alpacaeval", "xlexp.evaluate.prompt_sets:M_ALPACAEVAL")


def benchmark(cfg: Any) -> Benchmark:
    """The benchmark `eval.benchmark` names; a ConfigError naming that key when none is."""
    return BENCHMARKS.get(cfg.eval.benchmark, "eval.benchmark")

"""The names a run logged to W&B, known without asking W&B: from a run's results.json through
the same functions the tracker names its values with (`xlexp.track`, `generate.stats.flatten`),
or read back from the names W&B holds. The dashboard's panels are made from these names and the
metric declarations, so a metric added to `METRICS` gets its panels without a line here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from xlexp.evaluate.metrics import Column, declared_columns
from xlexp.generate.stats import flatten
from xlexp.report.tables import lang_order
from xlexp.track import DATA_SIZE, GRID_TABLE, QE_PREFIX, SAMPLES_TABLE, eval_values

AVG = "avg"
FUNNEL_PREFIX = "generate/stats/stages"  # generate/stats/stages/<stage>/<in|out|rejects>


def qe_key(lang: str) -> str:
    return f"{QE_PREFIX}/{lang}"


def rubric_metrics(rubric: dict) -> dict:
    """Rubric scores as the evaluate stage logs them: `rubric_<criterion>` per language."""
    return {lang: {f"rubric_{k}": v for k, v in row.items()} for lang, row in rubric.items()}


def grid_columns(summary: dict) -> list[Column]:
    return declared_columns(summary.get("columns") or None)


def grid_table(summary: dict) -> tuple[list[str], list[list]]:
    """Table 6 as rows of a W&B table: the judged system's labels, then one row per language
    (and avg) with every metric column the run computed."""
    system = summary.get("system") or {}
    cols = grid_columns(summary)
    labels = ["model", "rtt", DATA_SIZE, "selection", "lang"]
    metrics = summary.get("metrics") or {}
    rows = [
        [system.get("model"), system.get("rtt"), system.get("data_size"), system.get("selection"),
         lang, *[_number(metrics[lang].get(c.key)) for c in cols]]
        for lang in lang_order(metrics)
    ]  # fmt: skip
    return labels + [c.key for c in cols], rows


def _number(value: Any) -> float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def scaling_values(summary: dict) -> dict[str, float]:
    """Fig. 2's point of a judged system: its data size and its metrics in one row, so a line
    plot with `data_size` as x finds both (empty for a system without SFT)."""
    system = summary.get("system") or {}
    size = system.get("data_size")
    if not size or not summary.get("metrics"):
        return {}
    return {DATA_SIZE: size, **eval_values(summary["metrics"], system.get("judge_protocol"))}


def qe_scores(sections: dict[str, list[dict]]) -> dict[str, list[float]]:
    """QE scores by language from the view's data: every listed row with a `qe` score."""
    scores: dict[str, list[float]] = {}
    for entries in sections.values():
        for entry in entries or []:
            for row in entry.get("rows") or []:
                if isinstance(row.get("qe"), int | float) and row.get("lang"):
                    scores.setdefault(qe_key(row["lang"]), []).append(float(row["qe"]))
    return scores


def logged_names(summary: dict) -> list[str]:
    """Every name a run with this results.json logged, in the order it logged them."""
    system = summary.get("system") or {}
    names: dict[str, None] = {}
    stats = summary.get("generation_stats") or {}
    names.update(dict.fromkeys(flatten(stats)))
    names.update(dict.fromkeys(qe_key(lang) for lang in stats.get("rows_by_lang") or {}))
    if summary.get("rubric"):
        names.update(dict.fromkeys(eval_values(rubric_metrics(summary["rubric"]))))
    if summary.get("metrics"):
        names.update(dict.fromkeys(eval_values(summary["metrics"], system.get("judge_protocol"))))
        names.update(dict.fromkeys([SAMPLES_TABLE, GRID_TABLE]))
    names.update(dict.fromkeys(scaling_values(summary)))
    return list(names)


@dataclass(frozen=True)
class EvalName:
    protocol: str | None
    lang: str
    column: str


def parse_eval(name: str) -> EvalName | None:
    """`eval/<protocol>/<lang>/<column>` or `eval/<lang>/<column>`; None for any other name."""
    parts = name.split("/")
    if parts[0] != "eval" or len(parts) not in (3, 4):
        return None
    return EvalName(parts[1], parts[2], parts[3]) if len(parts) == 4 else EvalName(None, *parts[1:])


def eval_names(names: list[str]) -> list[EvalName]:
    return [e for e in map(parse_eval, names) if e is not None]


def protocols(names: list[str]) -> list[str | None]:
    """The judge protocols win rates were logged under, in the order seen."""
    return list(dict.fromkeys(e.protocol for e in eval_names(names) if e.protocol))


def languages(names: list[str]) -> list[str]:
    """The evaluated languages, in the order logged, then avg."""
    langs = list(dict.fromkeys(e.lang for e in eval_names(names) if e.lang != AVG))
    return langs + ([AVG] if any(e.lang == AVG for e in eval_names(names)) else [])


def funnel_stages(names: list[str]) -> list[str]:
    """The stages of the generation funnel, in the order logged."""
    prefix = FUNNEL_PREFIX + "/"
    return list(
        dict.fromkeys(
            n[len(prefix) :].split("/")[0]
            for n in names
            if n.startswith(prefix) and n.count("/") == prefix.count("/") + 1
        )
    )

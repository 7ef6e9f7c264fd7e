"""Generation statistics : what each stage let through and why it dropped the
rest, QE by language and by translator, and which translator won how often.

Pure: counts come from the stage artifacts' metadata and rows are plain dicts, so the numbers
can be checked by hand. Written as `stats.json` beside the select artifact and logged to W&B.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from xlexp.generate.qe import triple_key
from xlexp.generate.seed import REJECT_REASONS

STAGE_ORDER = ("seed", "reverse", "refine", "translate", "qe")  # select: from its own rows


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _reason(text: str) -> str:
    # "no valid translation for sentence 3" -> one bucket for every sentence index
    return text.split(" for sentence")[0]


def stage_funnel(stage_counts: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per stage up to QE: rows in, rows out, rejects and their reasons, from each artifact's
    counts."""
    funnel: dict[str, dict[str, Any]] = {}
    for stage in STAGE_ORDER:
        counts = stage_counts.get(stage)
        if counts is None:
            continue
        row: dict[str, Any] = {}
        if stage == "seed":
            row = {"in": counts.get("read"), "out": counts.get("out")}
            row["reject_reasons"] = {
                k: counts[k]
                for k in REJECT_REASONS
                if counts.get(k)
            }
        elif stage == "translate":
            row = {
                "in": counts.get("items"),
                "out": counts.get("items"),
                "sentence_jobs": counts.get("sentence_jobs"),
                "translations": counts.get("translations"),
            }
            row["reject_reasons"] = dict(counts.get("rejected_translations") or {})
        elif stage == "qe":
            row = {
                "in": counts.get("scored_pairs"),
                "out": (counts.get("scored_pairs") or 0) - (counts.get("failed") or 0),
            }
            row["reject_reasons"] = dict(counts.get("reject_reasons") or {})
        else:  # teacher stages: reverse, refine
            row = {"in": counts.get("in"), "out": counts.get("out")}
            row["reject_reasons"] = dict(counts.get("reject_reasons") or {})
        row["rejects"] = sum(row["reject_reasons"].values())
        funnel[stage] = row
    return funnel


def generation_stats(
    stage_counts: dict[str, dict[str, Any]],
    translations: list[dict],
    scores: dict[str, float | None],
    chosen: list[dict],
    kept: list[dict],
    translator_names: list[str],
) -> dict[str, Any]:
    """The stats of one generate run.

    translations: translate-stage rows (sentences, candidates per translator, lang);
    scores: QE score per `triple_key(source, translation, lang)`; chosen: select's choose()
    output before the filter (rows and rejects); kept: the rows that made the dataset.
    """
    # Every scored candidate counts toward its translator's mean, whether it won or not.
    by_translator: dict[str, list[float]] = defaultdict(list)
    by_translator_lang: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for item in translations:
        for src, cands in zip(item["sentences"], item["candidates"], strict=True):
            for name, mt in zip(translator_names, cands, strict=False):
                score = scores.get(triple_key(src, mt, item["lang"])) if mt is not None else None
                if score is not None:
                    by_translator[name].append(score)
                    by_translator_lang[name][item["lang"]].append(score)
    ok = [r for r in chosen if "reject" not in r]
    rejects = [r for r in chosen if "reject" in r]
    kept_by_lang: dict[str, list[float]] = defaultdict(list)
    all_by_lang: dict[str, list[float]] = defaultdict(list)
    for row in kept:
        kept_by_lang[row["lang"]].append(row["qe_score"])
    for row in ok:
        all_by_lang[row["lang"]].append(row["qe_score"])
    wins: Counter = Counter()
    kept_wins: Counter = Counter()
    for row in ok:
        wins.update(row["translators"])
    for row in kept:
        kept_wins.update(row["translators"])
    total_wins = sum(wins.values())
    funnel = stage_funnel(stage_counts)
    select_reasons = dict(Counter(_reason(r["reject"]) for r in rejects))
    funnel["select"] = {
        "in": len(chosen),
        "out": len(kept),
        "before_filter": len(ok),
        "dropped_by_qe_filter": len(ok) - len(kept),
        "reject_reasons": select_reasons,
        "rejects": len(rejects),
    }
    return {
        "stages": funnel,
        "rows": len(kept),
        "rows_by_lang": {k: len(v) for k, v in sorted(kept_by_lang.items())},
        "mean_qe_by_lang": {k: _mean(v) for k, v in sorted(kept_by_lang.items())},
        "mean_qe_by_lang_before_filter": {k: _mean(v) for k, v in sorted(all_by_lang.items())},
        "mean_qe_by_translator": {
            name: _mean(by_translator.get(name, [])) for name in translator_names
        },
        "mean_qe_by_translator_lang": {
            name: {lang: _mean(v) for lang, v in sorted(by_translator_lang[name].items())}
            for name in translator_names
        },
        "translator_wins": {name: wins.get(name, 0) for name in translator_names},
        "translator_win_share": {
            name: (wins.get(name, 0) / total_wins if total_wins else None)
            for name in translator_names
        },
        "translator_wins_kept": {name: kept_wins.get(name, 0) for name in translator_names},
    }


def flatten(stats: dict[str, Any], prefix: str = "generate/stats") -> dict[str, float]:
    """Numeric leaves as `prefix/a/b/c` keys, for W&B."""
    flat: dict[str, float] = {}
    for key, value in stats.items():
        path = f"{prefix}/{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, path))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[path] = value
    return flat

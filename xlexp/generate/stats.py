"""Generation statistics : what each stage let through and why it dropped the
rest, QE by language and by translator, and which translator won how often.

Pure: counts come from the stage artifacts' metadata and rows are plain dicts, so the numbers
can be checked by hand. Written as `stats.json` beside the select artifact and logged to W&B.
"""

from __future__ import annotations

import math
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


class StatsAccumulator:
    """The stats of one generate run, gathered row by row (the merge of many generation shards
    streams its rows through one of these; nothing is held per row).

    add_translation: a translate-stage row (sentences, candidates per translator, lang) with the
    QE score per `triple_key(source, translation, lang)`; add_chosen: select's choose() output
    before the filter (a row or a reject); add_kept: a row that made the dataset.
    """

    def __init__(self, translator_names: list[str]):
        self.names = translator_names
        # Every scored candidate counts toward its translator's mean, whether it won or not.
        self.by_translator: dict[str, list] = defaultdict(lambda: [[], 0])
        self.by_translator_lang: dict[str, dict[str, list]] = defaultdict(
            lambda: defaultdict(lambda: [[], 0])
        )
        self.all_by_lang: dict[str, list] = defaultdict(lambda: [[], 0])
        self.kept_by_lang: dict[str, list] = defaultdict(lambda: [[], 0])
        self.wins: Counter = Counter()
        self.kept_wins: Counter = Counter()
        self.select_reasons: Counter = Counter()
        self.chosen = self.ok = self.kept = 0

    @staticmethod
    def _add(total: list, value: float) -> None:
        """total: [partials, count]. The partials hold the sum exactly (Shewchuk's algorithm,
        as math.fsum does inside, which cannot be fed one value at a time), so a mean does not
        depend on the order rows come in: N shards give the stats of one run to the last bit."""
        partials, i = total[0], 0
        for y in partials:
            if abs(value) < abs(y):
                value, y = y, value
            hi = value + y
            lo = y - (hi - value)
            if lo:
                partials[i] = lo
                i += 1
            value = hi
        partials[i:] = [value]
        total[1] += 1

    def add_translation(self, item: dict, scores: dict[str, float | None]) -> None:
        for src, cands in zip(item["sentences"], item["candidates"], strict=True):
            for name, mt in zip(self.names, cands, strict=False):
                score = scores.get(triple_key(src, mt, item["lang"])) if mt is not None else None
                if score is not None:
                    self._add(self.by_translator[name], score)
                    self._add(self.by_translator_lang[name][item["lang"]], score)

    def add_chosen(self, row: dict) -> None:
        self.chosen += 1
        if "reject" in row:
            self.select_reasons[_reason(row["reject"])] += 1
            return
        self.ok += 1
        self._add(self.all_by_lang[row["lang"]], row["qe_score"])
        self.wins.update(row["translators"])

    def add_kept(self, row: dict) -> None:
        self.kept += 1
        self._add(self.kept_by_lang[row["lang"]], row["qe_score"])
        self.kept_wins.update(row["translators"])

    def result(self, stage_counts: dict[str, dict[str, Any]]) -> dict[str, Any]:
        def mean(total: list | None) -> float | None:
            return math.fsum(total[0]) / total[1] if total and total[1] else None

        names = self.names
        total_wins = sum(self.wins.values())
        funnel = stage_funnel(stage_counts)
        funnel["select"] = {
            "in": self.chosen,
            "out": self.kept,
            "before_filter": self.ok,
            "dropped_by_qe_filter": self.ok - self.kept,
            "reject_reasons": dict(self.select_reasons),
            "rejects": self.chosen - self.ok,
        }
        return {
            "stages": funnel,
            "rows": self.kept,
            "rows_by_lang": {k: v[1] for k, v in sorted(self.kept_by_lang.items())},
            "mean_qe_by_lang": {k: mean(v) for k, v in sorted(self.kept_by_lang.items())},
            "mean_qe_by_lang_before_filter": {
                k: mean(v) for k, v in sorted(self.all_by_lang.items())
            },
            "mean_qe_by_translator": {name: mean(self.by_translator.get(name)) for name in names},
            "mean_qe_by_translator_lang": {
                name: {lang: mean(v) for lang, v in sorted(self.by_translator_lang[name].items())}
                for name in names
            },
            "translator_wins": {name: self.wins.get(name, 0) for name in names},
            "translator_win_share": {
                name: (self.wins.get(name, 0) / total_wins if total_wins else None)
                for name in names
            },
            "translator_wins_kept": {name: self.kept_wins.get(name, 0) for name in names},
        }


def generation_stats(
    stage_counts: dict[str, dict[str, Any]],
    translations: list[dict],
    scores: dict[str, float | None],
    chosen: list[dict],
    kept: list[dict],
    translator_names: list[str],
) -> dict[str, Any]:
    """The stats of one generate run from its rows in memory (see StatsAccumulator)."""
    acc = StatsAccumulator(translator_names)
    for item in translations:
        acc.add_translation(item, scores)
    for row in chosen:
        acc.add_chosen(row)
    for row in kept:
        acc.add_kept(row)
    return acc.result(stage_counts)


def merged_counts(pieces: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per stage, the counts of many generation shards as one run's: numbers (and dicts of
    numbers) added up. The seed stage reads the whole stream in every shard: its read and reject
    counts are the last piece's (the largest seed count read), its `out` the sum."""
    merged: dict[str, dict[str, Any]] = {}
    for piece in pieces:
        for stage, counts in piece.items():
            merged[stage] = _added(merged.get(stage, {}), counts)
    if pieces and "seed" in pieces[-1]:
        seed = dict(pieces[-1]["seed"])
        seed["out"] = sum(int(p.get("seed", {}).get("out", 0)) for p in pieces)
        seed.pop("elsewhere", None)
        merged["seed"] = seed
    return merged


def _added(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, bool) or k not in out:
            out[k] = v
        elif isinstance(v, int | float) and isinstance(out[k], int | float):
            out[k] = out[k] + v
        elif isinstance(v, dict) and isinstance(out[k], dict):
            out[k] = _added(out[k], v)
        else:
            out[k] = v
    return out


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

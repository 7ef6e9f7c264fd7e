"""Stage 4b, selection and filtering (paper 4.3-4.4, Table 10 ablation).

best_of_k: per sentence the candidate with the highest QE; naive: the first translator's;
random: best-of-k translations but the kept subset and its order ignore QE. Passage score =
mean of its chosen sentences' QE scores; the bottom (1 - keep) share is dropped.
"""

from __future__ import annotations

import math
import random

from xlexp.generate.qe import triple_key
from xlexp.generate.segment import reassemble


def choose(
    item: dict, scores: dict[str, float | None], translator_names: list[str], strategy: str
) -> dict:
    chosen, chosen_scores, winners = [], [], []
    for i, (src, cands) in enumerate(zip(item["sentences"], item["candidates"], strict=True)):
        options = []
        for t, mt in enumerate(cands):
            if mt is None:
                continue
            options.append((scores.get(triple_key(src, mt, item["lang"])), t, mt))
        if strategy == "naive":
            options = [o for o in options if o[1] == 0]
        if not options:
            return {"id": item["id"], "reject": f"no valid translation for sentence {i}"}
        scored = [o for o in options if o[0] is not None]
        best = max(scored, key=lambda o: (o[0], -o[1])) if scored else options[0]
        chosen.append(best[2])
        winners.append(translator_names[best[1]])
        if best[0] is not None:
            chosen_scores.append(best[0])
    if item["sentences"] and not chosen_scores:
        return {"id": item["id"], "reject": "no QE score for any sentence"}
    qe = sum(chosen_scores) / len(chosen_scores) if chosen_scores else 0.0
    return {
        "id": item["id"],
        "seed_id": item["seed_id"],
        "lang": item["lang"],
        "messages": [
            {"role": "user", "content": item["instruction"]},
            {"role": "assistant", "content": reassemble(item["segments"], chosen)},
        ],
        "qe_score": qe,
        "translators": winners,
        "source_question": item["question"],
        "source_response": item["response"],
    }


def kept_ranks(
    scored: list[tuple[str, float]], keep: float, strategy: str, seed: int
) -> dict[str, int]:
    """Of (row id, passage QE) pairs, the ids the filter keeps and their rank in the dataset:
    the top `keep` share by QE, best first, ties by id (or, for `random`, a seeded shuffle of the
    ids). Pairs only, so the merge of many generation shards ranks every row without holding
    the rows."""
    n_keep = math.floor(len(scored) * keep + 0.5)
    if strategy == "random":
        ordered = sorted(row_id for row_id, _ in scored)
        random.Random(seed).shuffle(ordered)
    else:
        ordered = [row_id for row_id, _ in sorted(scored, key=lambda p: (-p[1], p[0]))]
    return {row_id: rank for rank, row_id in enumerate(ordered[:n_keep])}


def filter_rows(rows: list[dict], keep: float, strategy: str, seed: int) -> list[dict]:
    """Keep the top `keep` share by QE (or a random share for `random`), best first."""
    ranks = kept_ranks([(r["id"], r["qe_score"]) for r in rows], keep, strategy, seed)
    kept = [{**row, "rank": ranks[row["id"]]} for row in rows if row["id"] in ranks]
    return sorted(kept, key=lambda r: r["rank"])

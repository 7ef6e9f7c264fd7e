"""How many seed passages a generation needs to end with a target number of kept rows.

Rows are lost on the way (a teacher output that does not parse, a sentence without a valid
translation, ...) and the filter then drops the bottom (1 - keep) share by passage QE (paper 4.4:
20%). 40,000 seeds x 0.8 is 32,000 rows only if nothing is rejected, so a target of kept rows
(`generate.target_rows`, the paper's 32K) is reached by measuring the yield (candidate rows per
seed) and drawing fresh seeds until the filter leaves at least the target. The seed stream is
seeded and the model answers are cached, so the sequence of seed counts, and with it the dataset's
key, is the same on every run for a given target; the earlier seeds' calls are never made twice.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


def kept_after_filter(candidates: int, keep: float) -> int:
    """Rows the QE filter keeps of `candidates` (select.filter_rows: round half up)."""
    return math.floor(candidates * keep + 0.5)


def candidates_needed(target: int, keep: float) -> int:
    """The fewest candidate rows whose top `keep` share holds `target` rows."""
    n = max(0, math.ceil(target / keep) - 1)
    while kept_after_filter(n, keep) < target:
        n += 1
    return n


def next_seed_count(
    target: int,
    keep: float,
    seeds: int,
    candidates: int,
    max_seeds: int | None = None,
    margin: float = 0.02,
) -> int | None:
    """The total seed count of the next round, or None when `candidates` already reach `target`.

    The missing candidates are divided by the measured yield (candidates per seed) with a small
    margin, so one more round usually suffices; at least one new seed is drawn. Raises when the
    yield is zero or `max_seeds` (the seed source's bound) would be passed."""
    need = candidates_needed(target, keep)
    if candidates >= need:
        return None
    if seeds <= 0:
        raise ValueError("generate.target_rows: no seed passages to measure the yield on")
    if candidates == 0:
        raise ValueError(
            f"generate.target_rows: {seeds} seed passages gave no candidate rows; every row was "
            "rejected (see the rejects of reverse, refine, translate and select)"
        )
    per_seed = candidates / seeds
    more = max(1, math.ceil((need - candidates) / per_seed * (1 + margin)))
    total = seeds + more
    if max_seeds is not None and total > max_seeds:
        if seeds >= max_seeds:
            raise ValueError(
                f"generate.target_rows: {target} kept rows need about {total} seed passages; "
                f"the seed source gave {seeds} (seed_data.max_read or the corpus ends there)"
            )
        total = max_seeds
    return total


def generate_to_target(
    run_chain: Callable[[int], dict[str, Any]],
    first_seeds: int,
    target: int | None,
    keep: float,
    max_rounds: int = 8,
) -> dict[str, Any]:
    """Run the generation chain (`run_chain(n_seeds)` -> its artifacts, `seed` and `select` among
    them; `seed` may be the newest piece's) on `first_seeds` seeds, then on more until the
    select stage keeps `target` rows.

    Each round asks for a larger seed count; the seed stream is a fixed order, so a round's seeds
    are the earlier round's plus fresh ones and every earlier model call is a cache hit. Without a
    target the chain runs once (the seed count alone sets the size, as before)."""
    seeds = first_seeds
    for _ in range(max_rounds):
        arts = run_chain(seeds)
        if target is None:
            return arts
        counts = arts["seed"].meta.get("counts", {})
        # The seed passages read so far: this piece's and those other pieces hold (`elsewhere`).
        got = int(counts.get("out", seeds)) + int(counts.get("elsewhere", 0))
        candidates = int(arts["select"].meta["counts"]["before_filter"])
        nxt = next_seed_count(
            target, keep, got, candidates, max_seeds=None if got >= seeds else got
        )
        if nxt is None:
            return arts
        seeds = nxt
    raise ValueError(
        f"generate.target_rows: {target} kept rows not reached "
        f"after {max_rounds} rounds of fresh seeds"
    )

"""Generation reaches a target of kept rows despite rejects: the pure arithmetic
(xlexp.generate.topup)."""

from __future__ import annotations

import random

import pytest

from xlexp.generate import select
from xlexp.generate.topup import (
    candidates_needed,
    generate_to_target,
    kept_after_filter,
    next_seed_count,
)


@pytest.mark.parametrize("target,keep", [(32000, 0.8), (8, 0.8), (5, 0.5), (7, 1.0), (3, 0.3)])
def test_candidates_needed_is_the_least_that_keeps_the_target(target: int, keep: float) -> None:
    need = candidates_needed(target, keep)
    assert kept_after_filter(need, keep) >= target > kept_after_filter(need - 1, keep)
    # The same rounding as the filter itself.
    rows = [{"id": f"r{i}", "qe_score": i / need} for i in range(need)]
    assert len(select.filter_rows(rows, keep, "best_of_k", 1)) == kept_after_filter(need, keep)


def test_the_papers_32k_needs_one_more_round_after_10_rejects() -> None:
    # 40,000 seeds, 10 rows rejected upstream: 39,990 candidates keep 31,992 < 32,000.
    assert kept_after_filter(39990, 0.8) == 31992
    total = next_seed_count(32000, 0.8, seeds=40000, candidates=39990)
    assert total is not None and 40010 <= total <= 40100
    assert next_seed_count(32000, 0.8, seeds=40000, candidates=40000) is None


def test_simulated_generation_reaches_the_target_despite_rejects() -> None:
    """Seeds in stream order; a fixed 15% of them are rejected somewhere upstream (a property of
    the seed, as a cached model answer is). Rounds draw fresh seeds until the filter keeps the
    target; the same target gives the same seed count (the dataset key) every time."""
    rejected = {i for i in range(10000) if random.Random(i).random() < 0.15}

    def run(target: int, first: int) -> tuple[int, int, int]:
        seeds, rounds = first, 1
        while True:
            candidates = sum(1 for i in range(seeds) if i not in rejected)
            nxt = next_seed_count(target, 0.8, seeds, candidates, max_seeds=10000)
            if nxt is None:
                return seeds, kept_after_filter(candidates, 0.8), rounds
            seeds, rounds = nxt, rounds + 1

    seeds, kept, rounds = run(target=800, first=1000)  # 1000 x 0.85 x 0.8 = 680 < 800 at first
    assert kept >= 800 and rounds >= 2
    assert run(target=800, first=1000) == (seeds, kept, rounds)


def test_no_yield_or_exhausted_source_fails_clearly() -> None:
    with pytest.raises(ValueError, match="every row was rejected"):
        next_seed_count(10, 0.8, seeds=20, candidates=0)
    with pytest.raises(ValueError, match="seed source gave 100"):
        next_seed_count(1000, 0.8, seeds=100, candidates=90, max_seeds=100)
    assert next_seed_count(1000, 0.8, seeds=100, candidates=90, max_seeds=500) == 500


class FakeArtifact:
    def __init__(self, counts: dict):
        self.meta = {"counts": counts}


def test_generate_to_target_draws_fresh_seeds_until_the_filter_keeps_the_target() -> None:
    """A chain whose seeds are rejected 1 in 5 (by seed position, as cached answers would be)."""
    calls: list[int] = []

    def chain(n: int) -> dict:
        calls.append(n)
        candidates = sum(1 for i in range(n) if i % 5 != 3)
        return {
            "seed": FakeArtifact({"out": n}),
            "select": FakeArtifact(
                {"before_filter": candidates, "rows": kept_after_filter(candidates, 0.8)}
            ),
        }

    arts = generate_to_target(chain, first_seeds=100, target=100, keep=0.8)
    assert arts["select"].meta["counts"]["rows"] >= 100
    assert calls[0] == 100 and len(calls) >= 2 and calls == sorted(calls)
    calls_before = list(calls)
    calls.clear()
    generate_to_target(chain, first_seeds=100, target=100, keep=0.8)
    assert calls == calls_before  # the same seed counts: the same dataset key
    calls.clear()
    generate_to_target(chain, first_seeds=100, target=None, keep=0.8)
    assert calls == [100]  # no target: one round, as without top-up


def test_generate_to_target_stops_when_the_seed_source_runs_dry() -> None:
    def chain(n: int) -> dict:
        got = min(n, 120)  # the corpus has 120 passages
        return {
            "seed": FakeArtifact({"out": got}),
            "select": FakeArtifact({"before_filter": got // 2}),
        }

    with pytest.raises(ValueError, match="seed source gave 120"):
        generate_to_target(chain, first_seeds=100, target=100, keep=0.8)

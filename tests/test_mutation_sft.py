"""SFT data selection and defaults, as a mutation run found them unguarded: the subset's
defaults (top by QE, seed 1), its bounds (all rows and none are valid sizes), the chat shape TRL
trains on, and the paper's hyperparameters as the composed config's defaults (paper section 5)."""

from __future__ import annotations

import pytest
from test_config import make

from xlexp.sft.config import SFTConfig
from xlexp.sft.data import take, to_prompt_completion

ROWS = [{"id": f"r{i}", "qe_score": s} for i, s in enumerate([0.3, 0.9, 0.1, 0.9, 0.5])]


def test_the_default_subset_is_the_top_by_qe_with_ties_by_id():
    assert [r["id"] for r in take(ROWS, 3)] == ["r1", "r3", "r4"]
    assert take(ROWS, 3, seed=1) == take(ROWS, 3, "top", 1)


def test_the_random_subset_is_seeded_1_by_default():
    assert take(ROWS, 3, "random") == take(ROWS, 3, "random", seed=1)
    draws = {tuple(r["id"] for r in take(ROWS, 2, "random", seed=s)) for s in range(1, 8)}
    assert len(draws) > 1  # the seed matters


def test_every_row_and_no_row_are_valid_sizes():
    assert len(take(ROWS, len(ROWS))) == len(ROWS)
    assert take(ROWS, 0) == []
    with pytest.raises(ValueError, match="holds 5"):
        take(ROWS, 6)
    with pytest.raises(ValueError, match=">= 0"):
        take(ROWS, -1)


def test_a_training_row_must_end_with_an_assistant_turn_after_a_prompt():
    user = {"role": "user", "content": "q"}
    bot = {"role": "assistant", "content": "a"}
    assert to_prompt_completion([{"messages": [user, bot]}]) == [
        {"prompt": [user], "completion": [bot]}
    ]
    for bad in ([bot], [user, user], [bot, user]):
        with pytest.raises(ValueError, match="assistant turn"):
            to_prompt_completion([{"id": "x", "messages": bad}])


def test_sft_defaults_are_the_papers():
    # the schema's defaults (the tiny profile shrinks the batch for CPU; the paper profile not)
    for sft in (SFTConfig(), make("profile=paper").sft):
        assert (sft.r, sft.alpha, list(sft.target_modules)) == (8, 16, ["q_proj", "v_proj"])
        assert (sft.epochs, sft.lr, sft.scheduler, sft.warmup_ratio) == (1.0, 1e-4, "cosine", 0.03)
        assert (sft.batch_size, sft.grad_accum, sft.bf16, sft.subset) == (8, 1, "auto", "top")
    assert make().seed == 1

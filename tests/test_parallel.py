"""Roles that do not depend on each other run together when they are remote, in order when local."""

from __future__ import annotations

import threading

import pytest
from omegaconf import OmegaConf

from xlexp.config import LLMConfig
from xlexp.parallel import batches_in_flight, can_run_together, is_remote, together


def _card(backend: str, window: int = 8):
    return OmegaConf.structured(
        LLMConfig(name="c", backend=backend, model="m", max_concurrency=window)
    )


def test_together_runs_at_once_when_parallel():
    meet = threading.Barrier(3, timeout=10)  # would time out if the tasks ran one by one
    out = together(
        {name: (lambda name=name: (meet.wait(), name)[1]) for name in "abc"}, parallel=True
    )
    assert out == {"a": "a", "b": "b", "c": "c"}


def test_together_in_order_when_not_parallel_and_failures_surface():
    order: list[str] = []
    assert together({n: (lambda n=n: order.append(n) or n) for n in "xyz"}, parallel=False) == {
        "x": "x",
        "y": "y",
        "z": "z",
    }
    assert order == ["x", "y", "z"]

    def boom():
        raise ValueError("translator down")

    with pytest.raises(ValueError, match="translator down"):
        together({"ok": lambda: 1, "bad": boom}, parallel=True)


def test_batches_in_flight_fill_twice_the_window_for_remote_roles_only():
    assert is_remote(_card("openai")) and not is_remote(_card("hf"))
    assert batches_in_flight(_card("openai", window=128), 16) == 16
    assert batches_in_flight(_card("openai", window=8), 64) == 1
    assert batches_in_flight(_card("hf"), 16) == 1
    assert batches_in_flight(_card("vllm"), 16) == 1


def test_at_most_one_local_engine_runs_at_a_time():
    assert can_run_together([_card("openai"), _card("openai"), _card("openai")])
    assert can_run_together([_card("hf"), _card("openai")])
    assert not can_run_together([_card("hf"), _card("hf")])
    assert not can_run_together([_card("vllm"), _card("hf"), _card("openai")])

"""The breaker: a dead endpoint stops costing retries after a few failed calls, one probe is let
through after the cool-down, and one answer closes it."""

from __future__ import annotations

import time

import pytest
from fakeserver import FakeOpenAI, Reply
from omegaconf import OmegaConf

from xlexp.failures import BackendFailure
from xlexp.llm.breaker import Breaker


def test_opens_after_consecutive_failures_and_half_opens_after_the_cooldown():
    b = Breaker(threshold=3, cooldown_s=0.2)
    for _ in range(2):
        b.record(True, "refused")
    b.record(False)
    b.record(True, "refused")
    assert not b.open  # the answer in between reset the run
    b.record(True, "refused")
    b.record(True, "refused")
    assert b.open and "3 consecutive failed calls (last: refused)" in b.why()
    time.sleep(0.25)
    assert not b.open  # a probe is due
    b.record(False)
    assert not b.open


def test_a_dead_endpoint_gets_a_bounded_number_of_requests(tmp_path):
    from xlexp.llm import load

    with FakeOpenAI(lambda body: Reply(503, text="down")) as srv:
        card = OmegaConf.create(
            {
                "name": "t",
                "backend": "openai",
                "model": "fake-model",
                "base_url": srv.base_url,
                "api_key_env": None,
                "max_concurrency": 1,
                "max_retries": 2,
                "timeout_s": 5,
                "revision": None,
                "gguf_file": None,
                "dtype": "auto",
                "chat_template": None,
                "batch_api": False,
                "breaker_after": 4,
                "sampling": {"temperature": 0.0, "top_p": 1.0, "max_tokens": 8, "seed": None},
            }
        )
        model = load(card, tmp_path)
        with pytest.raises(
            BackendFailure, match="breaker open after 4 consecutive failed calls"
        ) as err:
            model.chat([[{"role": "user", "content": f"q{i}"}] for i in range(40)])
        assert srv.calls == 4 * 3  # four items, each with its retries; the other 36 not sent
        assert sum(f.errors.total() for f in err.value.failures) == 40


def test_calls_in_the_window_stop_retrying_once_the_breaker_opens(tmp_path):
    """Two calls in flight: the fast one spends its retries and opens the breaker; the slow
    one, whose first attempt fails afterwards, does not retry against the dead endpoint."""
    from xlexp.llm import Sampling
    from xlexp.llm.openai import OpenAIBackend

    def down(body: dict) -> Reply:
        slow = body["messages"][-1]["content"] == "slow"
        return Reply(503, text="down", delay=1.5 if slow else 0.0)

    with FakeOpenAI(down) as srv:
        card = OmegaConf.create(
            {
                "name": "t",
                "backend": "openai",
                "model": "fake-model",
                "base_url": srv.base_url,
                "api_key_env": None,
                "max_concurrency": 2,
                "max_retries": 3,
                "timeout_s": 5,
                "breaker_after": 1,
                "sampling": {"temperature": 0.0, "top_p": 1.0, "max_tokens": 8, "seed": None},
            }
        )
        backend = OpenAIBackend(card)
        fast, slow = backend.generate(
            [[{"role": "user", "content": "fast"}], [{"role": "user", "content": "slow"}]],
            Sampling(),
        )
        backend.close()
    assert fast.failure == "server" and "gave up after 3 retries" in fast.error
    assert (
        slow.failure == "breaker" and "breaker open after 1 consecutive failed calls" in slow.error
    )
    assert srv.calls == 4 + 1

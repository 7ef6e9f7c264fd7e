"""OpenAIBackend through the real `openai` client against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
import time

import openai
import pytest
from fakeserver import FakeOpenAI, Reply
from omegaconf import OmegaConf

import xlexp.llm
import xlexp.llm.wire as wire
from xlexp.config import LLMConfig
from xlexp.failures import BackendFailure
from xlexp.llm import Sampling
from xlexp.llm.openai import OpenAIBackend


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(wire, "BASE_WAIT_S", 0.001)


def card(base_url: str, **kw) -> LLMConfig:
    kw.setdefault("timeout_s", 5.0)
    return OmegaConf.structured(
        LLMConfig(name="fake", backend="openai", model="fake-model", base_url=base_url, **kw)
    )


def conv(text: str) -> list[dict]:
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]


def last_user(body: dict) -> str:
    return body["messages"][-1]["content"]


def test_concurrency_is_bounded_and_order_kept():
    def slow(body):
        return Reply(text=f"answer to {last_user(body)}", delay=0.2)

    with FakeOpenAI(slow) as srv:
        backend = OpenAIBackend(card(srv.base_url, max_concurrency=3))
        started = time.time()
        out = backend.generate([conv(f"q{i}") for i in range(12)], Sampling())
        elapsed = time.time() - started
    assert [c.text for c in out] == [f"answer to q{i}" for i in range(12)]
    assert all(c.ok for c in out)
    assert srv.calls == 12
    assert srv.max_in_flight == 3
    assert elapsed < 12 * 0.2  # concurrent, not serial


@pytest.mark.parametrize("first", [Reply(429, "slow down"), Reply(500, "boom"), Reply(503)])
def test_transient_error_then_success_is_retried(first):
    with FakeOpenAI.sequence([first, "ok"]) as srv:
        backend = OpenAIBackend(card(srv.base_url, max_retries=3))
        [comp] = backend.generate([conv("hi")], Sampling())
    assert comp.ok and comp.text == "ok"
    assert srv.calls == 2
    assert backend.retries == 1 and backend.requests == 2


def test_retry_after_header_is_honoured():
    with FakeOpenAI.sequence([Reply(429, headers={"Retry-After": "0.4"}), "ok"]) as srv:
        backend = OpenAIBackend(card(srv.base_url, max_retries=2))
        started = time.time()
        [comp] = backend.generate([conv("hi")], Sampling())
        elapsed = time.time() - started
    assert comp.text == "ok"
    assert elapsed >= 0.4


def test_retries_exhausted_is_an_error_completion():
    with FakeOpenAI(lambda body: Reply(500, "still broken")) as srv:
        backend = OpenAIBackend(card(srv.base_url, max_retries=2))
        [comp] = backend.generate([conv("hi")], Sampling())
    assert not comp.ok
    assert comp.error.startswith("InternalServerError: 500 still broken")
    assert "2 retries" in comp.error
    assert srv.calls == 3  # first try + 2 retries
    assert backend.errors == 1


def test_timeout_is_retried():
    with FakeOpenAI.sequence([Reply(text="late", delay=1.5), "fast"]) as srv:
        backend = OpenAIBackend(card(srv.base_url, max_retries=2, timeout_s=0.3))
        [comp] = backend.generate([conv("hi")], Sampling())
    assert comp.text == "fast"
    assert srv.calls == 2


def test_connection_refused_becomes_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = OpenAIBackend(card(f"http://127.0.0.1:{port}/v1", max_retries=1))
    [comp] = backend.generate([conv("hi")], Sampling())
    assert comp.error.startswith("APIConnectionError")
    assert backend.requests == 2


@pytest.mark.parametrize(
    "status,kind",
    [(400, "BadRequestError"), (401, "AuthenticationError"), (403, "PermissionDeniedError"),
     (404, "NotFoundError"), (422, "UnprocessableEntityError")],
)
def test_permanent_error_is_not_retried_and_batch_continues(status, kind):
    def handler(body):
        text = last_user(body)
        return Reply(status, "bad prompt") if text == "bad" else text.upper()

    prompts = ["a", "b", "bad", "c", "d"]
    with FakeOpenAI(handler) as srv:
        backend = OpenAIBackend(card(srv.base_url, max_retries=3, max_concurrency=2))
        out = backend.generate([conv(p) for p in prompts], Sampling())
    assert out[2].error == f"{kind}: {status} bad prompt"
    assert [c.text for i, c in enumerate(out) if i != 2] == ["A", "B", "C", "D"]
    assert all(c.ok for i, c in enumerate(out) if i != 2)
    assert srv.calls == len(prompts)  # the permanent error was not retried


def test_empty_content_is_success_and_missing_choice_is_error():
    no_choices = {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []}
    with FakeOpenAI.sequence(["", Reply(raw=no_choices)]) as srv:
        backend = OpenAIBackend(card(srv.base_url, max_concurrency=1))
        empty, missing = backend.generate([conv("a"), conv("b")], Sampling())
    assert empty.ok and empty.text == ""
    assert not missing.ok and "no choices" in missing.error


def test_request_parameters():
    with FakeOpenAI() as srv:
        backend = OpenAIBackend(card(srv.base_url))
        s = Sampling(temperature=0.7, top_p=0.9, max_tokens=17, seed=5)
        backend.generate([conv("x")], s, sample_index=2)
        backend.generate([conv("x")], Sampling())
        backend.generate([conv("x")], Sampling(), sample_index=3)
    first, plain, kth = srv.requests
    assert first["model"] == "fake-model"
    assert first["messages"] == conv("x")
    assert (first["temperature"], first["top_p"], first["max_tokens"]) == (0.7, 0.9, 17)
    assert first["seed"] == 7  # seed + sample_index
    assert "seed" not in plain and "logprobs" not in plain
    assert kth["seed"] == 3  # no seed: k samples still differ, reproducibly
    assert srv.headers[0]["authorization"] == "Bearer EMPTY"


def test_logprobs_parsed_and_usage_counted():
    lps = [{"yes": -0.1, "no": -2.5, "maybe": -3.0}, {"b": -1.0, "a": -0.5}]
    with FakeOpenAI(lambda body: Reply(text="yes b", logprobs=lps)) as srv:
        backend = OpenAIBackend(card(srv.base_url))
        [two] = backend.generate([conv("one two three")], Sampling(logprobs=2))
        [one] = backend.generate([conv("one two three")], Sampling(logprobs=1))
        [none] = backend.generate([conv("x")], Sampling())
    assert srv.requests[0]["logprobs"] is True and srv.requests[0]["top_logprobs"] == 2
    assert two.logprobs == [{"yes": -0.1, "no": -2.5}, {"b": -1.0, "a": -0.5}]
    # The chosen token is kept even when it is not among the top alternatives.
    assert one.logprobs == [{"yes": -0.1}, {"b": -1.0, "a": -0.5}]
    assert none.logprobs is None
    assert two.prompt_tokens == 5  # "be brief" + "one two three"
    assert two.completion_tokens == 2


def test_chat_model_cache_in_front(tmp_path):
    def handler(body):
        text = last_user(body)
        return Reply(400, "nope") if text == "bad" else f"re: {text}"

    with FakeOpenAI(handler) as srv:
        model = xlexp.llm.load(card(srv.base_url), tmp_path)
        first = model.chat([conv("a"), conv("b"), conv("bad")])
        assert srv.calls == 3
        second = model.chat([conv("a"), conv("b")])
        assert srv.calls == 3  # all from the cache
        again = model.chat([conv("bad")])
        assert srv.calls == 4  # errors are not cached
        model.close()
    assert [c.text for c in first[:2]] == ["re: a", "re: b"] == [c.text for c in second]
    assert not first[0].cached and all(c.cached for c in second)
    assert first[2].error and again[0].error
    assert model.usage.cache_hits == 2 and model.usage.errors == 2


def test_api_key_never_leaks(monkeypatch, caplog):
    secret = "sk-test-SECRET-0123456789abcdef"
    monkeypatch.setenv("XLEXP_FAKE_KEY", secret)
    caplog.set_level(logging.DEBUG)  # the openai/httpx debug logs too

    def handler(body):
        auth = srv.headers[-1]["authorization"]
        if last_user(body) == "retry":
            return Reply(429, f"rate limited for key {auth}")
        return Reply(401, f"Incorrect API key provided: {auth}")  # servers echo keys

    with FakeOpenAI(handler) as srv:
        backend = OpenAIBackend(card(srv.base_url, api_key_env="XLEXP_FAKE_KEY", max_retries=1))
        out = backend.generate([conv("retry"), conv("auth")], Sampling())
    assert srv.headers[0]["authorization"] == f"Bearer {secret}"  # the key was used
    assert out[0].error.startswith("RateLimitError: 429")
    assert out[1].error.startswith(
        "AuthenticationError: 401 Incorrect API key provided: Bearer ***"
    )
    assert "retry 1/1" in caplog.text  # retries were logged ...
    for text in (caplog.text, repr(backend), str(backend), out[0].error, out[1].error):
        assert secret not in text  # ... without the key


def test_missing_key_env_var_is_named(monkeypatch):
    monkeypatch.delenv("XLEXP_ABSENT_KEY", raising=False)
    with pytest.raises(ValueError, match="XLEXP_ABSENT_KEY"):
        OpenAIBackend(card("http://127.0.0.1:9/v1", api_key_env="XLEXP_ABSENT_KEY"))


def test_fake_server_speaks_openai():
    with FakeOpenAI(served=["served-model", "m"]) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="k", max_retries=0)
        assert [m.id for m in client.models.list()] == ["served-model", "m"]
        reply = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hello there"}],
            logprobs=True, top_logprobs=1,
        )
        client.close()
    assert reply.choices[0].message.content == "hello there"  # default handler echoes
    assert reply.choices[0].finish_reason == "stop"
    assert [t.token for t in reply.choices[0].logprobs.content] == ["hello", "there"]
    assert reply.usage.total_tokens == 4


def test_a_crash_mid_batch_keeps_the_answers_already_paid_for(tmp_path):
    """Misses are cached chunk by chunk, so a run that dies repeats at most one chunk of calls."""
    from xlexp.llm import load

    state = {"crash_after": 8}

    def handler(body: dict):
        if state["crash_after"] is not None and srv.calls > state["crash_after"]:
            return Reply(status=500, text="server went away")  # no retries: the run "dies" here
        return "ok " + body["messages"][-1]["content"]

    with FakeOpenAI(handler) as srv:
        c = card(srv.base_url, max_concurrency=1, max_retries=0)
        model = load(c, tmp_path)
        convs = [[{"role": "user", "content": f"q{i}"}] for i in range(12)]
        with pytest.raises(BackendFailure, match="4 failed calls"):
            model.chat(convs)  # chunks of 4: two answered and cached, one failed
        state["crash_after"] = None
        calls = srv.calls
        again = load(c, tmp_path).chat(convs)
        assert all(c.ok for c in again) and srv.calls - calls == 4
        assert [c.cached for c in again] == [True] * 8 + [False] * 4

"""The async transport behind the openai backend, against real HTTP servers on 127.0.0.1:
a continuous window (no chunk barrier), answers cached as they arrive (a kill loses only what
was in flight), one window shared by concurrent callers, rate limits, error kinds."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import pytest
from fakeserver import FakeOpenAI, Reply
from omegaconf import OmegaConf

import xlexp.llm.wire as wire
from xlexp.config import LLMConfig
from xlexp.failures import BackendFailure
from xlexp.llm import ResponseCache, Sampling, load
from xlexp.llm.base import request_key
from xlexp.llm.openai import OpenAIBackend
from xlexp.llm.transport import Transport
from xlexp.llm.wire import retry_after
from xlexp.store import digest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(wire, "BASE_WAIT_S", 0.001)


def card(base_url: str, **kw) -> LLMConfig:
    kw.setdefault("timeout_s", 5.0)
    return OmegaConf.structured(
        LLMConfig(name="fake", backend="openai", model="fake-model", base_url=base_url, **kw)
    )


def conv(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_a_slow_request_holds_one_slot_not_the_batch_and_answers_are_cached_as_they_arrive(
    tmp_path,
):
    """While one request hangs, the other 40 go through the remaining slots and are already in
    the cache: no chunk waits for its slowest member, and a kill now would lose only the one."""
    release = threading.Event()

    def handler(body: dict) -> str | Reply:
        text = body["messages"][-1]["content"]
        if text == "slow":
            release.wait(30)
        return Reply(text=f"re: {text}", delay=0.02)

    with FakeOpenAI(handler) as srv:
        model = load(card(srv.base_url, max_concurrency=4), tmp_path)
        convs = [conv("slow")] + [conv(f"q{i}") for i in range(40)]
        result: list = []
        caller = threading.Thread(target=lambda: result.extend(model.chat(convs)))
        caller.start()
        cache = ResponseCache(tmp_path / "cache.sqlite")
        deadline = time.time() + 30
        while len(cache) < 40 and time.time() < deadline:
            time.sleep(0.02)
        stored_while_slow_in_flight = len(cache)
        release.set()
        caller.join(30)
        model.close()
    assert stored_while_slow_in_flight == 40
    assert srv.max_in_flight == 4
    assert [c.text for c in result] == ["re: slow"] + [f"re: q{i}" for i in range(40)]
    assert len(cache) == 41


CHILD = """
import sys
from omegaconf import OmegaConf
from xlexp.config import LLMConfig
from xlexp.llm import load
base_url, store = sys.argv[1], sys.argv[2]
card = OmegaConf.structured(
    LLMConfig(name="t", backend="openai", model="m", base_url=base_url, max_concurrency=3)
)
load(card, store).chat([[{"role": "user", "content": f"q{i}"}] for i in range(20)])
"""


def test_a_killed_process_loses_only_the_requests_in_flight(tmp_path):
    release = threading.Event()
    lock = threading.Lock()
    arrived = []

    def handler(body: dict) -> str:
        text = body["messages"][-1]["content"]
        with lock:
            arrived.append(text)
            hang = len(arrived) > 12  # from the 13th request on, the server hangs
        if hang:
            release.wait(30)
        return f"re: {text}"

    with FakeOpenAI(handler) as srv:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, srv.base_url, str(tmp_path)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            deadline = time.time() + 60
            while srv.in_flight < 3 and time.time() < deadline and child.poll() is None:
                time.sleep(0.02)
            time.sleep(0.3)  # the 12 answered ones have reached the child
            assert srv.in_flight == 3, "the child should hold a full window of hung requests"
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            release.set()
        stored = len(ResponseCache(tmp_path / "cache.sqlite"))
        calls = srv.calls
        model = load(
            OmegaConf.structured(
                LLMConfig(name="t", backend="openai", model="m", base_url=srv.base_url)
            ),
            tmp_path,
        )
        again = model.chat([conv(f"q{i}") for i in range(20)])
        model.close()
    assert stored == 12  # every answer the child got was in the cache when it died
    assert srv.calls - calls == 8  # the rerun asks for the 3 lost in flight and the 5 never sent
    assert all(c.ok for c in again) and sum(c.cached for c in again) == 12


def test_concurrent_callers_share_one_window():
    with FakeOpenAI(lambda body: Reply(text="ok", delay=0.05)) as srv:
        backend = OpenAIBackend(card(srv.base_url, max_concurrency=5))
        outs: list = []
        threads = [
            threading.Thread(
                target=lambda n=n: outs.append(
                    backend.generate([conv(f"{n}-{i}") for i in range(20)], Sampling())
                )
            )
            for n in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        backend.close()
    assert srv.calls == 60 and srv.max_in_flight == 5
    assert len(outs) == 3 and all(c.text == "ok" for out in outs for c in out)


def test_requests_per_minute_limit_spaces_requests():
    # 1200/min: a burst of one second's quota (20), then 20 per second.
    with FakeOpenAI() as srv:
        backend = OpenAIBackend(card(srv.base_url, max_concurrency=32, requests_per_minute=1200))
        started = time.time()
        out = backend.generate([conv(f"q{i}") for i in range(30)], Sampling())
        elapsed = time.time() - started
        backend.close()
    assert all(c.ok for c in out)
    assert elapsed >= 0.45  # 10 requests over the burst at 20/s


def test_tokens_per_minute_limit_counts_prompt_and_max_tokens():
    with FakeOpenAI() as srv:  # 60,000 a minute: 1000 tokens/s, a burst of 1000
        backend = OpenAIBackend(card(srv.base_url, max_concurrency=32, tokens_per_minute=60_000))
        started = time.time()
        backend.generate([conv(f"q{i}") for i in range(12)], Sampling(max_tokens=100))
        elapsed = time.time() - started
        backend.close()
    assert elapsed >= 0.25  # 12 x (100 + ~20) tokens: about 440 over the burst


def test_a_429_pauses_the_whole_endpoint_for_its_retry_after():
    """The quota is the endpoint's: after a 429, no request goes out before Retry-After passed,
    not even the other slot's next one."""
    lock = threading.Lock()
    arrivals: list[float] = []

    def handler(body: dict) -> str | Reply:
        with lock:
            arrivals.append(time.monotonic())
            first = len(arrivals) == 1
        # The others answer late, so the client has read the 429 before any slot frees (on a
        # loaded machine an instant "ok" could be read first and let the next request out).
        return (
            Reply(429, "slow down", headers={"Retry-After": "0.5"})
            if first
            else Reply(text="ok", delay=0.2)
        )

    with FakeOpenAI(handler) as srv:
        backend = OpenAIBackend(card(srv.base_url, max_concurrency=2, max_retries=2))
        out = backend.generate([conv(c) for c in "abcd"], Sampling())
        backend.close()
    assert [c.text for c in out] == ["ok"] * 4 and srv.calls == 5 and backend.retries == 1
    # The first two went out together; the 429 came back; everything after waited for it.
    assert all(t - arrivals[0] >= 0.45 for t in arrivals[2:])


def test_retry_after_forms():
    assert retry_after({"retry-after-ms": "250"}) == 0.25
    assert retry_after({"retry-after": "2"}) == 2.0
    assert retry_after({}) is None
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= retry_after({"retry-after": date}) <= 31


def _refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


@pytest.mark.parametrize(
    "reply,failure,retried",
    [
        (Reply(500, "boom"), "server", True),
        (Reply(503), "server", True),
        (Reply(429, "quota"), "rate_limit", True),
        (Reply(408), "timeout", True),
        (Reply(401, "bad key"), "auth", False),
        (Reply(403), "auth", False),
        (Reply(400, "bad prompt"), None, False),  # this prompt cannot be answered: a content reject
        (Reply(422), None, False),
        (Reply(404), "model", False),
        (Reply(409), "status", False),
        (Reply(raw={"id": "x", "object": "chat.completion", "choices": []}), "bad_response", False),
        (Reply(raw={"choices": [{"message": "not an object"}]}), "bad_response", False),
        (Reply(raw=["not", "a", "completion"]), "bad_response", False),
        (Reply(text=None), "no_content", False),
        (Reply(text="late", delay=1.0), "timeout", True),
    ],
)
def test_failures_say_what_kind_they_are(reply, failure, retried):
    with FakeOpenAI(lambda body: reply) as srv:
        backend = OpenAIBackend(card(srv.base_url, max_retries=1, timeout_s=0.3))
        [comp] = backend.generate([conv("x")], Sampling())
        backend.close()
    assert not comp.ok and comp.error and comp.failure == failure
    assert srv.calls == (2 if retried else 1)


def test_connection_refused_is_a_connection_error():
    backend = OpenAIBackend(card(_refused_url(), max_retries=1))
    [comp] = backend.generate([conv("x")], Sampling())
    backend.close()
    assert comp.failure == "connection" and comp.error.startswith("APIConnectionError")
    assert backend.requests == 2


def test_failures_are_not_cached_and_a_rerun_asks_again(tmp_path):
    with FakeOpenAI.sequence([Reply(500), "fine"]) as srv:
        model = load(card(srv.base_url, max_retries=0), tmp_path)
        with pytest.raises(BackendFailure, match="InternalServerError: 500"):
            model.chat([conv("x")])
        [good] = model.chat([conv("x")])
        [cached] = model.chat([conv("x")])
        model.close()
    assert good.text == "fine" and cached.cached and cached.ok
    assert srv.calls == 2


def test_cache_keys_did_not_change():
    """Answers cached by earlier versions are still found: the key is the same hash."""
    sampling = Sampling(temperature=0.7, max_tokens=9, seed=3)
    old = digest(
        {
            "identity": "i",
            "messages": conv("x"),
            "sampling": asdict(sampling),
            "sample": 1,
            "adapter": None,
        },
        n=32,
    )
    assert request_key("i", conv("x"), sampling, 1, None) == old


def test_no_log_line_per_request(caplog):
    caplog.set_level(logging.INFO)
    with FakeOpenAI() as srv:
        backend = OpenAIBackend(card(srv.base_url))
        backend.generate([conv(f"q{i}") for i in range(10)], Sampling())
        backend.close()
    assert not [r for r in caplog.records if r.levelno <= logging.INFO]


def test_transport_stream_yields_every_index_once():
    with FakeOpenAI() as srv:
        transport = Transport("t", srv.base_url, "EMPTY", window=3, timeout_s=5, max_retries=0)
        bodies = [{"model": "m", "messages": conv(f"q{i}")} for i in range(25)]
        seen = [i for group in transport.stream(bodies) for i, _ in group]
        transport.close()
    assert sorted(seen) == list(range(25))


def test_a_closed_transport_can_be_used_again():
    with FakeOpenAI() as srv:
        backend = OpenAIBackend(card(srv.base_url))
        [first] = backend.generate([conv("a")], Sampling())
        backend.close()
        [second] = backend.generate([conv("b")], Sampling())
        backend.close()
    assert (first.text, second.text) == ("a", "b")


def test_proxy_from_the_environment_unless_no_proxy(monkeypatch):
    from xlexp.llm.wire import env_proxy

    for name in (
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(name, raising=False)
    assert env_proxy("https://api.example.com/v1/chat/completions") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.local:3128")
    assert env_proxy("https://api.example.com/v1/chat/completions") == "http://proxy.local:3128"
    monkeypatch.setenv("NO_PROXY", "api.example.com")
    assert env_proxy("https://api.example.com/v1/chat/completions") is None

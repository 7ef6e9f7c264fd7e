"""One role served by several replicas (a card whose base_url is a list), against real HTTP
servers on 127.0.0.1: requests go to the replica with the fewest in flight, each replica has its
own breaker, a request that failed on a replica that is down is answered by another (no failure
while one answers), preflight checks each replica, the ledger counts one role and reports the
split of its calls; and the generate stage finishes on one replica when the other is killed
mid-stage, with the same artifacts as a run against one server.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fakeserver import FakeOpenAI, Reply, dead_url
from omegaconf import OmegaConf
from test_chain import Teacher, compose_cfg, overrides
from test_faults import artifact_bytes

import xlexp.llm.wire as wire
from xlexp.__main__ import run
from xlexp.config import LLMConfig
from xlexp.errors import ConfigError
from xlexp.failures import BackendFailure
from xlexp.ledger import markdown_cost, split_line
from xlexp.llm import Sampling, load
from xlexp.llm.card import base_urls, card_key, check_card
from xlexp.llm.openai import OpenAIBackend
from xlexp.llm.preflight import PreflightError, check_roles
from xlexp.llm.transport import Transport

TESTS = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(wire, "BASE_WAIT_S", 0.001)


def card(base_url, **kw):
    kw.setdefault("timeout_s", 5.0)
    kw.setdefault("max_retries", 0)  # a failover is not a retry: none is needed
    return OmegaConf.structured(
        LLMConfig(name="fake", backend="openai", model="fake-model", base_url=base_url, **kw)
    )


def conv(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def chat(role, n: int, prefix: str = "q"):
    return role.chat([conv(f"{prefix}{i}") for i in range(n)])


# ------------------------------------------------------------------ the choice of a replica


def test_a_request_goes_to_the_replica_with_the_fewest_in_flight():
    t = Transport("t", [dead_url(), dead_url(), dead_url()], "EMPTY", window=4, timeout_s=1,
                  max_retries=0)
    a, b, c = t.replicas
    a.in_flight, b.in_flight, c.in_flight = 3, 1, 2
    assert t.replica_set.pick(set()) is b
    b.in_flight = 4
    assert t.replica_set.pick(set()) is c
    # Equal load: the one that has had the fewest requests (an idle set splits evenly).
    a.in_flight = b.in_flight = c.in_flight = 0
    a.requests, b.requests, c.requests = 5, 5, 4
    assert t.replica_set.pick(set()) is c
    # A replica this request already tried is taken only when every other one has been.
    assert t.replica_set.pick({2}) is a and t.replica_set.pick({0, 1, 2}) is c
    t.close()


def test_a_pair_of_equal_replicas_splits_the_load_and_each_keeps_its_window(tmp_path):
    slow = Reply(text="ok", delay=0.05)
    with FakeOpenAI(lambda body: slow) as a, FakeOpenAI(lambda body: slow) as b:
        role = load(card([a.base_url, b.base_url], max_concurrency=3), tmp_path)
        answers = chat(role, 60)
        assert all(x.ok for x in answers)
        assert a.calls + b.calls == 60 and abs(a.calls - b.calls) <= 6, (a.calls, b.calls)
        assert a.max_in_flight <= 3 and b.max_in_flight <= 3
        assert a.max_in_flight >= 2 and b.max_in_flight >= 2  # both busy at once
        assert role.usage.replicas == {a.base_url: a.calls, b.base_url: b.calls}
        role.close()


def test_a_slow_replica_gets_fewer_requests(tmp_path):
    with (
        FakeOpenAI(lambda body: Reply(text="slow", delay=0.2)) as slow,
        FakeOpenAI(lambda body: Reply(text="fast", delay=0.01)) as fast,
    ):
        role = load(card([slow.base_url, fast.base_url], max_concurrency=2), tmp_path)
        assert all(x.ok for x in chat(role, 60))
        assert fast.calls > 3 * slow.calls, (slow.calls, fast.calls)
        role.close()


# ------------------------------------------------------------------ failover and breakers


def test_a_dead_replica_opens_its_own_breaker_and_the_other_answers_everything(tmp_path, caplog):
    dead = dead_url()
    with FakeOpenAI() as alive:
        role = load(card([dead, alive.base_url], max_concurrency=2, breaker_after=3), tmp_path)
        with caplog.at_level(logging.WARNING, logger="xlexp.llm.transport"):
            answers = chat(role, 40)
        assert all(x.ok for x in answers) and alive.calls == 40
        backend = role.backend
        dead_breaker, alive_breaker = backend.breakers
        assert dead_breaker.open and not alive_breaker.open
        split = backend.split()
        # Each request that met the dead replica was answered by the other, at once: at most
        # the breaker's threshold plus the requests in flight when it opened met it.
        assert 3 <= split[dead]["failed"] <= 3 + 2, split
        assert backend.failovers == split[dead]["failed"]
        assert backend._transport.retries == 0 and role.usage.failures == 0
        assert role.usage.replicas == {alive.base_url: 40}
        down = [r.getMessage() for r in caplog.records if "is down" in r.getMessage()]
        assert len(down) == 1 and dead in down[0], down  # one line when it goes down
        role.close()


@pytest.mark.parametrize("fault", ["503", "refused", "timeout"])
def test_a_replica_that_fails_mid_batch_hands_its_requests_to_the_other(tmp_path, fault):
    """Half of the calls in, replica A starts failing (503s, refused connections, or hanging
    past the timeout): every call is still answered (by B), with no retries (max_retries=0:
    against one endpoint, each of those calls would have failed)."""
    state = {"calls": 0}
    lock = threading.Lock()
    hang = Reply(text="late", delay=3.0)

    def a_handler(body: dict) -> str | Reply:
        with lock:
            state["calls"] += 1
            broken = state["calls"] > 10
        if broken and fault == "timeout":
            return hang
        return Reply(text="from a", delay=0.01)

    # A replica that is refused: a process of its own, killed (its connections die with it).
    proc, killed_url = replica_process() if fault == "refused" else (None, "")
    with FakeOpenAI(a_handler) as a, FakeOpenAI(lambda body: Reply(text="b", delay=0.01)) as b:
        urls = [killed_url or a.base_url, b.base_url]
        timeout = 0.5 if fault == "timeout" else 5.0
        role = load(card(urls, max_concurrency=2, timeout_s=timeout, breaker_after=2), tmp_path)
        assert all(x.ok for x in chat(role, 20, "warm"))
        if fault == "503":
            a.outage = Reply(503, text="engine dead")
        elif proc is not None:
            proc.kill()
            proc.wait(timeout=10)
        answers = chat(role, 40)
        assert all(x.ok for x in answers), [x.error for x in answers if not x.ok][:3]
        assert role.usage.failures == 0 and role.backend._transport.retries == 0
        assert role.backend.breakers[0].open and not role.backend.breakers[1].open
        assert sum(role.usage.replicas.values()) == 60
        role.close()


def test_when_every_replica_is_down_the_calls_fail_as_against_one_endpoint(tmp_path):
    urls = [dead_url(), dead_url()]
    role = load(card(urls, max_concurrency=1, breaker_after=2, max_retries=1), tmp_path)
    with pytest.raises(BackendFailure) as failure:
        chat(role, 20)
    message = str(failure.value)
    assert failure.value.stop and "every replica is down (2)" in message, message
    for url in urls:
        assert url in message  # the failure line names the endpoint: both replicas
    assert role.usage.failures == 20 and role.usage.replicas == {}
    # A bounded number of attempts: the breakers spare the rest.
    assert role.backend.requests <= 2 * 4, role.backend.split()
    role.close()


def test_a_replica_that_does_not_serve_the_model_is_routed_around(tmp_path):
    with (
        FakeOpenAI(served=["another-model"]) as wrong,
        FakeOpenAI(served=["fake-model"]) as right,
    ):
        role = load(card([wrong.base_url, right.base_url], breaker_after=2), tmp_path)
        assert all(x.ok for x in chat(role, 12))
        assert role.usage.replicas == {right.base_url: 12}
        role.close()


def test_an_adapter_is_served_by_every_replica_under_one_name(tmp_path):
    adapter = tmp_path / "sft" / "adapter"
    with FakeOpenAI(served=["fake-model"]) as a, FakeOpenAI(served=["fake-model"]) as b:
        a.lora_modules["tuned"] = str(adapter)  # started with --lora-modules tuned=<adapter>
        b.lora_loading = True  # started without it: loads at run time
        backend = OpenAIBackend(card([a.base_url, b.base_url]))
        assert backend.served_adapter(str(adapter)) == "tuned"
        assert b.lora_loads == [{"lora_name": "tuned", "lora_path": str(adapter)}]
        answers = backend.generate(
            [conv(f"q{i}") for i in range(10)], Sampling(), adapter=str(adapter)
        )
        assert all(x.ok for x in answers) and a.calls and b.calls  # both serve the adapter
        assert {r["model"] for r in a.requests + b.requests} == {"tuned"}
        backend.close()


def test_content_rejects_stay_data_and_count_for_the_replica_that_answered(tmp_path):
    too_long = Reply(400, text="prompt is too long")
    with FakeOpenAI(lambda body: too_long) as a, FakeOpenAI(lambda body: too_long) as b:
        role = load(card([a.base_url, b.base_url]), tmp_path)
        answers = chat(role, 10)
        assert all(x.error and not x.failed for x in answers)
        assert a.calls + b.calls == 10  # a content reject is not failed over: it is the prompt's
        assert sum(role.usage.replicas.values()) == 10 and role.usage.errors == 10
        role.close()


# ------------------------------------------------------------------ cards and preflight


def test_a_single_base_url_is_one_endpoint_as_before_and_the_key_ignores_replicas():
    one, pair = card("http://a:8000/v1"), card(["http://a:8000/v1", "http://b:8000/v1"])
    assert base_urls(one) == ["http://a:8000/v1"] and base_urls(card(None)) == [
        "https://api.openai.com/v1"
    ]
    assert card_key(one) == card_key(pair)  # the same model: the same artifacts and cache
    assert OpenAIBackend.pool_key(one) != OpenAIBackend.pool_key(pair)
    assert OpenAIBackend.window(pair) == 2 * OpenAIBackend.window(one)
    single = OpenAIBackend(one)
    assert len(single._transport.replicas) == 1 and single._transport.url == (
        "http://a:8000/v1/chat/completions"
    )
    single.close()


def test_a_list_of_replicas_is_checked_and_the_batch_api_takes_one_endpoint():
    check_card("teacher", card(["http://a:8000/v1", "http://b:8000/v1"]), lambda: False)
    check_card("teacher", card(["http://a:8000/v1"], batch_api=True), lambda: False)
    with pytest.raises(ConfigError, match=r"teacher\.base_url.*Batch API.*one base_url"):
        check_card(
            "teacher", card(["http://a:8000/v1", "http://b:8000/v1"], batch_api=True),
            lambda: False,
        )
    with pytest.raises(ConfigError, match=r"teacher\.base_url.*twice"):
        check_card("teacher", card(["http://a:8000/v1", "http://a:8000/v1"]), lambda: False)
    with pytest.raises(ConfigError, match=r"teacher\.base_url"):
        check_card("teacher", card([]), lambda: False)


def test_preflight_checks_each_replica(caplog):
    dead = dead_url()
    with (
        FakeOpenAI(served=["fake-model"]) as good,
        FakeOpenAI(served=["another-model"]) as wrong,
    ):
        # One replica down: a warning naming it; the run goes on with the others.
        with caplog.at_level(logging.WARNING, logger="xlexp.llm.openai"):
            check_roles({"teacher": card([good.base_url, dead])})
        warned = [r.getMessage() for r in caplog.records]
        assert len(warned) == 1 and warned[0].startswith("teacher: cannot reach " + dead), warned
        # Every replica down: one line each, naming the role and the replica.
        other_dead = dead_url()
        with pytest.raises(PreflightError) as err:
            check_roles({"teacher": card([dead, other_dead])})
        assert len(err.value.lines) == 2
        for line, url in zip(err.value.lines, [dead, other_dead], strict=True):
            assert line.startswith(f"teacher: cannot reach {url}/models"), line
        # A replica serving another model is an error even while the others serve this one.
        with pytest.raises(PreflightError) as err:
            check_roles({"teacher": card([good.base_url, wrong.base_url])})
        assert err.value.lines == [
            f"teacher: {wrong.base_url} does not serve teacher.model 'fake-model' "
            "(it serves: another-model)"
        ]


# ------------------------------------------------------------------ a run, one replica killed

REPLICA_SCRIPT = f"""
import sys, time
sys.path.insert(0, {str(TESTS)!r})
from fakeserver import FakeOpenAI
from test_chain import Teacher
srv = FakeOpenAI(Teacher()).start()
print(srv.base_url, flush=True)
while True:
    time.sleep(60)
"""


def replica_process() -> tuple[subprocess.Popen, str]:
    """A fake server in a process of its own, so killing it drops its connections too."""
    proc = subprocess.Popen(
        [sys.executable, "-c", REPLICA_SCRIPT], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])},
    )
    return proc, proc.stdout.readline().strip()


def generate_cfg(urls: str, store: Path):
    """The generate stage with every role (teacher, translators, LLM QE) on `urls`."""
    args = overrides(urls, store / "unused-tiny", store, stages="[generate]")
    for name in ("smollm2-greedy", "smollm2-sampled"):
        args += [
            f"translators.{name}.backend=openai",
            f"translators.{name}.model=fake-teacher",
            f"translators.{name}.base_url={urls}",
            f"translators.{name}.max_retries=0",
        ]
    return compose_cfg(args + ["teacher.max_retries=0", "judge.max_retries=0"])


def test_generate_finishes_on_one_replica_when_the_other_is_killed_mid_stage(tmp_path, caplog):
    with FakeOpenAI(Teacher()) as single:
        run(generate_cfg(single.base_url, tmp_path / "one"), tmp_path / "run-one")
        total = single.calls
    proc, b_url = replica_process()
    killed = threading.Event()
    teacher = Teacher()

    lock = threading.Lock()

    def a_handler(body: dict) -> str | Reply:
        with lock:
            if a.calls >= 15 and not killed.is_set():  # mid-stage: B has answered about as many
                os.kill(proc.pid, signal.SIGKILL)
                killed.set()
        return teacher(body)

    try:
        with FakeOpenAI(a_handler) as a, caplog.at_level(logging.INFO):
            urls = f"[{a.base_url},{b_url}]"
            started = time.time()
            summary = run(generate_cfg(urls, tmp_path / "pair"), tmp_path / "run-pair")
            seconds = time.time() - started
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert killed.is_set()
    # Nothing failed is stored: every artifact byte for byte what one healthy server gave.
    assert artifact_bytes(tmp_path / "pair") == artifact_bytes(tmp_path / "one")
    for path in (tmp_path / "pair").glob("*/*/rejects.jsonl"):
        assert "backend error" not in path.read_text(), path
    # One row per role in the ledger (not one per replica), its calls split over the two.
    roles = summary["cost"]["roles"]
    assert "teacher" in roles and not any("http" in role for role in roles), list(roles)
    split: dict[str, int] = {}
    for role, row in roles.items():
        assert set(row["replicas"]) <= {a.base_url, b_url}, row
        assert sum(row["replicas"].values()) == row["calls"], (role, row)
        for url, n in row["replicas"].items():
            split[url] = split.get(url, 0) + n
    assert sum(split.values()) == total and 0 < split[b_url] < split[a.base_url], split
    # The run log gives the split of each artifact built: `reverse: teacher: 8 calls: <a> 4,
    # <b> 4`; the teacher's lines add up to its row.
    logged: dict[str, int] = {}
    stages = set()
    for record in caplog.records:
        line = re.fullmatch(r"(\w+): teacher: (\d+) calls: (.*)", record.getMessage())
        if line:
            stages.add(line.group(1))
            parts = [p.rsplit(" ", 1) for p in line.group(3).split(", ")]
            assert sum(int(n) for _, n in parts) == int(line.group(2))
            for url, n in parts:
                logged[url] = logged.get(url, 0) + int(n)
    assert stages == {"reverse", "refine"} and logged == roles["teacher"]["replicas"], logged
    # results.md's cost table says it too.
    assert f"- {split_line('teacher', roles['teacher']['replicas'])}" in markdown_cost(
        summary["cost"]
    )
    down = [r.getMessage() for r in caplog.records if "is down" in r.getMessage()]
    assert down and all(b_url in m for m in down), down
    print(f"\nreplicas: {total} calls in {seconds:.1f}s; split {split}")

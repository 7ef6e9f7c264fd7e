"""OpenAI Batch API mode: the real `openai` client against the fake server's /v1/files and
/v1/batches, through ChatModel (response cache in front) as every stage uses it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakeserver import FakeOpenAI, Reply
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from xlexp.config import ConfigError, LLMConfig, SamplingConfig, register, validate
from xlexp.failures import BackendFailure
from xlexp.llm import load

ROOT = Path(__file__).resolve().parents[1]
CONVS = [[{"role": "user", "content": f"question number {i}"}] for i in range(4)]


def answer(body: dict) -> str | Reply:
    text = body["messages"][-1]["content"]
    if "bad" in text:
        return Reply(400, text="this request is malformed")
    return f"answer to {text}"


def batch_card(base_url: str, **overrides):
    fields = dict(
        name="judge",
        backend="openai",
        model="fake-judge",
        base_url=base_url,
        batch_api=True,
        batch_poll_s=0.01,
        max_retries=0,
        price_in_per_mtok=2.5,
        price_out_per_mtok=10.0,
    )
    fields.update(overrides)
    return OmegaConf.structured(LLMConfig(sampling=SamplingConfig(max_tokens=16), **fields))


def submitted_lines(srv: FakeOpenAI, batch_id: str) -> list[dict]:
    data = srv.files[srv.batches[batch_id]["input_file_id"]]
    return [json.loads(line) for line in data.decode().splitlines()]


def test_one_batch_for_all_misses_then_cache_hits_and_only_new_requests_submitted(
    tmp_path: Path,
) -> None:
    with FakeOpenAI(answer) as srv:
        card = batch_card(srv.base_url)
        model = load(card, tmp_path)
        comps = model.chat([*CONVS, CONVS[0]])  # a duplicate is asked once
        assert [c.text for c in comps] == [
            f"answer to question number {i}" for i in (0, 1, 2, 3, 0)
        ]
        assert srv.calls == 0 and srv.batch_creations == 1  # no synchronous request at all
        lines = submitted_lines(srv, "batch_1")
        sampling = model.sampling()
        assert [line["custom_id"] for line in lines] == [
            model.cache_key(c, sampling, 0, None) for c in CONVS
        ]
        assert {line["url"] for line in lines} == {"/v1/chat/completions"}
        assert lines[0]["body"]["model"] == "fake-judge" and lines[0]["body"]["max_tokens"] == 16
        (record,) = [json.loads(p.read_text()) for p in (tmp_path / "batches").glob("*.json")]
        assert (
            record["batch_id"] == "batch_1"
            and record["status"] == "completed"
            and record["n_requests"] == 4
        )
        (kept,) = (tmp_path / "batches").glob(
            "*.batch_1.output.jsonl"
        )  # raw results kept in the store
        assert len(kept.read_text().splitlines()) == 4
        # Usage is counted; the Batch API bills half the card price.
        u = model.usage
        assert u.calls == 4 and u.prompt_tokens == 4 * 3 and u.completion_tokens == 4 * 5
        assert u.cost(card) == pytest.approx((12 * 2.5 + 20 * 10.0) / 1e6 * 0.5)

        # Rerun in a new process-like role: everything from the response cache, no batch.
        again = load(card, tmp_path).chat(CONVS)
        assert all(c.cached for c in again) and srv.batch_creations == 1
        # Two cached + one new request: only the new one is submitted.
        more = [CONVS[0], [{"role": "user", "content": "question number 9"}], CONVS[1]]
        comps = load(card, tmp_path).chat(more)
        assert [c.cached for c in comps] == [True, False, True] and comps[
            1
        ].text == "answer to question number 9"
        assert srv.batch_creations == 2 and len(submitted_lines(srv, "batch_2")) == 1


CHILD = """
import sys
from omegaconf import OmegaConf
from xlexp.config import LLMConfig, SamplingConfig
from xlexp.llm import load
base_url, store = sys.argv[1], sys.argv[2]
card = OmegaConf.structured(LLMConfig(name="judge", backend="openai", model="fake-judge",
    base_url=base_url, batch_api=True, batch_poll_s=0.01, max_retries=0,
    sampling=SamplingConfig(max_tokens=16)))
convs = [[{"role": "user", "content": f"question number {i}"}] for i in range(4)]
load(card, store).chat(convs)
"""


@pytest.mark.slow
def test_restart_mid_poll_resumes_the_same_batch(tmp_path: Path) -> None:
    with FakeOpenAI(answer) as srv:
        srv.hold_batches = True  # the batch stays in_progress while the first job polls
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, srv.base_url, str(tmp_path)], cwd=ROOT
        )
        try:
            deadline = time.time() + 60
            while srv.batch_retrievals < 3 and time.time() < deadline and child.poll() is None:
                time.sleep(0.05)
            assert srv.batch_retrievals >= 3, "the first job never polled"
        finally:
            child.kill()  # killed mid-poll, like a preempted Slurm job
            child.wait()
        (record,) = [json.loads(p.read_text()) for p in (tmp_path / "batches").glob("*.json")]
        assert record["batch_id"] == "batch_1" and srv.batches["batch_1"]["status"] == "in_progress"

        srv.hold_batches = False
        card = batch_card(srv.base_url, price_in_per_mtok=0.0, price_out_per_mtok=0.0)
        comps = load(card, tmp_path).chat(CONVS)
        assert [c.text for c in comps] == [f"answer to question number {i}" for i in range(4)]
        assert srv.batch_creations == 1  # resumed, never resubmitted
        assert len(srv.batch_requests) == 4
        assert all(c.cached for c in load(card, tmp_path).chat(CONVS))


def test_killed_between_create_and_record_finds_the_batch_by_metadata(tmp_path: Path) -> None:
    with FakeOpenAI(answer) as srv:
        card = batch_card(srv.base_url)
        srv.hold_batches = True
        srv.batch_polls = 10**9
        backend_model = load(card, tmp_path)
        sampling = backend_model.sampling()
        backend = backend_model.backend
        # Upload + create, then pretend the record write after create never happened.
        keys = {backend_model.cache_key(c, sampling, 0, None): c for c in CONVS}
        from xlexp.store import digest

        name = digest(
            {"model": "fake-judge", "endpoint": "/v1/chat/completions", "requests": sorted(keys)},
            n=24,
        )
        path = backend.record_path(name)
        record = backend._submit({"name": name, "model": "fake-judge"}, path, keys, sampling, 0)
        assert record["batch_id"] == "batch_1"
        del record["batch_id"]
        path.write_text(json.dumps(record))
        srv.hold_batches = False
        srv.batch_polls = 1
        comps = load(card, tmp_path).chat(CONVS)
        assert all(c.ok for c in comps) and srv.batch_creations == 1


def test_errored_request_line_becomes_a_recorded_error_and_is_retried_later(tmp_path: Path) -> None:
    convs = [*CONVS[:2], [{"role": "user", "content": "a bad question"}]]
    with FakeOpenAI(answer) as srv:
        model = load(batch_card(srv.base_url), tmp_path)
        comps = model.chat(convs)
        assert [c.ok for c in comps] == [True, True, False]
        assert comps[2].error.startswith("BatchRequestError: 400") and "malformed" in comps[2].error
        assert model.usage.errors == 1 and model.usage.calls == 3
        # Errors are not cached: a rerun submits only the failed request, as a new batch.
        comps = load(batch_card(srv.base_url), tmp_path).chat(convs)
        assert [c.cached for c in comps] == [True, True, False]
        assert srv.batch_creations == 2 and len(submitted_lines(srv, "batch_2")) == 1


def test_failed_and_expired_batches_give_errors_and_a_later_run_resubmits_the_rest(
    tmp_path: Path,
) -> None:
    with FakeOpenAI(answer) as srv:
        srv.batch_outcome = "failed"
        # A failed batch is no answer: the call raises (nothing cached), naming the batch's error.
        with pytest.raises(
            BackendFailure, match="4x .*batch_1 failed: invalid_request: fake: this batch failed"
        ):
            load(batch_card(srv.base_url), tmp_path).chat(CONVS)
        assert list(
            (tmp_path / "batches").glob("*.batch_1.failed.json")
        )  # set aside, kept for audit

        srv.batch_outcome = "expired"  # answers the first half, then expires
        with pytest.raises(BackendFailure, match="2x .*batch_2 expired"):
            load(batch_card(srv.base_url), tmp_path).chat(CONVS)  # the answered half is cached

        srv.batch_outcome = "completed"
        comps = load(batch_card(srv.base_url), tmp_path).chat(CONVS)
        assert [c.cached for c in comps] == [True, True, False, False] and all(c.ok for c in comps)
        assert srv.batch_creations == 3 and len(submitted_lines(srv, "batch_3")) == 2


def test_batch_api_needs_the_openai_backend() -> None:
    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["judge.batch_api=true"])  # judge: the tiny hf model
    with pytest.raises(ConfigError, match="judge.batch_api"):
        validate(cfg, cuda=False)


@pytest.mark.slow
def test_run_with_judge_and_reference_on_the_batch_api(tmp_path: Path) -> None:
    """The stages do not care: a whole evaluate run, judge and reference through batches."""
    from test_ledger import CARDS, compose_cfg
    from test_ledger import answer as ledger_answer

    from xlexp.__main__ import run

    with FakeOpenAI(ledger_answer) as srv:
        sync = run(compose_cfg(srv.base_url, tmp_path / "sync"), tmp_path / "run-sync")
        cfg = compose_cfg(srv.base_url, tmp_path / "batch")
        for role in ("judge", "reference"):
            cfg[role].batch_api = True
            cfg[role].batch_poll_s = 0.01
        calls = srv.calls
        summary = run(cfg, tmp_path / "run-batch")
        assert len(cfg.langs.codes) > 1
        assert srv.batch_creations == 2  # one batch per role, every language in it
        # Only the system's responses went out as synchronous requests.
        assert {r["model"] for r in srv.requests[calls:]} == {CARDS["model"][0]}
        assert summary["metrics"]["avg"]["win_rate"] == sync["metrics"]["avg"]["win_rate"]
        for stage in ("reference", "judge"):  # half price on the Batch API
            assert summary["cost"]["stages"][stage]["total"]["usd"] == pytest.approx(
                sync["cost"]["stages"][stage]["total"]["usd"] * 0.5, abs=1e-9
            )
            assert summary["cost"]["stages"][stage]["total"]["usd"] > 0


def test_completed_batch_whose_results_never_reached_the_cache_is_read_back_not_resubmitted(
    tmp_path: Path,
) -> None:
    with FakeOpenAI(answer) as srv:
        load(batch_card(srv.base_url), tmp_path).chat(CONVS)
        # Killed after the download, before the cache write; meanwhile the provider dropped the
        # file.
        for name in ("cache.sqlite", "cache.sqlite-wal", "cache.sqlite-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        srv.files.pop(srv.batches["batch_1"]["output_file_id"])
        comps = load(batch_card(srv.base_url), tmp_path).chat(CONVS)
        assert [c.text for c in comps] == [f"answer to question number {i}" for i in range(4)]
        assert not any(c.cached for c in comps) and srv.batch_creations == 1


def test_two_jobs_needing_the_same_batch_submit_it_once(tmp_path: Path) -> None:
    import threading

    with FakeOpenAI(answer) as srv:
        srv.batch_polls = 40  # the first job is still polling when the second arrives
        results: dict[int, list] = {}
        cached: dict[int, list] = {}

        def job(n: int) -> None:
            comps = load(batch_card(srv.base_url), tmp_path).chat(CONVS)
            results[n], cached[n] = [c.text for c in comps], [c.cached for c in comps]

        threads = [threading.Thread(target=job, args=(n,)) for n in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert results[0] == results[1] == [f"answer to question number {i}" for i in range(4)]
        assert not any(
            cached[0] + cached[1]
        )  # both jobs went to the Batch API, neither via the cache
        assert srv.batch_creations == 1 and len(srv.batch_requests) == 4


def test_unknown_batch_id_is_recorded_as_errors_and_set_aside(tmp_path: Path) -> None:
    with FakeOpenAI(answer) as srv:
        load(batch_card(srv.base_url), tmp_path).chat(CONVS[:2])
        (path,) = (tmp_path / "batches").glob("*.json")
        srv.batches.clear()  # the provider forgot it (another account, another server)
        for name in ("cache.sqlite", "cache.sqlite-wal", "cache.sqlite-shm"):
            (tmp_path / name).unlink(missing_ok=True)
        with pytest.raises(BackendFailure, match="2x .*NotFoundError: 404"):
            load(batch_card(srv.base_url), tmp_path).chat(CONVS[:2])
        assert not path.exists() and list((tmp_path / "batches").glob("*.batch_1.not_found.json"))
        comps = load(batch_card(srv.base_url), tmp_path).chat(CONVS[:2])  # next run: submitted anew
        assert all(c.ok for c in comps) and srv.batch_creations == 2

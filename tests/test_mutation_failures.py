"""What an answer from a backend becomes: a failure (no answer: never stored, asked again on the
next run), a content reject (the model's server answered that this request cannot be answered:
stored with its reason) or data. Tables of HTTP statuses, error bodies and Batch API result
lines against the outcome, for the streaming backend's wire format and the Batch API backend,
the latter against a fake Batch API on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import openai
import pytest
from fakeserver import FakeOpenAI, Reply, error_body
from omegaconf import OmegaConf
from test_openai_batch import batch_card

import xlexp.llm.openai_batch as openai_batch
import xlexp.llm.wire as wire
from xlexp.config import LLMConfig
from xlexp.failures import BackendFailure, RoleFailures, merge
from xlexp.llm import load
from xlexp.llm.base import Completion, Sampling
from xlexp.llm.openai_batch import OpenAIBatchBackend
from xlexp.llm.wire import TransportError, retry_after, status_error

SECRET = "sk-test-secret-123"


# ----------------------------------------------------------------------------- wire.status_error


def err(message: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "x"}}).encode()


# status -> (kind, openai-style name); the kind decides: bad_request is a content reject (data),
# the retryable ones are tried again, every other one is a failure at once.
STATUSES = [
    (400, "bad_request", "BadRequestError"),
    (413, "bad_request", "APIStatusError"),
    (422, "bad_request", "UnprocessableEntityError"),
    (401, "auth", "AuthenticationError"),
    (403, "auth", "PermissionDeniedError"),
    (404, "model", "NotFoundError"),
    (408, "timeout", "APIStatusError"),
    (409, "status", "ConflictError"),
    (402, "status", "APIStatusError"),
    (410, "status", "APIStatusError"),
    (499, "status", "APIStatusError"),
    (429, "rate_limit", "RateLimitError"),
    (500, "server", "InternalServerError"),
    (502, "server", "InternalServerError"),
    (503, "server", "InternalServerError"),
    (599, "server", "InternalServerError"),
]
RETRIED = {"rate_limit", "timeout", "server", "connection"}
DOWN = {"connection", "timeout", "rate_limit", "server", "auth", "model", "status"}


@pytest.mark.parametrize("status,kind,name", STATUSES)
def test_status_error_kind_name_and_whether_it_is_data(status: int, kind: str, name: str) -> None:
    exc = status_error(status, err("why"), {})
    assert (exc.kind, exc.name, exc.status, exc.message, str(exc)) == (
        kind, name, status, "why", "why"
    )
    assert exc.retry_after is None
    assert exc.retryable == (kind in RETRIED)
    # Only 400/413/422 are content rejects; a 5xx or 429 is never one.
    assert (kind == wire.CONTENT_REJECT) == (status in (400, 413, 422))


def test_error_kind_sets() -> None:
    assert wire.CONTENT_REJECT == "bad_request"
    assert wire.RETRYABLE_KINDS == RETRIED
    assert wire.ENDPOINT_DOWN_KINDS == DOWN
    assert set(wire.ERROR_KINDS) == DOWN | {"bad_response", "no_content", "breaker", "bad_request"}
    assert len(wire.ERROR_KINDS) == 11
    for kind in wire.ERROR_KINDS:
        assert TransportError(kind, "N", "m").retryable == (kind in RETRIED)


@pytest.mark.parametrize(
    "body,message",
    [
        (err("the prompt is too long"), "the prompt is too long"),
        (json.dumps({"error": "plain"}).encode(), "plain"),  # error as a string
        (json.dumps({"message": "top level"}).encode(), "top level"),  # no "error" key
        (json.dumps({"error": {"code": 5}}).encode(), "{'code': 5}"),  # error without a message
        (json.dumps({"error": {"message": ""}}).encode(), "{'message': ''}"),
        (json.dumps([1, 2]).encode(), "[1, 2]"),
        (json.dumps("just text").encode(), "just text"),
        (b"  <html>502 Bad Gateway</html>\n", "<html>502 Bad Gateway</html>"),
        (b"x" * 150 + b"y" * 150, "x" * 150 + "y" * 50),  # not JSON: the first 200 characters
        (b"\xff oops", "\ufffd oops"),
        (b"", ""),
    ],
)
def test_status_error_message_from_the_body(body: bytes, message: str) -> None:
    exc = status_error(500, body, None)
    assert exc.message == message and exc.kind == "server"


def test_status_error_takes_retry_after_from_the_headers() -> None:
    exc = status_error(429, err("slow down"), {"retry-after": "7"})
    assert (exc.kind, exc.retry_after, exc.retryable) == ("rate_limit", 7.0, True)
    assert status_error(503, b"", {"retry-after-ms": "1500"}).retry_after == 1.5


def test_describe_is_name_status_message_cut_at_300() -> None:
    assert status_error(503, err("busy"), {}).describe() == "InternalServerError: 503 busy"
    assert TransportError("timeout", "APITimeoutError", "late").describe() == (
        "APITimeoutError: late"
    )
    assert TransportError("status", "N", "m", status=0).describe() == "N: 0 m"
    exact = TransportError("server", "E", "m" * 297)  # "E: " + 297 = 300: kept whole
    assert exact.describe() == "E: " + "m" * 297
    long = TransportError("server", "E", "m" * 298)
    assert long.describe() == "E: " + "m" * 294 + "..." and len(long.describe()) == 300


# ----------------------------------------------------------------------------- retry_after


def http_date(offset_s: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + offset_s))


@pytest.mark.parametrize(
    "headers,seconds",
    [
        (None, None),
        ({}, None),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "-5"}, 0.0),
        ({"retry-after-ms": "250", "retry-after": "3"}, 0.25),  # the ms form wins
        ({"retry-after-ms": "soon", "retry-after": "3"}, 3.0),  # unreadable ms: the seconds
        ({"retry-after-ms": "soon"}, None),
        ({"retry-after": "2.5"}, 2.5),
        ({"retry-after": "-2"}, 0.0),
        ({"retry-after": ""}, None),
        ({"retry-after": "   "}, None),
        ({"retry-after": "soon"}, None),  # neither seconds nor a date: no advice
        ({"retry-after": http_date(-3600)}, 0.0),  # a date past
    ],
)
def test_retry_after_forms(headers: Any, seconds: float | None) -> None:
    assert retry_after(headers) == seconds


def test_retry_after_http_date_in_the_future(monkeypatch: pytest.MonkeyPatch) -> None:
    assert 25 <= retry_after({"retry-after": http_date(30)}) <= 30
    # A date in GMT without a zone of its own ("-0000") is still GMT on a machine that is not.
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        no_zone = http_date(30).replace("GMT", "-0000")
        assert 25 <= retry_after({"retry-after": no_zone}) <= 30
    finally:
        monkeypatch.undo()
        time.tzset()


def test_an_unreadable_retry_after_on_a_503_is_still_a_retryable_server_error() -> None:
    exc = status_error(503, err("busy"), {"retry-after": "in a while"})
    assert (exc.kind, exc.retryable, exc.retry_after) == ("server", True, None)


# ------------------------------------------------------------------------- wire.parse_completion


def chat_json(content: Any = "hi", usage: Any = None, logprobs: Any = None, **extra: Any) -> dict:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "logprobs": logprobs,
                "finish_reason": "length",
            }
        ],
        "usage": usage,
    }
    body.update(extra)
    return body


LOGPROBS = {
    "content": [
        {
            "token": "A",
            "logprob": -0.5,
            "bytes": None,
            "top_logprobs": [
                {"token": "B", "logprob": -0.25, "bytes": None},
                {"token": "A", "logprob": -0.75, "bytes": None},
            ],
        },
        {"token": "C", "logprob": -1, "bytes": None, "top_logprobs": []},
    ]
}
USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


def test_parse_completion_reads_text_tokens_and_logprobs() -> None:
    c = wire.parse_completion(chat_json("hello", USAGE, LOGPROBS), want_logprobs=True)
    assert (c.text, c.prompt_tokens, c.completion_tokens) == ("hello", 11, 7)
    # the sampled token first, then the listed ones it does not repeat
    assert c.logprobs == [{"A": -0.5, "B": -0.25}, {"C": -1.0}]
    assert c.top_logprobs == [[("B", -0.25), ("A", -0.75)], []]
    assert (c.error, c.failure) == (None, None)
    plain = wire.parse_completion(chat_json("hello", USAGE, LOGPROBS), want_logprobs=False)
    assert plain.logprobs is None and plain.top_logprobs is None
    none = wire.parse_completion(chat_json("", None, None), want_logprobs=True)
    assert (none.text, none.prompt_tokens, none.completion_tokens) == ("", 0, 0)
    assert none.logprobs is None and none.top_logprobs is None


@pytest.mark.parametrize(
    "data,kind",
    [
        (chat_json(None), "no_content"),
        ({"choices": []}, "bad_response"),
        ({}, "bad_response"),
        ([chat_json()], "bad_response"),
        ({"choices": ["text"]}, "bad_response"),
        ({"choices": [{"message": "text"}]}, "bad_response"),
        (chat_json("x", usage={"prompt_tokens": "many"}), "bad_response"),
        (chat_json("x", logprobs={"content": [{"token": "a"}]}), "bad_response"),
    ],
)
def test_parse_completion_failures(data: Any, kind: str) -> None:
    with pytest.raises(TransportError) as info:
        wire.parse_completion(data, want_logprobs=True)
    assert info.value.kind == kind and not info.value.retryable


def test_a_null_content_names_its_finish_reason() -> None:
    with pytest.raises(TransportError) as info:
        wire.parse_completion(chat_json(None), want_logprobs=False)
    assert info.value.describe() == (
        "NoContent: the answer's content is null (finish_reason length)"
    )


def test_logprob_conversions_keep_the_order_listed() -> None:
    assert wire.convert_logprobs(None) is None and wire.listed_logprobs(None) is None
    assert wire.convert_logprobs([]) == [] and wire.listed_logprobs([]) == []
    bare = [{"token": "C", "logprob": -1, "top_logprobs": None}]  # alternatives not sent
    assert wire.convert_logprobs(bare) == [{"C": -1.0}] and wire.listed_logprobs(bare) == [[]]


@pytest.mark.parametrize(
    "seed,index,logprobs,expected",
    [
        (None, 0, None, {}),
        (None, 1, None, {"seed": 1}),
        (None, 3, None, {"seed": 3}),
        (10, 0, None, {"seed": 10}),
        (10, 2, None, {"seed": 12}),
        (None, 0, 0, {"logprobs": True, "top_logprobs": 0}),
        (None, 0, 5, {"logprobs": True, "top_logprobs": 5}),
    ],
)
def test_request_body(seed: Any, index: int, logprobs: Any, expected: dict) -> None:
    sampling = Sampling(temperature=0.7, top_p=0.9, max_tokens=33, seed=seed, logprobs=logprobs)
    conv = [{"role": "user", "content": "q"}]
    assert wire.request_body("m", conv, sampling, index) == {
        "model": "m",
        "messages": conv,
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 33,
        **expected,
    }


# ----------------------------------------------------------------------------- Batch API: lines


@pytest.fixture
def backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> OpenAIBatchBackend:
    """A backend with a secret key (redacted from every error); no server needed to parse."""
    monkeypatch.setenv("XLEXP_TEST_KEY", SECRET)
    b = OpenAIBatchBackend(batch_card("http://127.0.0.1:9/v1", api_key_env="XLEXP_TEST_KEY"),
                           tmp_path)
    yield b
    b.close()


def line(status: Any = 200, body: Any = None, error: Any = None, **response: Any) -> dict:
    row: dict[str, Any] = {"id": "r1", "custom_id": "k", "error": error}
    row["response"] = {"status_code": status, "request_id": "q", "body": body, **response}
    return row


# One result line -> (text, error, failure). failure None with an error: a content reject.
LINES = [
    # a request the provider could not run: a failure, whatever else the line says
    (
        {"custom_id": "k", "error": {"code": "batch_expired", "message": "too late"},
         "response": None},
        None, "BatchRequestError: batch_expired: too late", "batch",
    ),
    (
        {"custom_id": "k", "error": {"code": "x", "message": f"key {SECRET}"},
         "response": {"status_code": 200, "body": chat_json("hi")}},
        None, "BatchRequestError: x: key ***", "batch",
    ),
    # this request cannot be answered: a content reject, stored with its reason
    (line(400, error_body(400, "too long")), None, "BatchRequestError: 400 too long", None),
    (line(413, error_body(413, "too big")), None, "BatchRequestError: 413 too big", None),
    (line(422, error_body(422, "bad")), None, "BatchRequestError: 422 bad", None),
    (line("400", error_body(400, "s")), None, "BatchRequestError: 400 s", None),
    (line(400, error_body(400, f"echo {SECRET}")), None, "BatchRequestError: 400 echo ***", None),
    # no answer: failures, never stored
    (line(500, error_body(500, "boom")), None, "BatchRequestError: 500 boom", "batch"),
    (line(502, "Bad Gateway"), None, "BatchRequestError: 502 Bad Gateway", "batch"),
    (line(503, {}), None, "BatchRequestError: 503 {}", "batch"),
    (line(503, {"error": None}), None, "BatchRequestError: 503 {'error': None}", "batch"),
    (line(429, error_body(429, "quota")), None, "BatchRequestError: 429 quota", "batch"),
    (line(408, error_body(408, "late")), None, "BatchRequestError: 408 late", "batch"),
    (line(401, error_body(401, f"bad key {SECRET}")), None,
     "BatchRequestError: 401 bad key ***", "batch"),
    (line(404, error_body(404, "no model")), None, "BatchRequestError: 404 no model", "batch"),
    (line(409, error_body(409, "c")), None, "BatchRequestError: 409 c", "batch"),
    (line(500, {"error": {"message": ""}}), None,
     "BatchRequestError: 500 {'error': {'message': ''}}", "batch"),
    # a line without a status is no answer, even with a completion in it
    (line(None, chat_json("hi")), None, None, "batch"),
    (line(0, chat_json("hi")), None, None, "batch"),
    ({"custom_id": "k", "error": None, "response": None}, None, "BatchRequestError: 0 {}",
     "batch"),
    ({"custom_id": "k", "error": None}, None, "BatchRequestError: 0 {}", "batch"),
    # a 2xx that is no chat completion
    (line(200, {"nonsense": 1}), None, "BatchRequestError: malformed result: ValidationError",
     "bad_response"),
    (line(200, None), None, "BatchRequestError: malformed result: ValidationError",
     "bad_response"),
    (line(200, chat_json(choices=[])), None, "EmptyResponse: no choices in the answer",
     "no_content"),
    (line(200, chat_json(None)), None, "NoContent: the answer's content is null", "no_content"),
    # answers: data
    (line(200, chat_json("hi", USAGE)), "hi", None, None),
    ({"custom_id": "k", "error": {}, "response": {"status_code": 200, "body": chat_json("e")}},
     "e", None, None),
    (line(200, chat_json("")), "", None, None),  # empty is an answer; the caller judges it
    (line(399, chat_json("odd")), "odd", None, None),
    (line(201, chat_json("made")), "made", None, None),
]


@pytest.mark.parametrize("row,text,error,failure", LINES)
def test_batch_result_line_is_data_content_reject_or_failure(
    backend: OpenAIBatchBackend, row: dict, text: str | None, error: str | None,
    failure: str | None,
) -> None:
    comp = backend._parse(row)
    assert comp.failure == failure
    if error is not None:
        assert comp.error == error
    if text is None:
        assert comp.error and not comp.ok and comp.text == ""
        assert backend.errors == 1  # counted as an error of this backend
    else:
        assert comp.ok and comp.text == text and backend.errors == 0
    assert comp.failed == (failure is not None)


def test_batch_answer_tokens_and_logprobs(backend: OpenAIBatchBackend) -> None:
    comp = backend._parse(line(200, chat_json("hello", USAGE, LOGPROBS)))
    assert (comp.text, comp.prompt_tokens, comp.completion_tokens) == ("hello", 11, 7)
    assert comp.logprobs == [{"A": -0.5, "B": -0.25}, {"C": -1.0}]
    assert comp.top_logprobs == [[("B", -0.25), ("A", -0.75)], []]
    zero = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    bare = backend._parse(line(200, chat_json("x", zero)))
    assert bare.ok and (bare.prompt_tokens, bare.completion_tokens) == (0, 0)
    assert bare.logprobs is None and bare.top_logprobs is None
    no_usage = backend._parse(line(200, chat_json("x", None)))
    assert no_usage.ok and (no_usage.prompt_tokens, no_usage.completion_tokens) == (0, 0)
    # the key is read from the env var the card names, and never shown
    assert "api_key_env='XLEXP_TEST_KEY'" in repr(backend) and SECRET not in repr(backend)


# ----------------------------------------------------------------------------- _describe


def response(status: int, headers: dict | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("GET", "http://x/v1"))


def status_exc(cls: type, status: int, body: Any, headers: dict | None = None) -> Exception:
    return cls(f"Error code: {status}", response=response(status, headers), body=body)


REQUEST = httpx.Request("POST", "http://x/v1/files")
DESCRIBED = [
    (None, "unknown error"),
    (status_exc(openai.InternalServerError, 500, {"message": "boom"}),
     "InternalServerError: 500 boom"),
    (status_exc(openai.BadRequestError, 400, "not a dict"), "BadRequestError: 400 not a dict"),
    (status_exc(openai.NotFoundError, 404, None), "NotFoundError: 404 Error code: 404"),
    (status_exc(openai.RateLimitError, 429, {"type": "x"}), "RateLimitError: 429 {'type': 'x'}"),
    (status_exc(openai.AuthenticationError, 401, {"message": f"key {SECRET} wrong"}),
     "AuthenticationError: 401 key *** wrong"),
    (openai.APIConnectionError(request=REQUEST), "APIConnectionError: Connection error."),
    (openai.APITimeoutError(request=REQUEST), "APITimeoutError: Request timed out."),
    (ValueError("file too big"), "ValueError: file too big"),
    (ValueError(""), "ValueError:"),
    (RuntimeError(f"saw {SECRET}"), "RuntimeError: saw ***"),
    (ValueError("v" * 288), "ValueError: " + "v" * 288),  # 300 characters: kept whole
    (ValueError("v" * 289), "ValueError: " + "v" * 285 + "..."),
]


@pytest.mark.parametrize("exc,text", DESCRIBED)
def test_describe(backend: OpenAIBatchBackend, exc: Any, text: str) -> None:
    assert backend._describe(exc) == text


def test_api_exception_kinds_retried_or_not() -> None:
    from xlexp.llm.openai_sdk import retryable, sdk_failure_kind

    table = [
        (status_exc(openai.BadRequestError, 400, None), None, False),
        (status_exc(openai.APIStatusError, 413, None), None, False),
        (status_exc(openai.UnprocessableEntityError, 422, None), None, False),
        (status_exc(openai.InternalServerError, 500, None), "server", True),
        (status_exc(openai.InternalServerError, 503, None), "server", True),
        (status_exc(openai.APIStatusError, 408, None), "server", True),
        (status_exc(openai.APIStatusError, 409, None), "server", False),
        (status_exc(openai.RateLimitError, 429, None), "rate_limit", True),
        (status_exc(openai.AuthenticationError, 401, None), "auth", False),
        (status_exc(openai.PermissionDeniedError, 403, None), "auth", False),
        (status_exc(openai.NotFoundError, 404, None), "model", False),
        (openai.APIConnectionError(request=REQUEST), "connection", True),
        (openai.APITimeoutError(request=REQUEST), "timeout", True),
        (ValueError("x"), "server", False),
    ]
    for exc, kind, retried in table:
        assert (sdk_failure_kind(exc), retryable(exc)) == (kind, retried), exc


# ----------------------------------------------------------------------------- _wait (backoff)


class Outcome:
    def __init__(self, exc: BaseException | None):
        self.exc = exc

    def exception(self) -> BaseException | None:
        return self.exc


def state(exc: BaseException | None, attempt: int, outcome: bool = True) -> Any:
    return SimpleNamespace(outcome=Outcome(exc) if outcome else None, attempt_number=attempt)


@pytest.mark.parametrize(
    "exc,attempt,low,high",
    [
        (status_exc(openai.RateLimitError, 429, None, {"retry-after": "3"}), 1, 3.0, 3.0),
        (status_exc(openai.RateLimitError, 429, None, {"retry-after": "3"}), 5, 3.0, 3.0),
        (status_exc(openai.RateLimitError, 429, None, {"retry-after-ms": "400"}), 1, 0.4, 0.4),
        (status_exc(openai.RateLimitError, 429, None, {"retry-after": "999"}), 1, 20.0, 20.0),
        (status_exc(openai.InternalServerError, 500, None), 1, 0.5, 1.0),
        (status_exc(openai.InternalServerError, 500, None), 3, 2.0, 4.0),
        (status_exc(openai.InternalServerError, 500, None), 9, 10.0, 20.0),  # capped
        (openai.APIConnectionError(request=REQUEST), 2, 1.0, 2.0),
        (None, 1, 0.5, 1.0),
    ],
)
def test_wait_honours_retry_after_else_backs_off_with_equal_jitter(
    backend: OpenAIBatchBackend, monkeypatch: pytest.MonkeyPatch, exc: Any, attempt: int,
    low: float, high: float,
) -> None:
    backend.base_wait_s = 1.0
    for pick in ("a", "b"):  # the jitter at either end of its range
        monkeypatch.setattr(
            openai_batch.random, "uniform", lambda a, b, pick=pick: a if pick == "a" else b
        )
        wait = backend._wait(state(exc, attempt))
        assert wait == pytest.approx(low if pick == "a" else high)
    monkeypatch.undo()
    if exc is None:
        assert low <= backend._wait(state(None, attempt, outcome=False)) <= high


def test_backoff_defaults_come_from_the_wire_module(backend: OpenAIBatchBackend) -> None:
    assert (backend.base_wait_s, backend.max_wait_s) == (wire.BASE_WAIT_S, wire.MAX_WAIT_S)
    assert (wire.BASE_WAIT_S, wire.MAX_WAIT_S) == (0.05, 20.0)


# ----------------------------------------------------------------------------- a fake Batch API


class BatchServer(FakeOpenAI):
    """FakeOpenAI whose Batch API routes can be made to fail: `faults[(method, route)]` is a list
    of statuses (or (status, headers)) answered in turn before the route works again; `script`
    (custom_ids -> (output lines, error lines)) writes result files of its own."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.faults: dict[tuple[str, str], list[Any]] = {}
        self.hits: Counter = Counter()
        self.times: dict[tuple[str, str], list[float]] = {}  # arrival of each call, per route
        self.purposes: list[str] = []  # of the uploaded files
        self.script: Any = None
        self.failed_errors: list[dict] | None = None  # a failed batch with these errors
        self.counts = True  # False: batches without request_counts (it is optional)

    def _public(self, batch: dict) -> dict:
        public = super()._public(batch)
        return public if self.counts else {**public, "request_counts": None}

    def _serve_batch_api(self, method: str, route: str, body: Any) -> Any:
        key = (method, re.sub(r"/(file|batch)[-_]\w+", r"/{\1}", route))
        self.hits[key] += 1
        self.times.setdefault(key, []).append(time.monotonic())
        if key == ("POST", "/v1/files"):
            self.purposes.append(body.get("purpose"))
        queue = self.faults.get(key)
        if queue:
            fault = queue.pop(0)
            status, headers = fault if isinstance(fault, tuple) else (fault, None)
            return status, error_body(status, f"fake {status} for {route}"), headers
        return super()._serve_batch_api(method, route, body)

    def _finish(self, batch: dict) -> None:
        if self.failed_errors is not None:
            batch.update(status="failed", errors={"object": "list", "data": self.failed_errors})
            return None
        if self.script is None:
            return super()._finish(batch)
        lines = [json.loads(x) for x in self.files[batch["input_file_id"]].decode().splitlines()]
        out, errs = self.script([x["custom_id"] for x in lines])
        for kind, rows in (("output_file_id", out), ("error_file_id", errs)):
            if rows:
                file_id = f"file-{len(self.files) + 1}"
                self.files[file_id] = "\n".join(rows).encode()
                batch[kind] = file_id
        batch["status"] = "completed"
        return None


FILES = ("POST", "/v1/files")
CREATE = ("POST", "/v1/batches")
LIST = ("GET", "/v1/batches")
RETRIEVE = ("GET", "/v1/batches/{batch}")
CONTENT = ("GET", "/v1/files/{file}/content")
CONVS = [[{"role": "user", "content": f"question {i}"}] for i in range(3)]
SAMPLING = Sampling(max_tokens=16)


def answer(body: dict) -> str | Reply:
    text = body["messages"][-1]["content"]
    if text.startswith("status "):  # "status 503": the line answers with that status
        return Reply(int(text.split()[1]), text=f"fake {text}")
    return f"answer to {text}"


@pytest.mark.parametrize(
    "route,status,kind,error",
    [
        (FILES, 500, "server", "InternalServerError: 500"),
        (FILES, 503, "server", "InternalServerError: 503"),
        (FILES, 429, "rate_limit", "RateLimitError: 429"),
        (FILES, 401, "auth", "AuthenticationError: 401"),
        (FILES, 404, "model", "NotFoundError: 404"),
        # The batch management API refusing a request is no content reject of the prompts.
        (FILES, 400, "batch", "BadRequestError: 400"),
        (FILES, 422, "batch", "UnprocessableEntityError: 422"),
        (CREATE, 500, "server", "InternalServerError: 500"),
        (CREATE, 400, "batch", "BadRequestError: 400"),
        (RETRIEVE, 502, "server", "InternalServerError: 502"),
        (CONTENT, 500, "server", "InternalServerError: 500"),
    ],
)
def test_a_failing_batch_api_call_fails_every_request(
    tmp_path: Path, route: tuple, status: int, kind: str, error: str
) -> None:
    with BatchServer(answer) as srv:
        srv.faults[route] = [status] * 10
        b = OpenAIBatchBackend(batch_card(srv.base_url), tmp_path)
        comps = b.generate(CONVS, SAMPLING)
        b.close()
    assert [c.failure for c in comps] == [kind] * 3
    assert all(c.error.startswith(f"BatchAPI: {error} fake {status}") for c in comps)
    assert not any(c.ok for c in comps) and b.errors == 3
    assert srv.hits[route] == 1 and b.retries == 0  # max_retries 0: asked once


@pytest.mark.parametrize("max_retries,status,asked", [(2, 503, 3), (1, 429, 2), (3, 400, 1)])
def test_retries_are_counted_and_stop_after_max_retries(
    tmp_path: Path, max_retries: int, status: int, asked: int
) -> None:
    with BatchServer(answer) as srv:
        srv.faults[FILES] = [status] * 10
        b = OpenAIBatchBackend(batch_card(srv.base_url, max_retries=max_retries), tmp_path)
        comps = b.generate(CONVS[:1], SAMPLING)
        b.close()
    assert srv.hits[FILES] == asked and b.retries == asked - 1 and b.requests == 1
    assert comps[0].failed


def test_a_transient_fault_is_retried_and_the_answers_are_data(tmp_path: Path) -> None:
    with BatchServer(answer) as srv:
        srv.faults[FILES] = [(503, {"retry-after-ms": "1"})]
        srv.faults[CREATE] = [500]
        srv.faults[RETRIEVE] = [429]
        srv.faults[CONTENT] = [502]
        srv.batch_polls = 3  # polled until done: three polls, the first one failing once
        b = OpenAIBatchBackend(batch_card(srv.base_url, max_retries=1), tmp_path)
        comps = b.generate(CONVS, SAMPLING)
        b.close()
    assert [c.text for c in comps] == [f"answer to question {i}" for i in range(3)]
    assert all(c.ok for c in comps) and b.errors == 0
    assert b.retries == 4 and srv.batch_creations == 1 and b.batches_created == 1
    assert srv.hits[RETRIEVE] == 4
    # each call through the API counted once, however often it was retried
    assert b.requests == 1 + 1 + 3 + 1


def test_max_retries_is_never_negative(tmp_path: Path) -> None:
    card = batch_card("http://127.0.0.1:9/v1")
    card_dict = OmegaConf.to_container(card)
    card_dict["max_retries"] = -3  # not a valid card; the backend still asks once
    b = OpenAIBatchBackend(OmegaConf.create(card_dict), tmp_path)
    assert b.max_retries == 0
    b.close()


def test_backend_reads_its_card(tmp_path: Path) -> None:
    b = OpenAIBatchBackend(
        batch_card(["http://127.0.0.1:9/v1", "http://127.0.0.1:8/v1"], timeout_s=2.5,
                   batch_poll_s=0.25, max_retries=4),
        tmp_path,
    )
    assert b.base_url == "http://127.0.0.1:9/v1"  # replicas: the Batch API uses the first
    assert str(b._client.base_url) == "http://127.0.0.1:9/v1/"
    assert b._client.timeout == 2.5 and b._client.max_retries == 0  # retries are ours
    assert (b.max_retries, b.poll_s) == (4, 0.25)
    assert b.batch_dir == tmp_path / "batches" and b.batch_dir.is_dir()
    assert repr(b) == (
        "OpenAIBatchBackend(model='fake-judge', base_url='http://127.0.0.1:9/v1', "
        "api_key_env=None)"
    )
    b.close()
    default = OpenAIBatchBackend(batch_card(None), tmp_path)
    assert default.base_url is None
    default.close()


# ----------------------------------------------------------------------------- results -> outcome


@pytest.mark.parametrize(
    "status,reject",
    [(400, True), (413, True), (422, True), (500, False), (502, False), (503, False),
     (429, False), (408, False), (401, False), (404, False), (409, False)],
)
def test_a_result_line_status_decides_data_or_failure_through_chat(
    tmp_path: Path, status: int, reject: bool
) -> None:
    """A 5xx (or any non-content status) in a batch's error file is no answer: the call raises
    after the other answers are cached, and the next run asks again. A 400/413/422 is a content
    reject: returned as data with its reason, no failure."""
    convs = [CONVS[0], [{"role": "user", "content": f"status {status}"}]]
    with BatchServer(answer) as srv:
        model = load(batch_card(srv.base_url), tmp_path)
        if reject:
            comps = model.chat(convs)
            assert comps[0].ok and comps[0].text == "answer to question 0"
            assert comps[1].failure is None and not comps[1].ok
            assert comps[1].error == f"BatchRequestError: {status} fake status {status}"
            assert model.usage.errors == 1 and model.usage.failures == 0
        else:
            with pytest.raises(BackendFailure, match=f"1x BatchRequestError: {status} "):
                model.chat(convs)
            assert model.usage.failures == 1 and model.usage.errors == 0
        # Either way only the answer is cached: the next run submits the other one again.
        again = load(batch_card(srv.base_url), tmp_path)
        srv.handler = lambda body: "healed"
        comps = again.chat(convs)
        assert [c.cached for c in comps] == [True, False] and comps[1].text == "healed"
        assert srv.batch_creations == 2


def result_line(key: str, text: str) -> str:
    return json.dumps({"custom_id": key, "error": None,
                       "response": {"status_code": 200, "body": chat_json(text)}})


def test_unreadable_foreign_and_missing_result_lines(tmp_path: Path) -> None:
    def script(keys: list[str]) -> tuple[list[str], list[str]]:
        out = [
            "",
            "   ",
            "{not json",
            json.dumps({"no_custom_id": 1}),
            json.dumps(["a", "list"]),
            result_line("someone-else", "not ours"),
            result_line(keys[0], "first"),
        ]
        errs = [json.dumps({"custom_id": keys[1], "error": None,
                            "response": {"status_code": 400, "body": error_body(400, "long")}})]
        return out, errs  # keys[2]: no line at all

    with BatchServer(answer) as srv:
        srv.script = script
        b = OpenAIBatchBackend(batch_card(srv.base_url), tmp_path)
        comps = b.generate(CONVS, SAMPLING)
        b.close()
    assert comps[0].ok and comps[0].text == "first"
    assert (comps[1].failure, comps[1].error) == (None, "BatchRequestError: 400 long")
    assert comps[2].failure == "batch"
    assert comps[2].error == "BatchAPI: no result for this request (batch batch_1 completed)"
    assert b.errors == 2
    names = sorted(p.name.split(".", 1)[1] for p in (tmp_path / "batches").glob("*.jsonl"))
    assert names == ["batch_1.errors.jsonl", "batch_1.output.jsonl"]


def record_of(tmp_path: Path) -> dict:
    (path,) = (tmp_path / "batches").glob("*.json")
    return json.loads(path.read_text())


def test_completed_batch_record(tmp_path: Path) -> None:
    convs = [*CONVS[:2], [{"role": "user", "content": "status 400"}],
             [{"role": "user", "content": "status 500"}]]
    with BatchServer(answer) as srv:
        b = OpenAIBatchBackend(batch_card(srv.base_url), tmp_path)
        comps = b.generate(convs, SAMPLING)
        b.close()
        batch = srv.batches["batch_1"]
    assert [c.failure for c in comps] == [None, None, None, "batch"]
    record = record_of(tmp_path)
    name = record.pop("name")
    assert re.fullmatch(r"[0-9a-f]{24}", name)
    assert (tmp_path / "batches" / f"{name}.json").exists()  # completed: stays in place
    for stamp in ("submitted_at", "finished_at"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", record.pop(stamp))
    assert record == {
        "model": "fake-judge",
        "input_file_id": "file-1",
        "n_requests": 4,
        "batch_id": "batch_1",
        "status": "completed",
        "output_file_id": batch["output_file_id"],
        "error_file_id": batch["error_file_id"],
        "errors": 2,
    }
    assert batch["output_file_id"] and batch["error_file_id"]
    assert batch["metadata"] == {"xlexp_request_set": name}
    assert batch["completion_window"] == "24h" and batch["endpoint"] == "/v1/chat/completions"


@pytest.mark.parametrize("outcome,answered", [("expired", 1), ("failed", 0)])
def test_unfinished_batch_is_set_aside_with_its_status(
    tmp_path: Path, outcome: str, answered: int
) -> None:
    with BatchServer(answer) as srv:
        srv.batch_outcome = outcome
        b = OpenAIBatchBackend(batch_card(srv.base_url), tmp_path)
        comps = b.generate(CONVS, SAMPLING)
        b.close()
    assert [c.ok for c in comps] == [True] * answered + [False] * (3 - answered)
    reason = "expired" if outcome == "expired" else (
        "failed: invalid_request: fake: this batch failed"
    )
    for c in comps[answered:]:
        assert c.failure == "batch"
        assert c.error == f"BatchAPI: no result for this request (batch batch_1 {reason})"
    assert b.errors == 3 - answered
    live = [p for p in (tmp_path / "batches").glob("*.json")
            if re.fullmatch(r"[0-9a-f]{24}\.json", p.name)]
    assert live == []  # no live record left: the next run submits what is missing anew
    (aside,) = (tmp_path / "batches").glob(f"*.batch_1.{outcome}.json")
    record = json.loads(aside.read_text())
    assert (record["status"], record["errors"]) == (outcome, 3 - answered)


def test_a_record_with_an_upload_but_no_batch_creates_the_batch_from_that_file(
    tmp_path: Path,
) -> None:
    with BatchServer(answer) as srv:
        b = OpenAIBatchBackend(batch_card(srv.base_url), tmp_path)
        # Another request set's batch is listed too; it must not be taken for ours.
        b.generate(CONVS[2:], SAMPLING)
        keys = {k: c for k, c in zip(
            [f"key-{i}" for i in range(2)], CONVS[:2], strict=True)}
        path = b.record_path("ours")
        record = b._submit({"name": "ours", "model": "fake-judge"}, path, keys, SAMPLING, 0)
        assert record["batch_id"] == "batch_2"
        files = len(srv.files)
        # Killed after the upload, before batches.create: the record has the file, no batch.
        listed: list[dict] = []
        real_list = b._client.batches.list
        b._client.batches.list = lambda **kw: listed.append(kw) or real_list(**kw)
        again = b._submit({"name": "theirs", "model": "fake-judge",
                           "input_file_id": record["input_file_id"]},
                          b.record_path("theirs"), keys, SAMPLING, 0)
        assert again["batch_id"] == "batch_3" and len(srv.files) == files  # no new upload
        assert srv.batches["batch_3"]["input_file_id"] == record["input_file_id"]
        assert listed == [{"limit": 100}]  # the API's largest page
        # Found by its metadata: no second batch.
        found = b._submit({"name": "ours", "model": "fake-judge",
                           "input_file_id": record["input_file_id"]}, path, keys, SAMPLING, 0)
        assert (found["batch_id"], found["status"]) == ("batch_2", "validating")
        assert json.loads(path.read_text())["batch_id"] == "batch_2"
        assert srv.batch_creations == 3 and b.batches_created == 3
        b.close()


def test_submitted_lines_keep_non_ascii_text(tmp_path: Path) -> None:
    conv = [{"role": "user", "content": "Grüße, 東京"}]
    with BatchServer(answer) as srv:
        b = OpenAIBatchBackend(batch_card(srv.base_url), tmp_path)
        [comp] = b.generate([conv], Sampling(max_tokens=9, seed=4), sample_index=1)
        b.close()
        data = srv.files["file-1"]
    assert comp.text == "answer to Grüße, 東京"
    assert "Grüße, 東京".encode() in data and data.endswith(b"}\n")
    (row,) = [json.loads(x) for x in data.decode().splitlines()]
    assert row["method"] == "POST" and row["url"] == "/v1/chat/completions"
    assert row["body"] == wire.request_body("fake-judge", conv, Sampling(max_tokens=9, seed=4), 1)


def test_an_input_file_over_the_size_limit_is_refused_before_upload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert openai_batch.MAX_FILE_BYTES == 200_000_000  # OpenAI's limit
    with BatchServer(answer) as srv:
        outcomes = []
        for n, limit in enumerate([None, 0, -1]):  # no limit, the file's size, one byte less
            if limit is not None:
                size = len(srv.files["file-1"]) + limit
                monkeypatch.setattr(openai_batch, "MAX_FILE_BYTES", size)
            b = OpenAIBatchBackend(batch_card(srv.base_url), tmp_path / str(n))
            [comp] = b.generate(CONVS[:1], SAMPLING)  # a store each: submitted anew
            b.close()
            outcomes.append((comp.ok, srv.hits[FILES]))
        assert outcomes == [(True, 1), (True, 2), (False, 2)]  # over the limit: not uploaded
        assert comp.failed and "200 MB limit" in comp.error


def test_polls_until_the_batch_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(
        openai_batch, "time", SimpleNamespace(sleep=slept.append, strftime=time.strftime)
    )
    with BatchServer(answer) as srv:
        srv.batch_polls = 4
        b = OpenAIBatchBackend(batch_card(srv.base_url, batch_poll_s=0.5), tmp_path)
        comps = b.generate(CONVS[:1], SAMPLING)
        b.close()
    assert comps[0].ok and srv.batch_retrievals == 4 and slept == [0.5] * 3


def test_concurrent_downloads_of_one_result_file_both_succeed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two roles of one process fetching the same file: their temporary files must differ."""
    with BatchServer(answer) as srv:
        srv.files["file-9"] = b"line\n"
        b = OpenAIBatchBackend(batch_card(srv.base_url), tmp_path)
        both_written = threading.Barrier(2, timeout=10)
        real_replace = os.replace

        def replace(src: Any, dst: Any) -> None:
            both_written.wait()  # each thread has written its temporary file
            real_replace(src, dst)

        monkeypatch.setattr(openai_batch.os, "replace", replace)
        local = tmp_path / "batches" / "x.batch_9.output.jsonl"
        texts: list[Any] = []

        def fetch() -> None:
            try:
                texts.append(b._download("file-9", local))
            except Exception as exc:  # the loser of a shared temporary file
                texts.append(exc)

        threads = [threading.Thread(target=fetch) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
        b.close()
    assert texts == ["line\n", "line\n"] and local.read_text() == "line\n"
    assert [p.name for p in local.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_a_downloaded_file_is_read_back_not_fetched_again(tmp_path: Path) -> None:
    with BatchServer(answer) as srv:
        b = OpenAIBatchBackend(batch_card(srv.base_url), tmp_path)
        local = tmp_path / "batches" / "x.batch_9.output.jsonl"
        local.write_text("kept\n")
        assert b._download("file-404", local) == "kept\n" and srv.hits[CONTENT] == 0
        b.close()


def test_an_adapter_is_refused_and_no_conversation_asks_nothing(tmp_path: Path) -> None:
    b = OpenAIBatchBackend(batch_card("http://127.0.0.1:9/v1"), tmp_path)
    assert b.generate([], SAMPLING) == []
    with pytest.raises(ValueError, match="judge: the Batch API cannot load adapter 'lora1'"):
        b.generate(CONVS, SAMPLING, adapter="lora1")
    b.close()


# ----------------------------------------------------------------------------- xlexp.failures


def role(name: str, endpoint: str, errors: dict[str, int], stopped: bool = False) -> RoleFailures:
    return RoleFailures(name, endpoint, Counter(errors), stopped)


def test_role_failures_line_names_the_three_commonest_errors() -> None:
    assert role("judge", "http://a", {"E1": 2}).line() == "judge (http://a): 2 failed calls: 2x E1"
    four = role("judge", "http://a", {"E1": 5, "E2": 4, "E3": 3, "E4": 1})
    assert four.line() == (
        "judge (http://a): 13 failed calls: 5x E1; 4x E2; 3x E3; 1 other errors"
    )
    three = role("r", "e", {"E1": 1, "E2": 3, "E3": 2})
    assert three.line() == "r (e): 6 failed calls: 3x E2; 2x E3; 1x E1"
    assert RoleFailures("r", "e").stopped is False and RoleFailures("r", "e").errors == Counter()


def test_backend_failure_merges_by_role_and_endpoint_and_stops_if_any_stopped() -> None:
    a = role("judge", "http://a", {"E1": 1})
    b = role("judge", "http://a", {"E1": 2, "E2": 1})
    c = role("judge", "http://b", {"E3": 1})
    merged = merge([a, b, c])
    assert [(f.role, f.endpoint, dict(f.errors)) for f in merged] == [
        ("judge", "http://a", {"E1": 3, "E2": 1}),
        ("judge", "http://b", {"E3": 1}),
    ]
    assert dict(a.errors) == {"E1": 1}  # the inputs are not changed
    failure = BackendFailure([a, b, c])
    assert failure.stop is False
    assert failure.lines() == [
        "judge (http://a): 4 failed calls: 3x E1; 1x E2",
        "judge (http://b): 1 failed calls: 1x E3",
    ]
    assert str(failure) == failure.message() == "\n".join([
        "backend failures (nothing stored as an answer; a rerun asks again only for these):",
        "  judge (http://a): 4 failed calls: 3x E1; 1x E2",
        "  judge (http://b): 1 failed calls: 1x E3",
    ])
    both = BackendFailure.combine([failure, BackendFailure([role("r", "e", {"X": 1})], stop=True)])
    assert both.stop is True and len(both.failures) == 3
    assert BackendFailure.combine([failure, failure]).stop is False
    assert BackendFailure([a], stop=True).stop is True


def test_a_completion_is_data_only_without_error_and_failure() -> None:
    assert Completion(text="x").ok and not Completion(text="x").failed
    reject = Completion(error="400 too long")
    assert not reject.ok and not reject.failed
    failure = Completion(error="503", failure="server")
    assert not failure.ok and failure.failed


# ------------------------------------------------------------------------ unreadable Retry-After


def test_a_503_with_an_unreadable_retry_after_is_retried_on_both_paths(tmp_path: Path) -> None:
    """A proxy's odd Retry-After value must not turn a retryable 503 into a crash (streaming)
    or into a failure without retry (Batch API)."""
    from fakeserver import failing_first

    from xlexp.llm.openai import OpenAIBackend

    odd = Reply(503, "busy", headers={"Retry-After": "in a while"})
    with FakeOpenAI(failing_first(1, odd)) as srv:
        card = OmegaConf.structured(LLMConfig(name="fake", backend="openai", model="fake-model",
                                              base_url=srv.base_url, max_retries=1, timeout_s=5))
        streaming = OpenAIBackend(card)
        [comp] = streaming.generate([[{"role": "user", "content": "hi"}]], SAMPLING)
        streaming.close()
    assert comp.ok and comp.text == "hi" and srv.calls == 2
    with BatchServer(answer) as srv:
        srv.faults[FILES] = [(503, {"retry-after": "in a while"})]
        b = OpenAIBatchBackend(batch_card(srv.base_url, max_retries=1), tmp_path)
        [comp] = b.generate(CONVS[:1], SAMPLING)
        b.close()
    assert comp.ok and srv.hits[FILES] == 2 and b.retries == 1


# ----------------------------------------------------------------------------- the batch record


def test_a_record_written_at_each_step_lets_the_next_run_resume(tmp_path: Path) -> None:
    """After the upload the record names the file (a rerun creates the batch from it, no second
    upload); after the submission it names the batch (a rerun polls it, no second batch)."""
    with BatchServer(answer) as srv:
        srv.faults[CREATE] = [500]
        b = OpenAIBatchBackend(batch_card(srv.base_url), tmp_path)
        assert [c.failure for c in b.generate(CONVS, SAMPLING)] == ["server"] * 3
        record = record_of(tmp_path)
        assert record == {"name": record["name"], "model": "fake-judge",
                          "input_file_id": "file-1", "n_requests": 3, "status": "uploaded"}
        srv.faults[RETRIEVE] = [500]
        assert [c.failure for c in b.generate(CONVS, SAMPLING)] == ["server"] * 3
        record = record_of(tmp_path)
        assert (record["batch_id"], record["status"], record["input_file_id"]) == (
            "batch_1", "validating", "file-1"
        )
        assert "submitted_at" in record and "finished_at" not in record
        comps = b.generate(CONVS, SAMPLING)
        b.close()
    assert all(c.ok for c in comps)
    assert srv.hits[FILES] == 1 and srv.batch_creations == 1 and srv.purposes == ["batch"]
    assert record_of(tmp_path)["status"] == "completed"


@pytest.mark.parametrize("scenario", ["completed", "failed", "not_found"])
def test_every_change_to_a_record_is_made_holding_its_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scenario: str
) -> None:
    """Two jobs needing the same batch (two processes) read and write its record: each write
    and each setting aside happens under `<record>.lock`, the lock the other job takes."""
    events: list[tuple[str, ...]] = []
    real_lock, real_write, real_replace = openai_batch.FileLock, openai_batch.write_json, os.replace

    class Lock:
        def __init__(self, path: str):
            self.path, self.inner = path, real_lock(path)

        def __enter__(self) -> Lock:
            self.inner.__enter__()
            events.append(("lock", self.path))
            return self

        def __exit__(self, *exc: Any) -> None:
            events.append(("unlock", self.path))
            self.inner.__exit__(*exc)

    def write(path: Path, obj: Any) -> None:
        events.append(("write", str(path)))
        real_write(path, obj)

    def replace(src: Any, dst: Any) -> None:
        if not Path(src).name.startswith("."):  # not a download's temporary file
            events.append(("replace", str(src)))
        real_replace(src, dst)

    monkeypatch.setattr(openai_batch, "FileLock", Lock)
    monkeypatch.setattr(openai_batch, "write_json", write)
    monkeypatch.setattr(openai_batch, "os", SimpleNamespace(replace=replace, getpid=os.getpid))
    with BatchServer(answer) as srv:
        if scenario == "failed":
            srv.batch_outcome = "failed"
        b = OpenAIBatchBackend(batch_card(srv.base_url), tmp_path)
        b.generate(CONVS, SAMPLING)
        if scenario == "not_found":
            srv.batches.clear()
            assert [c.failure for c in b.generate(CONVS, SAMPLING)] == ["model"] * 3
        b.close()
    held: set[str] = set()
    changes = Counter()
    for event, path in events:
        if event == "lock":
            held.add(path)
        elif event == "unlock":
            held.discard(path)
        else:
            assert path + ".lock" in held, (event, path, events)
            changes[event] += 1
    assert changes == {"completed": {"write": 3}, "failed": {"write": 3, "replace": 1},
                       "not_found": {"write": 3, "replace": 1}}[scenario]


def test_a_failed_batch_names_all_its_errors(tmp_path: Path) -> None:
    with BatchServer(answer) as srv:
        srv.failed_errors = [
            {"code": "e1", "message": "first", "param": None, "line": 1},
            {"code": "e2", "message": "second", "param": None, "line": 2},
        ]
        b = OpenAIBatchBackend(batch_card(srv.base_url), tmp_path)
        comps = b.generate(CONVS[:1], SAMPLING)
        b.close()
    assert comps[0].error == (
        "BatchAPI: no result for this request (batch batch_1 failed: e1: first; e2: second)"
    )


def test_retry_after_is_honoured_and_retries_are_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with BatchServer(answer) as srv:
        srv.faults[FILES] = [(503, {"retry-after": "0.3"})]
        b = OpenAIBatchBackend(batch_card(srv.base_url, max_retries=2), tmp_path)
        with caplog.at_level("WARNING", logger="xlexp.llm.openai_batch"):
            [comp] = b.generate(CONVS[:1], SAMPLING)
        b.close()
    first, second = srv.times[FILES]
    assert comp.ok and second - first >= 0.3
    assert [r.getMessage() for r in caplog.records] == [
        "judge: retry 1/2 in 0.30s after InternalServerError: 503 fake 503 for /v1/files"
    ]


@pytest.mark.parametrize("counts", [True, False])
def test_polling_logs_each_change_of_state_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, counts: bool
) -> None:
    with BatchServer(answer) as srv:
        srv.batch_polls = 4
        srv.counts = counts
        b = OpenAIBatchBackend(batch_card(srv.base_url), tmp_path)
        with caplog.at_level("INFO", logger="xlexp.llm.openai_batch"):
            comps = b.generate(CONVS, SAMPLING)
        b.close()
    assert all(c.ok for c in comps)
    polls = [r.getMessage() for r in caplog.records if "judge: batch batch_1 " in r.getMessage()]
    assert polls == (
        [
            "judge: batch batch_1 in_progress (done 0, failed 0)",
            "judge: batch batch_1 completed (done 3, failed 0)",
        ]
        if counts
        else [
            "judge: batch batch_1 in_progress (done None, failed None)",
            "judge: batch batch_1 completed (done None, failed None)",
        ]
    )


def test_the_default_sample_index_sends_no_seed(tmp_path: Path) -> None:
    with BatchServer(answer) as srv:
        b = OpenAIBatchBackend(batch_card(srv.base_url), tmp_path)
        b.generate(CONVS[:1], SAMPLING)
        b.close()
        (row,) = [json.loads(x) for x in srv.files["file-1"].decode().splitlines()]
    assert "seed" not in row["body"]


# ------------------------------------------------------------------------- in-process backends


def test_hf_a_chat_its_template_rejects_is_a_content_reject(tiny_card: Any, tmp_path: Path) -> None:
    """The hf backend answers in process: a chat it cannot format (or too long for the model) is
    a content reject, stored with its reason, never a failure; the other chats are answered."""
    from xlexp.llm.hf import HFBackend

    template = (
        "{% for m in messages %}{% if m.role == 'system' %}"
        "{{ raise_exception('no system turn') }}{% endif %}"
        "<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
        "<|im_start|>assistant\n"
    )
    backend = HFBackend(tiny_card(chat_template=template), tmp_path)
    chats = [
        [{"role": "user", "content": "hi"}],
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        [{"role": "user", "content": "honey " * (backend.max_len + 10)}],
    ]
    ok, rejected, too_long = backend.generate(chats, Sampling(max_tokens=4))
    assert ok.ok and ok.failure is None
    assert (rejected.error, rejected.failure) == ("chat template failed: no system turn", None)
    assert too_long.failure is None and too_long.error.startswith("prompt is ")
    assert too_long.prompt_tokens >= backend.max_len

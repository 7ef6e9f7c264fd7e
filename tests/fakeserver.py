"""A real OpenAI-compatible HTTP server for tests: stdlib only, 127.0.0.1 only, ephemeral port.

    from fakeserver import FakeOpenAI, Reply    # pytest puts tests/ on sys.path (no __init__)

    def handler(body: dict) -> str | Reply:      # body: the request JSON
        return "the answer"                        # a plain str is a 200 answer

    with FakeOpenAI(handler) as srv:
        card = LLMConfig(name="t", backend="openai", model="fake", base_url=srv.base_url)
        ...                                        # srv.base_url == "http://127.0.0.1:PORT/v1"
    assert srv.calls == 1

Endpoints: `POST /v1/chat/completions` (a `chat.completion` JSON: id, object, created, model,
choices[0].message{role, content}, finish_reason, logprobs.content[] when the request asks for
logprobs, usage with whitespace token counts) and `GET /v1/models`. Error statuses get an
OpenAI-style `{"error": {"message", "type", "param", "code"}}` body, so the real `openai` client
raises its real exception classes (RateLimitError, BadRequestError, ...).

Faults (tests of failed calls): `FakeOpenAI(api_key="k")` answers 401 to a request without
`Authorization: Bearer k`; `FakeOpenAI(served=["m"])` answers 404 "model does not exist" (as vLLM
does) to a chat request for another model, and lists those in `/v1/models` (without `served` it
answers any model, and `/v1/models` is a 404, as on servers without a listing); `srv.outage`
(a Reply, or None) answers every chat request with that reply while set (an outage; flip it back
to heal); `failing_first(n, reply, handler)` fails the first n calls, then answers; a Reply
with `text=None` is an answer whose `content` is null. `dead_url()` is a base_url on a port
nobody listens on (connection refused).

`Reply(status=200, text="", logprobs=None, delay=0.0, headers=None, finish_reason="stop",
raw=None)`:
  - status >= 400: an error answer; `text` is the error message.
  - logprobs: one {token: logprob} dict per generated token; the FIRST key is the chosen token,
    the others are alternatives (sent as top_logprobs, best first, cut to the request's
    `top_logprobs`). When logprobs are requested but not given, each whitespace token of
    `text` is sent with logprob 0.0.
  - delay: seconds to sleep before answering (counted as in flight), to trip client timeouts
    or to measure concurrency.
  - headers: extra response headers, e.g. {"Retry-After": "0.2"}.
  - raw: a JSON value sent verbatim as the body (malformed or empty answers).

The handler runs in the server's request threads, possibly concurrently; an exception in it
becomes a 500 answer and is kept in `srv.handler_errors`. Without a handler the server echoes
the last user message (`echo`). `sequence([...])` / `FakeOpenAI.sequence([...])` script replies
by call order (the last one repeats once the list is used up).

Attributes for assertions (thread-safe): `requests` (chat request bodies in arrival order),
`headers` (their request headers, lower-case names), `calls` (chat requests served),
`in_flight` and `max_in_flight` (peak number of chat requests being handled at once).
Use it as a context manager, or `start()` / `stop()` in a fixture.

Batch API (what the real `openai` client calls for `files.create`, `files.content`,
`batches.create`, `batches.retrieve`, `batches.list`): `POST /v1/files` (multipart upload),
`GET /v1/files/{id}/content`, `POST /v1/batches`, `GET /v1/batches/{id}`, `GET /v1/batches`.
A batch is `in_progress` until it has been retrieved `batch_polls` times (and `hold_batches`
is False); then its input lines go through the same handler and it ends `batch_outcome`:
"completed" (output file with 200 lines; a handler Reply with status >= 400 becomes a line of
the error file), "expired" (only the first half of the lines answered) or "failed" (no files,
`errors.data`). Attributes: `files` (id -> bytes), `batches` (id -> batch JSON),
`batch_creations`, `batch_retrievals`, `batch_requests` (request bodies answered in batches).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "FakeOpenAI",
    "Handler",
    "Reply",
    "dead_url",
    "echo",
    "error_body",
    "failing_first",
    "sequence",
]


@dataclass
class Reply:
    status: int = 200
    text: str | None = ""
    logprobs: list[dict[str, float]] | None = None
    delay: float = 0.0
    headers: dict[str, str] | None = None
    finish_reason: str = "stop"
    raw: Any = None


Handler = Callable[[dict], "str | Reply"]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    422: "invalid_request_error",
    429: "rate_limit_exceeded",
}


def echo(body: dict) -> str:
    """The last user message, verbatim."""
    users = [m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"]
    return str(users[-1]) if users else ""


def sequence(replies: Iterable[str | Reply]) -> Handler:
    """A handler answering call n with replies[n]; the last reply repeats after the end."""
    items = list(replies)
    if not items:
        raise ValueError("sequence needs at least one reply")
    lock = threading.Lock()
    counter = itertools.count()

    def handler(body: dict) -> str | Reply:
        with lock:
            n = next(counter)
        return items[min(n, len(items) - 1)]

    return handler


def failing_first(n: int, reply: Reply, handler: Handler | None = None) -> Handler:
    """A handler answering the first `n` calls with `reply` (a fault), then like `handler`."""
    inner = handler or echo
    lock = threading.Lock()
    counter = itertools.count()

    def faulty(body: dict) -> str | Reply:
        with lock:
            k = next(counter)
        return reply if k < n else inner(body)

    return faulty


def dead_url() -> str:
    """A base_url where nothing listens: every request is refused."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def error_body(status: int, message: str = "") -> dict:
    """OpenAI's error JSON; the client raises the exception class that matches `status`."""
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    error = {
        "message": message or HTTPStatus(status).phrase,
        "type": kind,
        "param": None,
        "code": None,
    }
    return {"error": error}


def _ntokens(text: str) -> int:
    return len(str(text).split())


def _token_logprobs(logprobs: list[dict[str, float]], top_n: int) -> list[dict]:
    def entry(token: str, lp: float) -> dict:
        return {"token": token, "logprob": float(lp), "bytes": list(token.encode())}

    content = []
    for alternatives in logprobs:
        chosen, chosen_lp = next(iter(alternatives.items()))
        best = sorted(alternatives.items(), key=lambda kv: -kv[1])[:top_n]
        content.append(
            {**entry(chosen, chosen_lp), "top_logprobs": [entry(t, lp) for t, lp in best]}
        )
    return content


def _multipart(content_type: str, raw: bytes) -> dict[str, Any]:
    """multipart/form-data fields: name -> str, or (filename, bytes) for a file."""
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw
    )
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        fields[name] = (filename, data) if filename else data.decode()
    return fields


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # a burst of concurrent connects must not hit SYN retries
    fake: FakeOpenAI


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like real servers
    timeout = 30  # idle keep-alive connections do not pin a thread forever
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test); nothing to tell it

    def _error(self, status: int, message: str) -> None:
        self._send(status, error_body(status, message))

    def _send_bytes(self, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_text(self, text: str) -> None:
        data = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        route = self.path.split("?")[0].rstrip("/")
        if route.startswith(("/v1/files/", "/v1/batches")):
            answer = self.server.fake._serve_batch_api("GET", route, None)
            if isinstance(answer, bytes):
                self._send_bytes(answer)
            else:
                self._send(*answer)
        elif route == "/v1/models":
            fake = self.server.fake
            if not fake._authorized(dict(self.headers.items())):
                self._error(401, "Incorrect API key provided")
                return
            if fake.served is None and not fake.lora_modules:  # it answers any model: no listing
                self._error(404, "this server answers any model; it lists none")
                return
            # As vLLM lists LoRA modules: the adapter's name, its path as `root`, the base as
            # parent.
            names = fake.served if fake.served is not None else [fake.model]
            models = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in names]
            loras = [
                {
                    "id": name,
                    "object": "model",
                    "created": 0,
                    "owned_by": "fake",
                    "root": path,
                    "parent": fake.model,
                }
                for name, path in fake.lora_modules.items()
            ]
            self._send(200, {"object": "list", "data": [*models, *loras]})
        else:
            self._error(404, f"no route GET {self.path}")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        route = self.path.split("?")[0].rstrip("/")
        if route in ("/v1/files", "/v1/batches"):
            body: Any = (
                _multipart(self.headers.get("Content-Type", ""), raw)
                if route == "/v1/files"
                else json.loads(raw or b"{}")
            )
            self._send(*self.server.fake._serve_batch_api("POST", route, body))
            return
        if route == "/v1/load_lora_adapter" and self.server.fake.lora_loading:
            # vLLM registers this route only with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True.
            body = json.loads(raw or b"{}")
            self.server.fake.lora_loads.append(body)
            self.server.fake.lora_modules[body["lora_name"]] = body["lora_path"]
            self._send_text(f"Success: LoRA adapter '{body['lora_name']}' added successfully.")
            return
        if route != "/v1/chat/completions":
            self._error(404, f"no route POST {self.path}")
            return
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError as exc:
            self._error(400, f"request body is not JSON: {exc}")
            return
        status, payload, headers = self.server.fake._serve(body, dict(self.headers.items()))
        self._send(status, payload, headers)


class FakeOpenAI:
    """An OpenAI-compatible chat server on 127.0.0.1 driven by `handler` (see module doc)."""

    def __init__(
        self, handler: Handler | None = None, model: str = "fake-model", api_key: str | None = None,
        served: list[str] | None = None,
    ):
        self.handler = handler or echo
        self.model = model
        self.api_key = api_key
        self.served = served
        self.outage: Reply | None = None
        self.requests: list[dict] = []
        self.headers: list[dict[str, str]] = []
        self.handler_errors: list[BaseException] = []
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""
        # Batch API state
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.batch_requests: list[dict] = []
        self.batch_creations = 0
        self.batch_retrievals = 0
        self.batch_polls = 1
        self.hold_batches = False
        self.batch_outcome = "completed"
        # LoRA serving as vLLM does it: modules given at start (name -> path), runtime loading.
        self.lora_modules: dict[str, str] = {}
        self.lora_loading = False
        self.lora_loads: list[dict] = []

    @classmethod
    def sequence(cls, replies: Iterable[str | Reply], model: str = "fake-model") -> FakeOpenAI:
        return cls(sequence(replies), model=model)

    # -- lifecycle
    def start(self) -> FakeOpenAI:
        self._httpd = _Server(("127.0.0.1", 0), _RequestHandler)
        self._httpd.fake = self
        port = self._httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _authorized(self, headers: dict[str, str]) -> bool:
        if self.api_key is None:
            return True
        sent = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        return sent == f"Bearer {self.api_key}"

    def _fault(self, body: dict, headers: dict[str, str]) -> Reply | None:
        if not self._authorized(headers):
            return Reply(401, text="Incorrect API key provided")
        if self.served is not None and body.get("model") not in {*self.served, *self.lora_modules}:
            return Reply(404, text=f"The model `{body.get('model')}` does not exist.")
        return self.outage

    # -- one chat request
    def _serve(self, body: dict, headers: dict[str, str]) -> tuple[int, Any, dict[str, str] | None]:
        with self._lock:
            self.requests.append(body)
            self.headers.append({k.lower(): v for k, v in headers.items()})
            self.calls += 1
            n = self.calls
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            try:
                reply = self._fault(body, headers) or self.handler(body)
            except Exception as exc:  # a broken handler is a 500 the test can inspect
                with self._lock:
                    self.handler_errors.append(exc)
                reply = Reply(500, text=f"handler raised {type(exc).__name__}: {exc}")
            if isinstance(reply, str):
                reply = Reply(text=reply)
            if reply.delay:
                time.sleep(reply.delay)
        finally:
            # Leave "in flight" before the answer goes out: a client can only send its next
            # request after reading this one, so the peak never counts a finished request.
            with self._lock:
                self.in_flight -= 1
        return reply.status, self._payload(reply, body, n), reply.headers

    def _payload(self, reply: Reply, body: dict, n: int) -> Any:
        if reply.raw is not None:
            return reply.raw
        if reply.status >= 400:
            return error_body(reply.status, reply.text)
        logprobs = None
        if body.get("logprobs"):
            per_token = reply.logprobs
            if per_token is None:
                per_token = [{token: 0.0} for token in (reply.text or "").split()]
            logprobs = {
                "content": _token_logprobs(per_token, int(body.get("top_logprobs") or 0)),
                "refusal": None,
            }
        prompt = sum(_ntokens(m.get("content") or "") for m in body.get("messages", []))
        completion = (
            len(reply.logprobs) if reply.logprobs is not None else _ntokens(reply.text or "")
        )
        return {
            "id": f"chatcmpl-fake-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model),
            "system_fingerprint": "fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.text, "refusal": None},
                    "logprobs": logprobs,
                    "finish_reason": reply.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }

    # -- Batch API
    def _serve_batch_api(self, method: str, route: str, body: Any) -> Any:
        with self._lock:
            if method == "POST" and route == "/v1/files":
                filename, data = body["file"]
                file_id = f"file-{len(self.files) + 1}"
                self.files[file_id] = data
                return 200, self._file_json(file_id, filename, body.get("purpose", "")), None
            if method == "GET" and route.startswith("/v1/files/") and route.endswith("/content"):
                file_id = route.removeprefix("/v1/files/").removesuffix("/content")
                return (
                    self.files[file_id]
                    if file_id in self.files
                    else (404, error_body(404, f"no file {file_id}"), None)
                )
            if method == "POST" and route == "/v1/batches":
                if body.get("input_file_id") not in self.files:
                    return 400, error_body(400, f"no file {body.get('input_file_id')}"), None
                self.batch_creations += 1
                batch_id = f"batch_{self.batch_creations}"
                self.batches[batch_id] = {
                    "id": batch_id,
                    "object": "batch",
                    "endpoint": body["endpoint"],
                    "errors": None,
                    "input_file_id": body["input_file_id"],
                    "completion_window": body["completion_window"],
                    "status": "validating",
                    "output_file_id": None,
                    "error_file_id": None,
                    "created_at": int(time.time()),
                    "metadata": body.get("metadata"),
                    "request_counts": {"total": 0, "completed": 0, "failed": 0},
                    "_polls": 0,
                }
                return 200, self._public(self.batches[batch_id]), None
            if method == "GET" and route == "/v1/batches":
                data = [self._public(b) for b in self.batches.values()][::-1]  # newest first
                return 200, {"object": "list", "data": data, "has_more": False}, None
            if method == "GET" and route.startswith("/v1/batches/"):
                batch = self.batches.get(route.removeprefix("/v1/batches/"))
                if batch is None:
                    return 404, error_body(404, f"no batch {route}"), None
                self.batch_retrievals += 1
                batch["_polls"] += 1
                if batch["status"] in ("validating", "in_progress"):
                    batch["status"] = "in_progress"
                    if not self.hold_batches and batch["_polls"] >= self.batch_polls:
                        self._finish(batch)
                return 200, self._public(batch), None
        return 404, error_body(404, f"no route {method} {route}"), None

    @staticmethod
    def _public(batch: dict) -> dict:
        return {k: v for k, v in batch.items() if not k.startswith("_")}

    def _file_json(self, file_id: str, filename: str, purpose: str) -> dict:
        size = len(self.files[file_id])
        return {"id": file_id, "object": "file", "bytes": size, "created_at": int(time.time()),
                "filename": filename, "purpose": purpose, "status": "processed"}

    def _finish(self, batch: dict) -> None:
        """Answer a batch's lines with the handler (called under self._lock)."""
        lines = [
            json.loads(x)
            for x in self.files[batch["input_file_id"]].decode().splitlines()
            if x.strip()
        ]
        if self.batch_outcome == "failed":
            batch.update(
                status="failed",
                errors={
                    "object": "list",
                    "data": [
                        {
                            "code": "invalid_request",
                            "message": "fake: this batch failed",
                            "param": None,
                            "line": None,
                        }
                    ],
                },
            )
            return
        if self.batch_outcome == "expired":
            lines = lines[: len(lines) // 2]
        out, err = [], []
        for i, line in enumerate(lines):
            self.batch_requests.append(line["body"])
            reply = self.handler(line["body"])
            if isinstance(reply, str):
                reply = Reply(text=reply)
            payload = self._payload(reply, line["body"], i)
            result = {
                "id": f"batch_req_{i}",
                "custom_id": line["custom_id"],
                "error": None,
                "response": {
                    "status_code": reply.status,
                    "request_id": f"req_{i}",
                    "body": payload,
                },
            }
            (err if reply.status >= 400 else out).append(json.dumps(result))
        for kind, rows in (("output_file_id", out), ("error_file_id", err)):
            if rows:
                file_id = f"file-{len(self.files) + 1}"
                self.files[file_id] = ("\n".join(rows) + "\n").encode()
                batch[kind] = file_id
        batch["request_counts"] = {"total": len(lines), "completed": len(out), "failed": len(err)}
        batch["status"] = "expired" if self.batch_outcome == "expired" else "completed"

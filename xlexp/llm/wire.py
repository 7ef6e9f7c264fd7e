"""The OpenAI chat-completions wire format, apart from how requests are sent: an HTTP error
status to the kind of failure it is (retry, content reject, endpoint down), Retry-After headers,
the proxy for a URL, and a chat.completion body to a `Completion`.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import time
import urllib.parse
import urllib.request
from typing import Any

from xlexp.llm.base import Completion, Conversation, Sampling

# What went wrong, for callers that treat failures differently (retry later, stop the run, ...):
#   connection: the server could not be reached (refused, reset, DNS); timeout: no answer in
#   time (or HTTP 408); rate_limit: 429; server: 5xx; auth: 401/403; model: 404 (an unknown
#   model or a wrong base_url path); status: any other 4xx the request did not cause;
#   bad_response: a 2xx answer that is not a chat completion (not JSON, no choices);
#   no_content: a completion whose content is null; breaker: not sent, the endpoint is down;
#   bad_request: 400/413/422, this request cannot be answered: the only kind that is a content
#   reject (data) rather than a failure.
ERROR_KINDS = (
    "connection", "timeout", "rate_limit", "server", "auth", "model", "status",
    "bad_response", "no_content", "breaker", "bad_request",
)
CONTENT_REJECT = "bad_request"
RETRYABLE_KINDS = frozenset({"connection", "timeout", "rate_limit", "server"})
# Failures that say the endpoint cannot serve (the breaker counts them); an endpoint that
# answered, even badly, is up.
ENDPOINT_DOWN_KINDS = frozenset(
    {"connection", "timeout", "rate_limit", "server", "auth", "model", "status"}
)

# Error names as the openai package calls them: users know them from its tracebacks.
_STATUS_NAMES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    409: "ConflictError",
    422: "UnprocessableEntityError",
    429: "RateLimitError",
}


class TransportError(Exception):
    """One failed HTTP attempt: its kind, the openai-style name, the status and message."""

    def __init__(
        self,
        kind: str,
        name: str,
        message: str,
        status: int | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.kind = kind
        self.name = name
        self.status = status
        self.message = message
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE_KINDS

    def describe(self) -> str:
        """`<name>: <status> <message>` (the status only for HTTP errors), at most 300 chars."""
        text = (
            f"{self.name}: " + (f"{self.status} " if self.status is not None else "") + self.message
        )
        return text if len(text) <= 300 else text[:297] + "..."


def status_error(status: int, body: bytes, headers: Any) -> TransportError:
    """The TransportError for an HTTP error answer (OpenAI's `{"error": {"message": ...}}` body)."""
    try:
        data = json.loads(body)
        error = data.get("error", data) if isinstance(data, dict) else data
        message = error.get("message") if isinstance(error, dict) else None
        message = str(message or error)
    except ValueError:
        message = body.decode(errors="replace").strip()[:200]
    if status == 429:
        kind = "rate_limit"
    elif status == 408:
        kind = "timeout"
    elif status >= 500:
        kind = "server"
    elif status in (401, 403):
        kind = "auth"
    elif status == 404:
        kind = "model"
    elif status in (400, 413, 422):
        kind = CONTENT_REJECT
    else:
        kind = "status"
    name = _STATUS_NAMES.get(status, "InternalServerError" if status >= 500 else "APIStatusError")
    return TransportError(kind, name, message, status, retry_after(headers))


def retry_after(headers: Any) -> float | None:
    """Seconds the server asked us to wait (retry-after-ms, Retry-After seconds or HTTP date)."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):  # neither seconds nor a date: no advice, the usual backoff
        return None
    if when.tzinfo is None:  # "-0000" or no zone: an HTTP date is GMT, not local time
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, when.timestamp() - time.time())


def env_proxy(url: str) -> str | None:
    """The proxy HTTPS_PROXY/HTTP_PROXY name for `url` unless NO_PROXY exempts it (as the
    openai client does). Read once: aiohttp's trust_env reads the environment and ~/.netrc
    again for every request, which doubled the client's CPU per request."""
    parts = urllib.parse.urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies().get(parts.scheme)


def convert_logprobs(content: list[dict] | None) -> list[dict[str, float]] | None:
    """`choices[0].logprobs.content` -> per generated token {token: logprob}, chosen first."""
    if content is None:
        return None
    out: list[dict[str, float]] = []
    for item in content:
        alternatives = {item["token"]: float(item["logprob"])}
        for top in item.get("top_logprobs") or ():
            alternatives.setdefault(top["token"], float(top["logprob"]))
        out.append(alternatives)
    return out


def listed_logprobs(content: list[dict] | None) -> list[list[tuple[str, float]]] | None:
    """`choices[0].logprobs.content` -> per generated token its `top_logprobs` as listed
    ([token, logprob] pairs, the sampled token not added): what alpaca_eval's parser reads."""
    if content is None:
        return None
    return [
        [(top["token"], float(top["logprob"])) for top in item.get("top_logprobs") or ()]
        for item in content
    ]


def parse_completion(data: Any, want_logprobs: bool) -> Completion:
    """A chat.completion JSON -> Completion; a body without a choice is a `bad_response`."""
    choices = data.get("choices") if isinstance(data, dict) else None
    if not choices:
        raise TransportError("bad_response", "EmptyResponse", "no choices in the answer")
    try:
        choice = choices[0]
        message = choice.get("message") or {}
        usage = data.get("usage") or {}
        content = message.get("content")
        if content is None:  # not an answer, whatever the status said
            reason = choice.get("finish_reason")
            raise TransportError(
                "no_content", "NoContent", f"the answer's content is null (finish_reason {reason})"
            )
        logprobs = listed = None
        if want_logprobs:
            tokens = (choice.get("logprobs") or {}).get("content")
            logprobs, listed = convert_logprobs(tokens), listed_logprobs(tokens)
        return Completion(
            text=content,  # empty is an answer; the caller judges it
            logprobs=logprobs,
            top_logprobs=listed,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:  # not shaped like a completion
        raise TransportError(
            "bad_response", "InvalidResponse", f"malformed chat completion: {exc!r}"[:200]
        ) from None


BASE_WAIT_S = 0.05  # first backoff; doubles per retry (tests lower it)
MAX_WAIT_S = 20.0  # cap on one backoff, Retry-After included


def request_body(
    model: str, conversation: Conversation, sampling: Sampling, sample_index: int
) -> dict:
    """The chat/completions JSON body of one request."""
    body: dict[str, Any] = {
        "model": model,
        "messages": conversation,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "max_tokens": sampling.max_tokens,
    }
    if sampling.seed is not None:
        body["seed"] = sampling.seed + sample_index
    elif sample_index > 0:
        body["seed"] = sample_index  # k samples differ, reproducibly
    if sampling.logprobs is not None:
        body["logprobs"] = True
        body["top_logprobs"] = sampling.logprobs
    return body

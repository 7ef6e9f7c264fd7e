"""What the `openai` SDK's exceptions and answer objects mean to xlexp (the Batch API backend
talks through the SDK; the streaming backend reads the same answers as JSON in `wire.py`).
"""

from __future__ import annotations

from typing import Any

import openai

_RETRYABLE = (
    openai.RateLimitError,
    openai.InternalServerError,
    openai.APITimeoutError,
    openai.APIConnectionError,
)


def retryable(exc: BaseException) -> bool:
    """The SDK raised for a transient fault: the call is tried again."""
    if isinstance(exc, _RETRYABLE):
        return True
    # 408 Request Timeout is transient too; the client maps it to a plain APIStatusError.
    return isinstance(exc, openai.APIStatusError) and exc.status_code == 408


def sdk_failure_kind(exc: BaseException) -> str | None:
    """The kind of backend failure an API exception is (the call got no answer: never stored,
    asked again on rerun), or None for a content reject (400/413/422: this request cannot be
    answered)."""
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    if isinstance(exc, openai.RateLimitError):
        return "rate_limit"
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return "auth"
    if isinstance(exc, openai.NotFoundError):
        return "model"  # unknown model (or a wrong base_url path)
    if isinstance(exc, openai.APIStatusError) and exc.status_code in (400, 413, 422):
        return None
    return "server"  # 5xx, 408, other statuses, anything unexpected


def sdk_logprobs(choice_logprobs: Any) -> list[dict[str, float]] | None:
    """OpenAI `choice.logprobs` -> per generated token {token: logprob}, chosen token first."""
    content = getattr(choice_logprobs, "content", None)  # None too when none were asked for
    if content is None:
        return None
    out: list[dict[str, float]] = []
    for item in content:
        alternatives = {item.token: float(item.logprob)}
        for top in item.top_logprobs or []:
            alternatives.setdefault(top.token, float(top.logprob))
        out.append(alternatives)
    return out


def sdk_listed_logprobs(choice_logprobs: Any) -> list[list[tuple[str, float]]] | None:
    """OpenAI `choice.logprobs` -> per generated token its top_logprobs as listed (the sampled
    token not added), as `wire.listed_logprobs` reads the JSON."""
    content = getattr(choice_logprobs, "content", None)  # None too when none were asked for
    if content is None:
        return None
    return [
        [(top.token, float(top.logprob)) for top in item.top_logprobs or []] for item in content
    ]

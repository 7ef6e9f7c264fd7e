"""Preflight, before the first stage: every role whose backend declares `preflight` (an
OpenAI-compatible endpoint) has its key, its server answers, and the server serves the model
the role's card names (`GET /v1/models`). A wrong key or model id fails in seconds with one line per
role, instead of a stage of "model does not exist" answers. The key is sent, never printed.
"""

from __future__ import annotations

import contextvars
from typing import Any

from xlexp.llm.backends import backend_class
from xlexp.llm.transport import Transport
from xlexp.llm.wire import TransportError

TIMEOUT_S = 10.0
# Server listings already asked for in the running preflight: (base_url, key) -> answer.
_SEEN: contextvars.ContextVar[dict | None] = contextvars.ContextVar("preflight_seen", default=None)


class PreflightError(Exception):
    """Roles whose endpoint cannot serve them: one line each, naming the role."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        super().__init__("preflight failed:\n" + "\n".join(f"  {line}" for line in lines))


def _served_models(base_url: str, key: str | None) -> tuple[list[str] | None, str | None]:
    """(model ids the server lists or None when it has no listing, problem or None)."""
    url = base_url.rstrip("/") + "/models"
    # The backend's own transport, so the check sees the endpoint as the stages will.
    transport = Transport(
        "preflight", base_url, key or "EMPTY", window=1, timeout_s=TIMEOUT_S, max_retries=0
    )
    try:
        listing = transport.call("GET", "/models")
    except TransportError as e:
        if e.kind == "auth":
            return None, f"{url} rejected the key ({e.status})"
        if e.status == 404:
            return None, None  # a server without a model listing: nothing more to check
        if e.status is not None:
            return None, f"{url} answered {e.status}"
        return None, f"cannot reach {url} ({e.name}: {e.message})"
    finally:
        transport.close()
    try:
        return [str(m.get("id")) for m in listing.get("data", [])], None
    except (AttributeError, TypeError):
        return None, f"{url} answered something that is not a model list"


def served_models(base_url: str, key: str | None) -> tuple[list[str] | None, str | None]:
    """(model ids the server lists or None when it has no listing, problem or None); asked
    once per server and key in one preflight, however many roles it serves."""
    seen = _SEEN.get()
    if seen is None:
        return _served_models(base_url, key)
    if (base_url, key) not in seen:
        seen[(base_url, key)] = _served_models(base_url, key)
    return seen[(base_url, key)]


def check_roles(roles: dict[str, Any]) -> None:
    """`roles`: role name (as the config spells it, e.g. `teacher`) -> model card. Checks the
    cards whose backend declares `preflight`; raises PreflightError naming each role that
    cannot work."""
    lines: list[str] = []
    token = _SEEN.set({})
    try:
        for role, card in roles.items():
            if card is None:
                continue
            cls = backend_class(card, f"{role}.backend")
            if cls.preflight:
                lines += cls.check_server(role, card)
    finally:
        _SEEN.reset(token)
    if lines:
        raise PreflightError(lines)

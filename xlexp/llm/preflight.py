"""Preflight, before the first stage: every role on an OpenAI-compatible endpoint has its key,
its server answers, and the server serves the model the role's card names (`GET /v1/models`).
A wrong key or model id fails in seconds with one line per role, instead of a stage of
"model does not exist" answers. The key is sent, never printed.
"""

from __future__ import annotations

import os
from typing import Any

from xlexp.llm.transport import Transport
from xlexp.llm.wire import TransportError

TIMEOUT_S = 10.0


class PreflightError(Exception):
    """Roles whose endpoint cannot serve them: one line each, naming the role."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        super().__init__("preflight failed:\n" + "\n".join(f"  {line}" for line in lines))


def _served_models(base_url: str, key: str | None) -> tuple[list[str] | None, str | None]:
    """(model ids the server lists or None when it has no listing, problem or None)."""
    url = base_url.rstrip("/") + "/models"
    # The backend's own transport, so the check sees the endpoint as the stages will.
    transport = Transport("preflight", base_url, key or "EMPTY", window=1, timeout_s=TIMEOUT_S, max_retries=0)
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


def check_roles(roles: dict[str, Any]) -> None:
    """`roles`: role name (as the config spells it, e.g. `teacher`) -> model card. Checks the
    cards with `backend: openai`; raises PreflightError naming each role that cannot work."""
    lines: list[str] = []
    seen: dict[tuple[str, str | None], tuple[list[str] | None, str | None]] = {}
    for role, card in roles.items():
        if card is None or card.backend != "openai":
            continue
        env = card.api_key_env
        key = os.environ.get(env) if env else None
        if env and not key:
            lines.append(f"{role}: {role}.api_key_env: environment variable {env} is not set")
            continue
        base_url = card.base_url or "https://api.openai.com/v1"
        if (base_url, key) not in seen:
            seen[(base_url, key)] = _served_models(base_url, key)
        served, problem = seen[(base_url, key)]
        if problem:
            lines.append(f"{role}: {problem}" + (f" (key from ${env})" if "key" in problem and env else ""))
        elif served is not None and str(card.model) not in served:
            listed = ", ".join(served[:10]) + (" ..." if len(served) > 10 else "")
            lines.append(f"{role}: {base_url} does not serve {role}.model {str(card.model)!r} (it serves: {listed or 'nothing'})")
    if lines:
        raise PreflightError(lines)

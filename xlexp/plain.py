"""A config value as plain Python containers: the one conversion every key, card and launch uses.

OmegaConf nodes (resolved) and dataclasses become dicts and lists; anything else is returned
unchanged, so callers can pass a node or an already-plain value alike.
"""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from typing import Any

from omegaconf import OmegaConf


def plain(value: Any) -> Any:
    """`value` as plain containers (an OmegaConf node resolved, a dataclass instance as a dict)."""
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return value

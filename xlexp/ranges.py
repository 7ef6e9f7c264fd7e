"""Numeric ranges stated once, on the config dataclasses' fields, and checked by one walk.

A field declared `batch_size: int = knob(16, ge=1)` carries its range in the dataclass field's
metadata; `check_ranges` walks a config node along its dataclass schema (nested dataclasses and
`dict[str, dataclass]` fields included) before any model loads, and names the first value out of
range by its full key. OmegaConf's structured configs check types but not ranges; pydantic would
check both but Hydra composes dataclasses, so the range sits beside the type it narrows.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from xlexp.errors import ConfigError


@dataclass(frozen=True)
class Range:
    ge: float | None = None  # value >= ge
    gt: float | None = None  # value > gt
    le: float | None = None  # value <= le
    lt: float | None = None  # value < lt

    def holds(self, value: float) -> bool:
        return (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )

    def __str__(self) -> str:
        low = f"[{self.ge:g}" if self.ge is not None else ""
        low = f"({self.gt:g}" if self.gt is not None else low
        high = f"{self.le:g}]" if self.le is not None else ""
        high = f"{self.lt:g})" if self.lt is not None else high
        if high and low:
            return f"in {low}, {high}"
        if high:
            return f"<= {self.le:g}" if self.le is not None else f"< {self.lt:g}"
        return f">= {self.ge:g}" if self.ge is not None else f"> {self.gt:g}"


def knob(
    default: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """A dataclass field with its default and its range (None values are not checked: null
    means "not set" wherever a knob allows it)."""
    return dataclasses.field(default=default, metadata={"range": Range(ge=ge, gt=gt, le=le, lt=lt)})


def _schema_of(tp: Any) -> tuple[type | None, bool]:
    """(the dataclass a field's type holds, whether it is a dict of them)."""
    if dataclasses.is_dataclass(tp):
        return tp, False
    if typing.get_origin(tp) is dict:
        args = typing.get_args(tp)
        if len(args) == 2 and dataclasses.is_dataclass(args[1]):
            return args[1], True
    return None, False


def _value(node: Any, name: str) -> Any:
    if isinstance(node, dict):
        return node.get(name)
    try:
        return getattr(node, name, None)
    except Exception:  # noqa: BLE001 - a missing (???) value: reported by the missing-key check
        return None


def check_ranges(node: Any, schema: type, prefix: str = "") -> None:
    """Raise ConfigError naming `<prefix><field>` for the first value outside its declared
    range, walking nested dataclass fields and dicts of them."""
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        value = _value(node, f.name)
        key = f"{prefix}{f.name}"
        if value is None:
            continue
        rng = f.metadata.get("range")
        if rng is not None and not isinstance(value, bool):
            if not isinstance(value, int | float):
                raise ConfigError(key, f"must be a number {rng}, not {value!r}")
            if not rng.holds(value):  # NaN fails every comparison: refused too
                raise ConfigError(key, f"must be {rng}, not {value!r}")
        inner, many = _schema_of(hints.get(f.name))
        if inner is None:
            continue
        if many:
            for name, item in value.items():
                if item is not None:
                    check_ranges(item, inner, f"{key}.{name}.")
        else:
            check_ranges(value, inner, f"{key}.")

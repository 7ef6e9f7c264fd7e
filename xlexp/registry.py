"""One plug-in pattern for every kind: a name maps to a target, imported when first asked for.

Stages, backends, QE scorers, sentence splitters, judge protocols and benchmarks register here
(as lm-evaluation-harness registers its models). A target is a class, a declaration object (a
stage, a protocol, a benchmark) or a `"module:attr"` string, so optional dependencies (vLLM,
COMET) are imported only when a config names them. Adding a plug-in is a file and one `register`
line; a config naming an unknown one fails naming its key. Names keep their registration order
(the stages run in it).
"""

from __future__ import annotations

import importlib
from typing import Any, Generic, TypeVar

from xlexp.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._targets: dict[str, type[T] | str] = {}

    def register(self, name: str, target: Any = None, before: str | None = None) -> Any:
        """`register("hf", "xlexp.llm.hf:HFBackend")`, or `@register("hf")` on a class.
        `before`: the name it goes in front of in the order (default: last)."""
        if target is not None:
            self._insert(name, target, before)
            return target

        def decorate(cls: type[T]) -> type[T]:
            self._insert(name, cls, before)
            return cls

        return decorate

    def _insert(self, name: str, target: Any, before: str | None) -> None:
        if before is None or before not in self._targets:
            self._targets[name] = target
            return
        items = [(k, v) for k, v in self._targets.items() if k != name]
        at = next(i for i, (k, _) in enumerate(items) if k == before)
        self._targets = dict([*items[:at], (name, target), *items[at:]])

    def unregister(self, name: str) -> None:
        self._targets.pop(name, None)

    def names(self) -> list[str]:
        return list(self._targets)

    def __contains__(self, name: object) -> bool:
        return name in self._targets

    def get(self, name: str, key: str | None = None) -> Any:
        """The target registered as `name`; a ConfigError naming `key` when there is none."""
        if name not in self._targets:
            raise ConfigError(
                key or self.kind,
                f"unknown {self.kind} {name!r} (known: {', '.join(self._targets)})",
            )
        target = self._targets[name]
        if isinstance(target, str):
            # Looked up each time (modules are imported once): the class is whatever the module
            # holds now, so a wrapped or patched class is the one used.
            module, _, attr = target.partition(":")
            target = getattr(importlib.import_module(module), attr)
        return target

    def values(self) -> list[Any]:
        """Every target, resolved, in order."""
        return [self.get(name) for name in self._targets]

    def create(self, name: str, *args: Any, **kwargs: Any) -> T:
        return self.get(name)(*args, **kwargs)


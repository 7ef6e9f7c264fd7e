"""The declaration of a results-table column and of a metric that fills columns (see
`xlexp.evaluate.metrics.METRICS`): one place says a column's label, format and direction."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    """One column of the results table, declared once for results.md, the report and the view:
    its key in a metrics row, its label, how a value is written (`".2f"`: that many decimals,
    `"d"`: an integer) and which way is better (None: no best, as for counts and CI bounds)."""

    key: str
    label: str
    format: str = ".2f"
    higher_is_better: bool | None = None

    def __post_init__(self) -> None:
        # Two forms only, so the view's script writes a value exactly as results.md does.
        if not re.fullmatch(r"\.\df|d", self.format):
            raise ValueError(f"column {self.key}: format {self.format!r} is not '.<digit>f' or 'd'")

    @property
    def decimals(self) -> int:
        return 0 if self.format == "d" else int(self.format[1])

    def text(self, value: float) -> str:
        return f"{round(value):d}" if self.format == "d" else format(value, self.format)


@dataclass(frozen=True)
class Metric:
    """Columns of the results table: `per_lang(data, n_boot, seed, alpha) -> {column: value}`
    and `average(rows, data, n_boot, seed, alpha) -> {column: value}` for the "avg" row.
    A column given as a (key, label) pair is a `Column` with the default format and no best."""

    columns: tuple[Column, ...]
    per_lang: Callable[..., dict]
    average: Callable[..., dict]

    def __post_init__(self) -> None:
        cols = tuple(c if isinstance(c, Column) else Column(*c) for c in self.columns)
        object.__setattr__(self, "columns", cols)

"""Every numeric knob's range is declared once on its config dataclass (xlexp.ranges.knob) and
checked by one walk before any model loads: for each declared range, a value just outside it is
refused naming its full key, and the value at its edge is accepted. The cases come from the
declarations, so a knob added with a range is covered without a new test.
"""

from __future__ import annotations

import dataclasses
import typing

import pytest
from test_config import make

from xlexp.config import Config, ConfigError, LLMConfig, register, validate
from xlexp.ranges import Range, check_ranges

register()


def declared(schema: type, prefix: str = "") -> list[tuple[str, Range, type]]:
    """(full key, range, field type) of every ranged field under `schema`; the roles' cards as
    `teacher.` (each card has the same fields)."""
    out = []
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        tp = hints[f.name]
        if "range" in f.metadata:
            out.append((prefix + f.name, f.metadata["range"], tp))
        if dataclasses.is_dataclass(tp) and (tp is not LLMConfig or f.name == "teacher"):
            out += declared(tp, f"{prefix}{f.name}.")
    return out


KNOBS = declared(Config)


def _outside(rng: Range, is_int: bool) -> float:
    step = 1 if is_int else 0.5
    if rng.ge is not None:
        return rng.ge - step
    if rng.gt is not None:
        return rng.gt
    return rng.le + step if rng.le is not None else rng.lt


def _edge(rng: Range, is_int: bool) -> float:
    if rng.ge is not None:
        return rng.ge
    if rng.gt is not None:
        return rng.gt + (1 if is_int else 0.5) if rng.le is None else rng.le
    return rng.le if rng.le is not None else rng.lt - 0.5


def _cfg(*overrides: str):
    return make("stages=[generate,sft,evaluate]", *overrides)


def _is_int(tp: type) -> bool:
    return int in (tp, *typing.get_args(tp))


def test_the_walk_covers_cards_stages_and_top_level_knobs():
    keys = {key for key, _, _ in KNOBS}
    assert {
        "k",
        "reject_warn_share",
        "teacher.batch_size",
        "teacher.max_concurrency",
        "teacher.sampling.temperature",
        "teacher.sampling.top_p",
        "teacher.sampling.max_tokens",
        "seed_data.n",
        "generate.batch_size",
        "generate.keep",
        "qe.batch_size",
        "sft.lr",
        "sft.external.n",
        "eval.limit",
        "eval.bootstrap",
        "logger.samples",
    } <= keys
    assert len(KNOBS) >= 40


@pytest.mark.parametrize("key, rng, tp", KNOBS, ids=[k for k, _, _ in KNOBS])
def test_a_value_outside_a_declared_range_is_refused_naming_its_key(key, rng, tp):
    value = _outside(rng, _is_int(tp))
    shown = int(value) if _is_int(tp) else float(value)
    with pytest.raises(ConfigError) as err:
        validate(_cfg(f"{key}={shown}"), cuda=False)
    assert err.value.key == key
    assert str(err.value) == f"{key}: must be {rng}, not {shown!r}"


@pytest.mark.parametrize("key, rng, tp", KNOBS, ids=[k for k, _, _ in KNOBS])
def test_the_value_at_a_ranges_edge_passes_the_walk(key, rng, tp):
    value = _edge(rng, _is_int(tp))
    cfg = _cfg(f"{key}={int(value) if _is_int(tp) else value}")
    check_ranges(cfg, Config)


def test_an_untyped_card_is_checked_against_the_card_schema():
    """qe.llm and eval.translator are untyped (they may interpolate another role): the card
    check walks them with the card's declared ranges."""
    cfg = _cfg("eval.benchmark=m_alpacaeval", "eval.translator=${judge}", "judge.timeout_s=0")
    with pytest.raises(ConfigError, match=r"^judge\.timeout_s: must be > 0, not 0"):
        validate(cfg, cuda=False)
    card = {"sampling": {"top_p": 0.0}}
    with pytest.raises(ConfigError, match=r"^qe\.llm\.sampling\.top_p: must be in \(0, 1\]"):
        check_ranges(card, LLMConfig, "qe.llm.")


def test_not_a_number_is_refused():
    with pytest.raises(ConfigError, match=r"^x\.sampling\.temperature: must be >= 0, not nan"):
        check_ranges({"sampling": {"temperature": float("nan")}}, LLMConfig, "x.")

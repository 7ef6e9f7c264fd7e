"""Bad values Hydra refuses, each said in one line before any work: an override of a key that
is not there or of the wrong type, an unknown config option, an override that does not parse."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def xlexp(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", "xlexp", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def last_line(out: subprocess.CompletedProcess) -> str:
    return [line for line in out.stderr.splitlines() if line.strip()][-1]


def assert_one_line(out: subprocess.CompletedProcess, start: str) -> None:
    assert out.returncode != 0, out.stderr
    assert last_line(out).startswith(start), out.stderr
    assert "HYDRA_FULL_ERROR" not in out.stderr and "Traceback" not in out.stderr, out.stderr


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["eval.limit=abc"], "eval.limit"),
        (["translators.nonexistent.model=x"], "translators.nonexistent"),
        (["teacher=nope"], "teacher"),
        (["eval.limit=[1,"], "eval.limit"),
        (["-m", "eval.limit=1,abc"], "eval.limit"),
        (["--cfg", "job", "eval.limit=abc"], "eval.limit"),
        (["stages=[report]", "eval.limit=${nope}"], "eval.limit"),
    ],
)
def test_a_bad_override_is_one_line_naming_its_key(tmp_path, overrides, key):
    out = xlexp(
        *overrides,
        f"store_dir={tmp_path / 'store'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        cwd=tmp_path,
    )
    assert_one_line(out, f"xlexp: config error: {key}: ")
    assert not (tmp_path / "store").exists()


def test_the_one_line_says_what_is_wrong(tmp_path):
    out = xlexp("translators.nonexistent.model=x", cwd=tmp_path)
    assert last_line(out) == (
        "xlexp: config error: translators.nonexistent: no such key "
        "(there: smollm2-greedy, smollm2-sampled); +translators.nonexistent.model=x adds it"
    )
    out = xlexp("eval.limit=abc", cwd=tmp_path)
    assert last_line(out) == (
        "xlexp: config error: eval.limit: "
        "Value 'abc' of type 'str' could not be converted to Integer"
    )
    assert not (tmp_path / "outputs").exists()  # not even a run dir


def test_hydra_full_error_still_gives_the_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "xlexp", "eval.limit=abc"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode != 0 and "Traceback" in out.stderr

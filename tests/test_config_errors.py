"""Bad values Hydra or the file system refuse, each said in one line before any work: an
override of a key that is not there or of the wrong type, an unknown config option, a run dir
that cannot be made or written, a store that cannot take the artifacts the run would build (a
rerun the store serves still goes on read-only)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fakeserver import FakeOpenAI
from test_ledger import answer
from test_ledger import compose_cfg as eval_cfg

from xlexp import run as run_module
from xlexp.__main__ import run
from xlexp.errors import StoreError

ROOT = Path(__file__).resolve().parents[1]


def _modes_bind() -> bool:
    """Whether a read-only dir stops this process (root, with CAP_DAC_OVERRIDE, writes anyway)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o555)
        try:
            Path(tmp, "probe").touch()
        except PermissionError:
            return True
        finally:
            os.chmod(tmp, 0o755)
    return False


MODES_IGNORED = not _modes_bind()
ROOT_IGNORES_MODES = "root writes into read-only dirs; the regular-file cases cover it"


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
    assert len([line for line in out.stderr.splitlines() if line.strip()]) == 1, out.stderr
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
        (["generate.batch_size=0"], "generate.batch_size"),  # refused by validation
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


@pytest.mark.parametrize("multirun", [False, True])
def test_a_run_dir_under_a_file_is_one_line_naming_it(tmp_path, multirun):
    (tmp_path / "afile").write_text("")
    run_dir = tmp_path / "afile" / "run"
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    out = xlexp(
        *(["-m"] if multirun else []),
        "stages=[report]",
        f"{key}={run_dir}",
        f"store_dir={tmp_path / 'store'}",
        cwd=tmp_path,
    )
    assert_one_line(
        out, f"xlexp: config error: {key}: cannot make or write {run_dir} (Not a directory)"
    )
    assert not (tmp_path / "store").exists()


@pytest.mark.skipif(MODES_IGNORED, reason=ROOT_IGNORES_MODES)
@pytest.mark.parametrize("hydra_writes", [True, False])
def test_a_read_only_run_dir_is_one_line_naming_it(tmp_path, hydra_writes):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_dir.chmod(0o555)
    # Without .hydra/ and the log file Hydra writes nothing there: xlexp's own check says it.
    quiet = [] if hydra_writes else ["hydra.output_subdir=null", "hydra/job_logging=disabled"]
    try:
        out = xlexp(
            "stages=[report]",
            f"hydra.run.dir={run_dir}",
            f"store_dir={tmp_path / 'store'}",
            *quiet,
            cwd=tmp_path,
        )
    finally:
        run_dir.chmod(0o755)
    assert_one_line(out, "xlexp: config error: hydra.run.dir: ")
    assert str(run_dir) in last_line(out)


def test_a_store_that_is_a_file_is_named_before_any_stage(tmp_path):
    store = tmp_path / "store"
    store.write_text("")
    out = xlexp(
        "stages=[generate]",
        f"store_dir={store}",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert_one_line(out, f"xlexp: store: {store} is not writable (not a directory)")
    assert "would build seed, reverse" in last_line(out)


@pytest.mark.skipif(MODES_IGNORED, reason=ROOT_IGNORES_MODES)
def test_a_read_only_store_is_named_before_any_stage(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    store.chmod(0o555)
    try:
        out = xlexp(
            "stages=[generate]",
            f"store_dir={store}",
            f"hydra.run.dir={tmp_path / 'run'}",
            cwd=tmp_path,
        )
    finally:
        store.chmod(0o755)
    assert_one_line(out, f"xlexp: store: {store} is not writable (Permission denied)")
    assert not list(store.iterdir())


def test_not_writable_names_why(tmp_path):
    (tmp_path / "afile").write_text("")
    assert run_module.not_writable(tmp_path) is None
    assert run_module.not_writable(tmp_path / "new" / "dir") is None  # it can be made
    assert not (tmp_path / "new").exists()
    assert run_module.not_writable(tmp_path / "afile") == "not a directory"
    assert (
        run_module.not_writable(tmp_path / "afile" / "x") == f"{tmp_path / 'afile'}: not a "
        "directory"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["afile"]  # the probe file is gone


def test_a_rerun_the_store_serves_needs_no_writable_store_but_new_work_does(tmp_path, monkeypatch):
    store = tmp_path / "store"
    with FakeOpenAI(answer) as srv:
        run(eval_cfg(srv.base_url, store), tmp_path / "run1")
        # Root ignores file modes: the store is said to be read-only instead.
        real = run_module.not_writable
        monkeypatch.setattr(
            run_module,
            "not_writable",
            lambda path: "Read-only file system" if Path(path) == store else real(path),
        )
        calls = srv.calls
        again = run(eval_cfg(srv.base_url, store), tmp_path / "run2")
        assert again["cost"]["total"]["calls"] == 0 and srv.calls == calls
        cfg = eval_cfg(srv.base_url, store)
        cfg.eval.limit = int(cfg.eval.limit) + 2  # more prompts: new artifacts
        with pytest.raises(StoreError) as err:
            run(cfg, tmp_path / "run3")
        assert srv.calls == calls  # refused before any stage
    assert str(err.value).startswith(f"{store} is not writable (Read-only file system)")
    assert "would build respond" in str(err.value)

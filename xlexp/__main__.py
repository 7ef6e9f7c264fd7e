"""`python -m xlexp [overrides]` (or the `xlexp` script): validate the config, run the stages
it names (declared in xlexp/stage.py's registry; the loop is xlexp/run.py), report. Every stage's
output is a store artifact, so a rerun (or another job of a sweep) reuses whatever is already done.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import InterpolationResolutionError

from xlexp.config import register
from xlexp.errors import ConfigError
from xlexp.failures import BackendFailure
from xlexp.llm.base import CacheError
from xlexp.llm.preflight import PreflightError
from xlexp.store import StoreError

register()
log = logging.getLogger("xlexp")
# An absolute path: Hydra resolves a relative one against the calling module, which differs
# between `python -m xlexp` (a file) and the `xlexp` console script (a package module).
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
# True while Hydra composes the config and makes the run dir with HYDRA_FULL_ERROR set by main(),
# so that its errors reach main() as exceptions (one line each) instead of Hydra's printout.
_composing = False


def _job_started() -> None:
    """Hand errors back to Hydra once a job runs: a job's own failure is reported as before."""
    global _composing
    if _composing:
        os.environ.pop("HYDRA_FULL_ERROR", None)
        _composing = False


def run(cfg: DictConfig, run_dir: Path) -> dict:
    """Run the configured stages; returns the results summary (also written under run_dir)."""
    from xlexp.run import run as run_stages

    return run_stages(cfg, run_dir)  # type: ignore[return-value]


def check_run_dir(run_dir: Path, mode: RunMode | None) -> None:
    """The run dir takes files (results.json, results.md are written after the stages): else
    one line now, not a traceback after the work."""
    from xlexp.run import not_writable

    problem = not_writable(run_dir)
    if problem:
        key = "hydra.sweep.dir" if mode == RunMode.MULTIRUN else "hydra.run.dir"
        raise ConfigError(key, f"{run_dir} is not writable ({problem})")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    _job_started()
    logging.basicConfig(level=os.environ.get("XLEXP_LOG", "INFO"))
    # One line per HTTP request is noise at tens of thousands of requests.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        check_run_dir(run_dir, hydra_cfg.mode)
        summary = run(cfg, run_dir)
    except ConfigError as e:
        raise SystemExit(f"xlexp: config error: {e}") from None
    except InterpolationResolutionError as e:  # `${...}` in an override or a config file
        raise SystemExit(f"xlexp: config error: {e.full_key}: {e.msg.splitlines()[0]}") from None
    except (BackendFailure, PreflightError) as e:
        # One line per role: endpoint, error, count. Finished batches are kept; a rerun asks
        # only for what failed.
        raise SystemExit(f"xlexp: {e}") from None
    except (StoreError, CacheError) as e:
        raise SystemExit(f"xlexp: store: {e}") from None
    from xlexp.report import console_summary

    print(console_summary(summary))
    avg = (summary.get("metrics") or {}).get("avg", {})
    return avg.get("win_rate")


def main() -> None:
    """Entry point of both `python -m xlexp` and the `xlexp` console script."""
    from xlexp.argv import check_overrides, hydra_error_line, is_multirun, multirun_flag_first

    args = multirun_flag_first(sys.argv[1:])  # `+exp=scaling -m data_size=...` verbatim
    problem = check_overrides(args)
    if problem:
        raise SystemExit(f"xlexp: config error: {problem}")
    sys.argv[1:] = args
    if os.environ.get("HYDRA_FULL_ERROR"):  # the user asked for Hydra's full tracebacks
        hydra_main()
        return
    global _composing
    os.environ["HYDRA_FULL_ERROR"] = "1"
    _composing = True
    try:
        hydra_main()
    except Exception as e:
        line = hydra_error_line(e, is_multirun(args)) if _composing else None
        if line is None:
            raise
        raise SystemExit(f"xlexp: config error: {line}") from None
    finally:
        if _composing:
            os.environ.pop("HYDRA_FULL_ERROR", None)
            _composing = False


if __name__ == "__main__":
    main()

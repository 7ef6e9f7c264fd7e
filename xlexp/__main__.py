"""`python -m xlexp [overrides]`: validate the config, run the requested stages, report.

Stages: generate -> sft -> evaluate -> report. Every stage's output is a store artifact, so a
rerun (or another job of a sweep) reuses whatever is already done.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from xlexp.config import ConfigError, register, validate

register()
log = logging.getLogger("xlexp")


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Run the configured stages; returns the results summary (also written under run_dir)."""
    from xlexp import pipeline, report, track
    from xlexp.store import Store

    validate(cfg)  # fail before any model loads
    started = time.time()
    store = Store(cfg.store_dir)
    models = pipeline.Models(store)
    tracker = track.start(cfg, run_dir)
    summary: dict[str, Any] = {"note": cfg.note, "store": str(store.root), "run_dir": str(run_dir), "stages": {}}
    arts: dict[str, Any] = {}
    try:
        if "generate" in cfg.stages or "sft" in cfg.stages:
            t = time.time()
            arts.update(pipeline.run_generate(cfg, store, models))
            summary["stages"]["generate"] = {
                name: {"key": a.key, **a.meta["counts"]} for name, a in arts.items()
            } | {"seconds": round(time.time() - t, 1)}
            tracker.log_stage("generate", arts)
        adapter = None
        if "sft" in cfg.stages:
            t = time.time()
            adapter = arts["sft"] = pipeline.run_sft(cfg, store, arts["select"])
            summary["stages"]["sft"] = {"key": adapter.key, **adapter.meta["counts"], "seconds": round(time.time() - t, 1)}
            tracker.log_stage("sft", {"sft": adapter})
        if "evaluate" in cfg.stages:
            t = time.time()
            ev = pipeline.run_evaluate(cfg, store, models, adapter)
            arts.update(ev)
            summary["stages"]["evaluate"] = {name: a.key for name, a in ev.items()} | {"seconds": round(time.time() - t, 1)}
            summary["metrics"] = report.load_metrics(ev["judge"])
            if "rubric" in ev:  # Table 8 fine-grained scores
                summary["rubric"] = report.load_metrics(ev["rubric"])
                tracker.log_metrics({lang: {f"rubric_{k}": v for k, v in row.items()} for lang, row in summary["rubric"].items()})
            tracker.log_metrics(summary["metrics"])
        summary["usage"] = models.usage()
        summary["backend_calls"] = models.backend_calls()
        summary["seconds"] = round(time.time() - started, 1)
        if "report" in cfg.stages:
            paths = report.write_results(run_dir, summary, cfg)
            summary["results"] = {k: str(v) for k, v in paths.items()}
            tracker.log_files(paths)
        tracker.finish(summary)
    finally:
        models.close()
    return summary


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    logging.basicConfig(level=os.environ.get("XLEXP_LOG", "INFO"))
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        summary = run(cfg, run_dir)
    except ConfigError as e:
        log.error("config error: %s", e)
        raise SystemExit(f"xlexp: config error: {e}") from None
    from xlexp.report import console_summary

    print(console_summary(summary))
    avg = (summary.get("metrics") or {}).get("avg", {})
    return avg.get("win_rate")


if __name__ == "__main__":
    main()

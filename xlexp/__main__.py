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
    from xlexp import pipeline, progress, report, track
    from xlexp.ledger import LedgerStore

    validate(cfg)  # fail before any model loads
    started = time.time()
    store = LedgerStore(cfg.store_dir)  # a Store that measures each stage's tokens and dollars
    models = pipeline.Models(store)
    store.ledger.models = models
    tracker = track.start(cfg, run_dir)
    summary: dict[str, Any] = {"note": cfg.note, "store": str(store.root), "run_dir": str(run_dir), "stages": {}}
    arts: dict[str, Any] = {}
    try:
        if "generate" in cfg.stages or ("sft" in cfg.stages and cfg.sft.source == "generated"):
            t = time.time()
            measured = len(store.ledger.entries)
            arts.update(pipeline.run_generate(cfg, store, models))
            summary["stages"]["generate"] = {
                name: {"key": a.key, **a.meta["counts"]} for name, a in arts.items()
            } | {"seconds": round(time.time() - t, 1)}
            tracker.log_stage("generate", arts)
            summary["generation_stats"] = pipeline.generation_stats(arts)
            tracker.log_generation_stats(summary["generation_stats"])
            log.info(progress.stage_line("generate", arts, time.time() - t, store.ledger.total_since(measured)))
        adapter = None
        if "sft" in cfg.stages:
            t = time.time()
            measured = len(store.ledger.entries)
            adapter = arts["sft"] = pipeline.run_sft(cfg, store, pipeline.sft_dataset(cfg, store, arts))
            summary["stages"]["sft"] = {"key": adapter.key, **adapter.meta["counts"], "seconds": round(time.time() - t, 1)}
            tracker.log_stage("sft", {"sft": adapter})
            log.info(progress.stage_line("sft", {"sft": adapter}, time.time() - t, store.ledger.total_since(measured)))
        if "evaluate" in cfg.stages:
            t = time.time()
            measured = len(store.ledger.entries)
            ev = pipeline.run_evaluate(cfg, store, models, adapter)
            arts.update(ev)
            summary["stages"]["evaluate"] = {name: a.key for name, a in ev.items()} | {"seconds": round(time.time() - t, 1)}
            summary["metrics"] = report.load_metrics(ev["judge"])
            if "rubric" in ev:  # Table 8 fine-grained scores
                summary["rubric"] = report.load_metrics(ev["rubric"])
                tracker.log_metrics({lang: {f"rubric_{k}": v for k, v in row.items()} for lang, row in summary["rubric"].items()})
            tracker.log_metrics(summary["metrics"])
            # Labels for `python -m xlexp.report <sweep dir>`: the judged system, its experiment.
            summary["system"] = {**pipeline.system_labels(cfg, adapter), "exp": track.hydra_context().get("exp") or cfg.logger.group, "judge_key": ev["judge"].key}
            tracker.log_stage("evaluate", ev)
            log.info(progress.stage_line("evaluate", ev, time.time() - t, store.ledger.total_since(measured)))
        summary["usage"] = models.usage()
        summary["backend_calls"] = models.backend_calls()
        summary["cost"] = store.ledger.summary()
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
    import sys

    from xlexp.argv import multirun_flag_first

    sys.argv[1:] = multirun_flag_first(sys.argv[1:])  # `+exp=scaling -m data_size=...` verbatim
    main()

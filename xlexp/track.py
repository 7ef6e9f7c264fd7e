"""Weights & Biases tracking: offline without WANDB_API_KEY, secrets redacted, off with logger=none."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

_SECRET_KEY = re.compile(r"(api_?key|token|secret|password)$", re.I)
_SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)", re.I)


def secret_values() -> list[str]:
    """Values of environment variables that look like secrets (to scrub wherever they appear)."""
    return [v for k, v in os.environ.items() if _SECRET_ENV.search(k) and len(v) >= 8]


def redact(obj: Any, secrets: list[str] | None = None) -> Any:
    """A copy with secret-looking keys masked and any secret value scrubbed from strings."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(obj, dict):
        return {k: ("***" if _SECRET_KEY.search(str(k)) and v else redact(v, secrets)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v, secrets) for v in obj]
    if isinstance(obj, str):
        for s in secrets:
            obj = obj.replace(s, "***")
    return obj


class NullTracker:
    def log_stage(self, stage: str, artifacts: dict) -> None: ...
    def log_metrics(self, metrics: dict) -> None: ...
    def log_files(self, paths: dict) -> None: ...
    def finish(self, summary: dict) -> None: ...
    def log_generation_stats(self, stats: dict) -> None: ...


class WandbTracker(NullTracker):
    def __init__(self, cfg: Any, run_dir: Path):
        import wandb

        mode = cfg.logger.mode
        if mode == "auto":
            mode = "online" if os.environ.get("WANDB_API_KEY") else "offline"
        config = redact(OmegaConf.to_container(cfg, resolve=True))
        self.wandb = wandb
        self.run = wandb.init(
            project=cfg.logger.project,
            entity=cfg.logger.entity,
            group=cfg.logger.group,
            tags=list(cfg.logger.tags),
            config=config,
            dir=str(run_dir),
            mode=mode,
            job_type=",".join(cfg.stages),
            reinit="finish_previous",
        )

    def log_stage(self, stage: str, artifacts: dict) -> None:
        counts = {}
        for name, art in artifacts.items():
            for k, v in art.meta.get("counts", {}).items():
                if isinstance(v, int | float):
                    counts[f"{stage}/{name}/{k}"] = v
        self.run.log(counts)

    def log_metrics(self, metrics: dict) -> None:
        flat = {}
        for lang, row in metrics.items():
            for k, v in row.items():
                if isinstance(v, int | float):
                    flat[f"eval/{lang}/{k}"] = v
        self.run.log(flat)
        self.run.summary.update(flat)

    def log_files(self, paths: dict) -> None:
        for path in paths.values():
            self.run.save(str(path), base_path=str(Path(path).parent), policy="now")

    def log_generation_stats(self, stats: dict) -> None:
        """Per-stage counts, reject reasons, QE by language/translator, translator wins."""
        from xlexp.generate.stats import flatten

        flat = flatten(stats)
        self.run.log(flat)
        self.run.summary.update(flat)

    def finish(self, summary: dict) -> None:
        self.run.summary.update(redact({"seconds": summary.get("seconds"), "backend_calls": summary.get("backend_calls")}))
        self.run.finish()


def start(cfg: Any, run_dir: Path) -> NullTracker:
    return WandbTracker(cfg, run_dir) if cfg.logger.kind == "wandb" else NullTracker()

"""Weights & Biases tracking: offline without WANDB_API_KEY, secrets redacted, off with
logger=none."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xlexp.plain import plain
from xlexp.ranges import knob
from xlexp.store import read_jsonl


@dataclass
class LoggerConfig:
    kind: str = "none"  # wandb | none
    project: str = "xlexp"
    entity: str | None = None
    mode: str = "auto"  # auto: online with WANDB_API_KEY, offline without
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    samples: int = knob(20, ge=0)  # judged sample rows per language in the W&B table
    # dataset/adapter artifacts above this are logged as file:// references
    copy_max_mb: float = knob(50.0, ge=0)


_SECRET_KEY = re.compile(r"(api_?key|token|secret|password)$", re.I)
_SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)", re.I)


def secret_values() -> list[str]:
    """Values of environment variables that look like secrets (to scrub wherever they appear)."""
    return [v for k, v in os.environ.items() if _SECRET_ENV.search(k) and len(v) >= 8]


def redact(obj: Any, secrets: list[str] | None = None) -> Any:
    """A copy with secret-looking keys masked and any secret value scrubbed from strings."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(obj, dict):
        return {
            k: ("***" if _SECRET_KEY.search(str(k)) and v else redact(v, secrets))
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [redact(v, secrets) for v in obj]
    if isinstance(obj, str):
        for s in secrets:
            obj = obj.replace(s, "***")
    return obj


# The names W&B panels read (the README lists them; the dashboard builds its panels from them).
DATA_SIZE = "data_size"  # the judged system's SFT rows, in the row of its metrics (Fig. 2's x)
GRID_TABLE = "eval/grid"  # Table 6: one row per language of the judged system
SAMPLES_TABLE = "eval/samples"
# generate/qe_scores/<lang>: a histogram of the passages' QE scores (not under generate/qe/,
# where the qe artifact's counts are)
QE_PREFIX = "generate/qe_scores"


def eval_key(protocol: str | None, lang: str, column: str) -> str:
    """`eval/<protocol>/<lang>/<column>`: win rates of two judge protocols never share a
    chart; without a protocol (rubric scores) `eval/<lang>/<column>`."""
    return f"eval/{protocol}/{lang}/{column}" if protocol else f"eval/{lang}/{column}"


def eval_values(metrics: dict, protocol: str | None = None) -> dict[str, float]:
    """A per-language metrics table as flat W&B values; absent values (None) are left out, and
    a bool is an int but no metric."""
    return {
        eval_key(protocol, lang, k): v
        for lang, row in metrics.items()
        for k, v in row.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


class NullTracker:
    def log_stage(self, stage: Any, artifacts: dict) -> None: ...
    def log_values(self, values: dict) -> None: ...
    def log_metrics(self, metrics: dict, protocol: str | None = None) -> None: ...
    def log_samples(self, rows: list[dict]) -> None: ...
    def log_table(self, key: str, columns: list[str], rows: list[list]) -> None: ...
    def log_histograms(self, values: dict[str, list[float]]) -> None: ...
    def log_files(self, paths: dict) -> None: ...
    def finish(self, summary: dict) -> None: ...


class WandbTracker(NullTracker):
    def __init__(self, cfg: Any, run_dir: Path):
        import wandb

        mode = cfg.logger.mode
        if mode == "auto":
            mode = "online" if os.environ.get("WANDB_API_KEY") else "offline"
        config = redact(plain(cfg))
        ctx = hydra_context()
        exp = ctx.get("exp")
        config["xlexp"] = {
            "exp": exp,
            "sweep_dir": ctx.get("sweep_dir"),
            "job_num": ctx.get("job_num"),
        }
        self.cfg = cfg
        self.wandb = wandb
        self.run = wandb.init(
            project=cfg.logger.project,
            entity=cfg.logger.entity,
            group=run_group(cfg.logger.group, exp, ctx.get("sweep_dir")),
            name=ctx.get("job_name"),
            tags=list(
                dict.fromkeys([*cfg.logger.tags, *([exp] if exp else []), *_protocol_tag(cfg)])
            ),
            config=config,
            dir=str(run_dir),
            mode=mode,
            job_type=",".join(cfg.stages),
            reinit="finish_previous",
        )

    def log_stage(self, stage: Any, artifacts: dict) -> None:
        """A declared stage's counts as `<stage>/<artifact>/<count>`, and the artifacts it
        declares as W&B artifacts (the dataset, the adapter) logged as such."""
        counts = {}
        for name, art in artifacts.items():
            for k, v in art.meta.get("counts", {}).items():
                if isinstance(v, int | float):
                    counts[f"{stage.name}/{name}/{k}"] = v
                elif isinstance(v, dict):  # reject reasons, per-language counts: one level down
                    for sub, x in v.items():
                        if isinstance(x, int | float):
                            counts[f"{stage.name}/{name}/{k}/{sub}"] = x
        self.run.log(counts)
        for spec in stage.artifacts:
            if spec.logged_as and spec.name in artifacts:
                self.log_artifact(artifacts[spec.name], spec.logged_as, list(spec.files))

    def log_artifact(self, artifact: Any, kind: str, names: list[str]) -> None:
        """A store artifact as a W&B artifact: a reference (file:// URI, checksummed, no copy) when
        its files exceed logger.copy_max_mb, else copied; named by the store key so reruns
        dedupe."""
        paths = [artifact.file(n) for n in names if artifact.file(n).exists()]
        size = sum(_size(p) for p in paths)
        art = self.wandb.Artifact(
            f"{kind}-{artifact.key}",
            type=kind,
            metadata=redact(
                {
                    "stage": artifact.stage,
                    "key": artifact.key,
                    "counts": artifact.meta.get("counts"),
                    "bytes": size,
                }
            ),
        )
        copy = size <= self.cfg.logger.copy_max_mb * 1e6
        for p in paths:
            if not copy:
                art.add_reference(p.resolve().as_uri(), name=p.name)
            elif p.is_dir():
                art.add_dir(str(p), name=p.name)
            else:
                art.add_file(str(p), name=p.name)
        self.run.log_artifact(art)

    def log_samples(self, rows: list[dict]) -> None:
        if not rows:
            return
        table = self.wandb.Table(
            columns=SAMPLE_COLUMNS, data=[[r[c] for c in SAMPLE_COLUMNS] for r in redact(rows)]
        )
        self.run.log({SAMPLES_TABLE: table})

    def log_table(self, key: str, columns: list[str], rows: list[list]) -> None:
        if rows:
            self.run.log({key: self.wandb.Table(columns=columns, data=redact(rows))})

    def log_histograms(self, values: dict[str, list[float]]) -> None:
        """Each key's values as a W&B histogram (one logged row)."""
        import numpy as np

        hists = {}
        for key, v in values.items():
            if v:
                # Bins of our own: wandb's 64 fail on a few (nearly) equal scores.
                lo, hi = min(v), max(v)
                if hi - lo < 1e-6:
                    lo, hi = lo - 0.5, hi + 0.5
                edges = np.histogram(v, bins=20, range=(lo, hi))
                hists[key] = self.wandb.Histogram(np_histogram=edges)
        if hists:
            self.run.log(hists)

    def log_metrics(self, metrics: dict, protocol: str | None = None) -> None:
        """`eval/<protocol>/<lang>/<metric>` (see `eval_key`)."""
        flat = eval_values(metrics, protocol)
        self.run.log(flat)
        self.run.summary.update(flat)

    def log_files(self, paths: dict) -> None:
        for path in paths.values():
            self.run.save(str(path), base_path=str(Path(path).parent), policy="now")

    def log_values(self, values: dict) -> None:
        """Numbers a stage computed (flat `a/b/c` keys), in the history and the run's summary."""
        self.run.log(values)
        self.run.summary.update(values)

    def finish(self, summary: dict) -> None:
        self.run.summary.update(
            redact(
                {"seconds": summary.get("seconds"), "backend_calls": summary.get("backend_calls")}
            )
        )
        if summary.get("cost"):  # the ledger: tokens and dollars per stage and role
            self.run.summary.update(redact({"cost": summary["cost"]}))
        self.run.finish()


def _protocol_tag(cfg: Any) -> list[str]:
    """`judge:<protocol>` on runs that evaluate: the run's win rates belong to that protocol."""
    protocol = cfg.eval.get("judge_protocol") if "evaluate" in cfg.stages else None
    return [f"judge:{protocol}"] if protocol else []


SAMPLE_COLUMNS = [
    "id",
    "lang",
    "instruction",
    "system_output",
    "reference_output",
    "preference",
    "malformed",
]


def _size(path: Path) -> int:
    return (
        sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        if path.is_dir()
        else path.stat().st_size
    )


def sample_rows(system: Any, reference: Any, judge: Any, per_lang: int) -> list[dict]:
    """The first `per_lang` judged rows of each language: instruction, both outputs, preference
    (P(system better), None when the judge gave no usable verdict) and the malformed reasons."""
    out = []
    for path in sorted(judge.path.glob("*.jsonl")):
        code = path.stem
        if not system.file(f"{code}.json").exists() or not reference.file(f"{code}.json").exists():
            continue
        sys_rows = {r["id"]: r for r in json.loads(system.file(f"{code}.json").read_text())}
        ref_rows = {r["id"]: r for r in json.loads(reference.file(f"{code}.json").read_text())}
        for row in read_jsonl(path)[:per_lang]:
            s, r = sys_rows.get(row["id"], {}), ref_rows.get(row["id"], {})
            out.append(
                {
                    "id": row["id"],
                    "lang": code,
                    "instruction": s.get("instruction", ""),
                    "system_output": s.get("output", ""),
                    "reference_output": r.get("output", ""),
                    "preference": row.get("preference"),
                    "malformed": "; ".join(m["reason"] for m in row.get("malformed", [])),
                }
            )
    return out


def hydra_context() -> dict:
    """Experiment name, sweep dir, job number and name of the running Hydra job ({} outside
    Hydra)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return {}
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    return {
        "exp": hc.runtime.choices.get("exp"),
        "sweep_dir": str(hc.sweep.dir) if multirun else None,
        "job_num": hc.job.get("num") if multirun else None,
        "job_name": job_name(hc.job.get("num"), list(hc.overrides.task)) if multirun else None,
    }


def job_name(num: int | None, overrides: list[str]) -> str:
    """`3 +exp=scaling,data_size=2k`: the job number and its top-level overrides (experiment,
    groups, knobs such as data_size), not dotted ones that carry URLs and paths; secrets
    scrubbed."""
    knobs = [
        o
        for o in overrides
        if "." not in o.split("=", 1)[0]
        and "/" not in o.split("=", 1)[-1]
        and not o.startswith("hydra")
    ]
    return redact(f"{num} {','.join(knobs)}".strip())[:128]


def run_group(group: str | None, exp: str | None, sweep_dir: str | None) -> str | None:
    """W&B group: the experiment (logger.group, else the +exp choice), and for a multirun its sweep,
    so the jobs of one sweep share a group and two sweeps of one experiment do not."""
    name = group or exp
    if sweep_dir:
        sweep = "/".join(
            Path(sweep_dir).parts[-2:]
        )  # outputs/multirun/<date>/<time> -> <date>/<time>
        return f"{name or 'sweep'}:{sweep}"
    return name


def start(cfg: Any, run_dir: Path) -> NullTracker:
    return WandbTracker(cfg, run_dir) if cfg.logger.kind == "wandb" else NullTracker()

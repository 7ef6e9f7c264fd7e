"""The SFT stage, declared once (paper section 5): the training rows (generated, external or the
authors' release) -> a LoRA adapter. The run loop, the cost plan, results.md and W&B read this.
"""

from __future__ import annotations

from typing import Any

from xlexp.config import Config
from xlexp.sft import config as sft_config
from xlexp.sft.config import parse_data_size
from xlexp.stage import ArtifactSpec, Expected, Measured, RunContext, Stage, Training
from xlexp.store import Artifact


def run(ctx: RunContext, arts: dict[str, Artifact]) -> None:
    from xlexp.sft.stage import run_sft, sft_dataset

    cfg = ctx.cfg
    dataset = (
        ctx.need("select") if cfg.sft.source == "generated" else sft_dataset(cfg, ctx.store, arts)
    )
    arts["adapter"] = run_sft(cfg, ctx.store, dataset)


def roles(cfg: Config) -> dict[str, Any]:
    return {"model": cfg.model}


def expected(cfg: Config, measured: Measured) -> Expected:
    """Training tokens: data_size rows x epochs x tokens per row (measured in the store's
    finished adapters, else half of sft.max_seq_len)."""
    seen = [m.get("counts") or {} for m in measured.done("sft")]
    seen = [c for c in seen if c.get("rows") and c.get("tokens_seen")]
    rows = sum(c["rows"] for c in seen)
    per_row = (
        sum(c["tokens_seen"] / max(float(c.get("epochs") or 1), 1e-9) for c in seen) / rows
        if rows
        else None
    )
    n = parse_data_size(cfg.data_size)
    tokens = (
        n
        * float(cfg.sft.epochs)
        * (per_row if per_row is not None else int(cfg.sft.max_seq_len) / 2)
    )
    return Expected(
        training=[
            Training(
                "adapter",
                tokens,
                per_row is not None,
                getattr(cfg.model, "train_tokens_per_s", None),
            )
        ]
    )


STAGE = Stage(
    name="sft",
    artifacts=(
        ArtifactSpec("external_data", when=lambda cfg: cfg.sft.source == "external"),
        ArtifactSpec("release_data", when=lambda cfg: cfg.sft.source == "release"),
        ArtifactSpec("adapter", kind="sft", logged_as="adapter", files=("adapter", "DONE")),
    ),
    run=run,
    roles=roles,
    validate=sft_config.validate,
    expected=expected,
)

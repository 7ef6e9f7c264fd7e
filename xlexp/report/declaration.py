"""The report stage, declared once: results.md, results.json and the run's HTML view, written
from the summary every other stage added to. It builds no artifact."""

from __future__ import annotations

from typing import Any

from xlexp.stage import RunContext, Stage
from xlexp.store import Artifact


def note_applies(cfg: Any) -> bool:
    """The config's note is about `note_models` (none: about the run): it holds while one of
    them plays a role of the stages the run calls."""
    from xlexp.run import roles_of

    about = set(cfg.get("note_models") or ())
    return not about or any(card.model in about for card in roles_of(cfg).values())


def run(ctx: RunContext, arts: dict[str, Artifact]) -> None:
    from xlexp.report.markdown import write_results
    from xlexp.run import totals
    from xlexp.track import WandbTracker

    totals(ctx)
    if isinstance(ctx.tracker, WandbTracker):  # wandb_workspaces is imported only for W&B runs
        from xlexp.dashboard import at_report

        at_report(ctx)  # Fig. 2's point, Table 6's rows, the dashboard (before results.json)
    if not note_applies(ctx.cfg):
        ctx.summary["note"] = ""  # e.g. the tiny profile's, once every role is another model
    paths = write_results(ctx.run_dir, ctx.summary, ctx.cfg)
    ctx.summary["results"] = {k: str(v) for k, v in paths.items()}
    ctx.tracker.log_files(paths)


STAGE = Stage(name="report", artifacts=(), run=run)

"""The report stage, declared once: results.md, results.json and the run's HTML view, written
from the summary every other stage added to. It builds no artifact."""

from __future__ import annotations

from xlexp.stage import RunContext, Stage
from xlexp.store import Artifact


def run(ctx: RunContext, arts: dict[str, Artifact]) -> None:
    from xlexp.dashboard import at_report
    from xlexp.report.markdown import write_results
    from xlexp.run import totals

    totals(ctx)
    at_report(ctx)  # W&B: Fig. 2's point, Table 6's rows, the dashboard (before results.json)
    paths = write_results(ctx.run_dir, ctx.summary, ctx.cfg)
    ctx.summary["results"] = {k: str(v) for k, v in paths.items()}
    ctx.tracker.log_files(paths)


STAGE = Stage(name="report", artifacts=(), run=run)

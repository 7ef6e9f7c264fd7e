"""Making the dashboard: at the report stage (one run), when a sweep ends (its W&B group), and
from `python -m xlexp.dashboard`. Online the workspace and the report are saved to W&B; offline
the spec they would save is written as JSON (beside results.md, or in the sweep's report/) and
one line says where.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from xlexp.dashboard.names import (
    grid_table,
    logged_names,
    qe_scores,
    scaling_values,
)
from xlexp.dashboard.panels import Scope, report, workspace
from xlexp.store import write_json
from xlexp.track import GRID_TABLE, WandbTracker, hydra_context

log = logging.getLogger("xlexp")

SPEC_NAME = "dashboard.json"
VIEW_NAME = "view.html"  # the report stage writes the view beside results.md under this name


def spec(scope: Scope, names: list[str]) -> dict:
    """What saving would send: the workspace view and the report as W&B's JSON."""
    # wandb_workspaces has no public serializer: _to_model() is what save() uploads.
    dump = {"by_alias": True, "exclude_none": True, "mode": "json"}
    return {
        "scope": asdict(scope),
        "names": names,
        "workspace": workspace(scope, names)._to_model().model_dump(**dump),
        "report": report(scope, names, online=False)._to_model().model_dump(**dump),
    }


def publish(scope: Scope, names: list[str], spec_path: Path, online: bool) -> str:
    """Save the dashboard (online) or write its spec to `spec_path`; the line that says which."""
    if online:
        saved_view = workspace(scope, names).save()
        saved_report = report(scope, names).save()
        return f"W&B dashboard: workspace {saved_view.url}, report {saved_report.url}"
    write_json(spec_path, spec(scope, names))
    return (
        f"W&B is offline: the dashboard was not saved; its spec is {spec_path} "
        f"(`python -m xlexp.dashboard {spec_path.parent}` saves it once online)"
    )


def _view_sections(ctx: Any) -> dict[str, list[dict]]:
    """The HTML view's data of this run's stages, read by each stage's declared view reader."""
    from xlexp.stage import STAGES
    from xlexp.view.read_common import _JSONL_CACHE

    sections: dict[str, list[dict]] = {}
    try:
        for stage in STAGES.values():
            entry = (ctx.summary.get("stages") or {}).get(stage.name)
            if stage.view is None or not isinstance(entry, dict):
                continue
            keys = {n: i.get("key") for n, i in entry.items() if isinstance(i, dict)}
            if keys.get(stage.view.anchor):
                sections.setdefault(stage.view.section, []).append(
                    stage.view.read(ctx.store, keys, ["."])
                )
    finally:
        _JSONL_CACHE.clear()
    return sections


def run_record(tracker: WandbTracker) -> dict:
    """Where the run is in W&B (results.json keeps it, so the dashboard can be made later)."""
    run = tracker.run
    return {
        "project": run.project,
        "entity": tracker.cfg.logger.entity or run.entity or "",
        "group": run.group or None,
        "id": run.id,
        "name": run.name,
        "url": run.url,
        "online": not run.offline,
    }


def view_text(record: dict, on_disk: Path) -> str:
    link = f"[{VIEW_NAME}]({record['url']}/files/{VIEW_NAME})" if record.get("url") else VIEW_NAME
    return (
        f"**Browse the data**: {link} in the run's files, one self-contained HTML page: every "
        f"generated row with its candidates and QE scores, every judged prompt with both outputs "
        f"and the verdicts. On disk: `{on_disk}`."
    )


def at_report(ctx: Any) -> None:
    """The report stage's part: log Fig. 2's point, Table 6's rows and the QE histograms, and
    make one run's dashboard (a sweep's is made when the sweep ends). Nothing without W&B."""
    tracker = ctx.tracker
    if not isinstance(tracker, WandbTracker):
        return
    summary = ctx.summary
    if point := scaling_values(summary):
        tracker.log_values(point)
    tracker.log_table(GRID_TABLE, *grid_table(summary))
    try:
        tracker.log_histograms(qe_scores(_view_sections(ctx)))
    except Exception as e:  # the dashboard stands without its histograms; say why
        log.warning("QE histograms not logged: %s", e)
    record = summary["wandb"] = run_record(tracker)
    if hydra_context().get("sweep_dir"):
        return
    scope = Scope(
        project=record["project"], entity=record["entity"], title=f"xlexp run {record['name']}",
        run_id=record["id"], view=view_text(record, Path(ctx.run_dir) / VIEW_NAME),
    )  # fmt: skip
    log.info(publish(scope, logged_names(summary), Path(ctx.run_dir) / SPEC_NAME, record["online"]))


def summaries(path: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(path).rglob("results.json"))]


def dashboard_for(path: Path, online: bool | None = None) -> str:
    """The dashboard of a sweep dir (its W&B group) or a run dir, from the results.json files
    under it; `online` None: as the runs were logged. Raises FileNotFoundError when nothing
    under `path` was logged to W&B."""
    path = Path(path)
    found = [s for s in summaries(path) if s.get("wandb")]
    if not found:
        raise FileNotFoundError(
            f"xlexp.dashboard: no run under {path} was logged to W&B (run with logger=wandb)"
        )
    names = list(dict.fromkeys(n for s in found for n in logged_names(s)))
    record = found[0]["wandb"]
    online = record["online"] if online is None else online
    one_run = len(found) == 1 and (path / "results.json").exists()
    if one_run or not record.get("group"):
        scope = Scope(
            project=record["project"], entity=record["entity"],
            title=f"xlexp run {record['name']}", run_id=record["id"],
            view=view_text(record, path / VIEW_NAME),
        )  # fmt: skip
        return publish(scope, names, path / SPEC_NAME, online)
    scope = Scope(
        project=record["project"], entity=record["entity"], title=f"xlexp {record['group']}",
        group=record["group"],
        view=view_text({}, path / VIEW_NAME) + " Each job's own view is in its run's files.",
    )  # fmt: skip
    return publish(scope, names, path / "report" / SPEC_NAME, online)


def group_dashboard(group: str, project: str, entity: str | None) -> str:
    """The dashboard of a W&B group, from the names its runs logged (online only)."""
    import wandb

    api = wandb.Api()
    entity = entity or api.default_entity
    runs = api.runs(f"{entity}/{project}", filters={"group": group})
    # A public run's summary is no dict: its keys() is what it offers.
    logged = (k for r in runs for k in r.summary.keys())  # noqa: SIM118
    names = list(dict.fromkeys(k for k in logged if not k.startswith("_")))
    if not names:
        raise FileNotFoundError(f"xlexp.dashboard: no run of group {group} in {entity}/{project}")
    scope = Scope(project=project, entity=entity, title=f"xlexp {group}", group=group)
    return publish(scope, names, Path(SPEC_NAME), online=True)

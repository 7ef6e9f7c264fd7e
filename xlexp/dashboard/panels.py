"""The dashboard as wandb_workspaces objects: a saved workspace view and a report, for a sweep
(its W&B group) or one run. Each section is made from the logged names (`names`) and the
metric declarations (`METRICS`'s columns: which way is better, the label), never from a list of
metrics written here; a section whose names were not logged is left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import wandb_workspaces.reports.v2 as wr
import wandb_workspaces.workspaces as ws
from wandb_workspaces import expr

from xlexp.dashboard.names import (
    FUNNEL_PREFIX,
    funnel_stages,
    languages,
    protocols,
)
from xlexp.evaluate.metrics import Column, columns
from xlexp.track import DATA_SIZE, GRID_TABLE, QE_PREFIX, SAMPLES_TABLE, eval_key

WIDE = wr.Layout(w=24, h=10)


@dataclass(frozen=True)
class Scope:
    """Which runs a dashboard shows: a sweep's W&B group, or one run (by its W&B id)."""

    project: str
    entity: str
    title: str
    group: str | None = None
    run_id: str | None = None
    view: str = ""  # Markdown: where the HTML view of the data is

    @property
    def filters(self) -> list:
        if self.group:
            return [expr.Metric("Group") == self.group]
        return [expr.Metric("ID") == self.run_id] if self.run_id else []


@dataclass
class Section:
    name: str
    text: str  # what the section shows, for the report
    panels: list


def headline_columns() -> list[Column]:
    """The declared columns with a direction that are rates (win rate, LC win rate, language
    fidelity): each gets its own Fig. 2 plot."""
    return [c for c in columns() if c.higher_is_better is not None]


def _logged(names: list[str], wanted: list[str]) -> list[str]:
    have = set(names)
    return [n for n in wanted if n in have]


def scaling_plots(names: list[str]) -> list[wr.LinePlot]:
    """Fig. 2: each headline metric against `data_size` (log x), one series per language (and
    avg); runs grouped by model, so a sweep's jobs make one line per language."""
    if DATA_SIZE not in names:
        return []
    plots = []
    for protocol in protocols(names):
        for col in headline_columns():
            y = _logged(names, [eval_key(protocol, lang, col.key) for lang in languages(names)])
            if y:
                plots.append(
                    wr.LinePlot(
                        title=f"{col.label} against SFT data size ({protocol} protocol)",
                        x=DATA_SIZE, y=y, log_x=True, title_x="SFT instructions",
                        title_y=col.label, groupby=wr.Config("model.name"),
                        groupby_aggfunc="mean", groupby_rangefunc="minmax",
                        legend_template="${metricName}",
                    )
                )  # fmt: skip
    return plots


def metric_bars(names: list[str]) -> list[wr.BarPlot]:
    """One run's headline metrics: a bar per language."""
    bars = []
    for protocol in protocols(names):
        for col in headline_columns():
            y = _logged(names, [eval_key(protocol, lang, col.key) for lang in languages(names)])
            if y:
                bars.append(wr.BarPlot(title=f"{col.label} ({protocol} protocol)", metrics=y))
    return bars


def grid_panels(names: list[str]) -> list:
    """Table 6: the logged grid table of every run (a row per system and language) and the run
    comparer (configs and summaries side by side)."""
    panels: list = [wr.RunComparer(layout=WIDE)]
    if GRID_TABLE in names:
        panels.insert(0, wr.WeavePanelSummaryTable(table_name=GRID_TABLE, layout=WIDE))
    return panels


def grid_columns(names: list[str]) -> list[str]:
    """The runs table as Table 6: the data size, then the avg and each language of the first
    headline metric."""
    cols = [f"summary:{DATA_SIZE}"] if DATA_SIZE in names else []
    for protocol in protocols(names)[:1]:
        for col in headline_columns()[:1]:
            keys = [eval_key(protocol, lang, col.key) for lang in languages(names)]
            cols += [f"summary:{k}" for k in _logged(names, keys)]
    return cols


def generation_panels(names: list[str]) -> list:
    """The funnel (rows out of each stage, and rejects) and a QE histogram per language."""
    stages = funnel_stages(names)
    panels: list = []
    for count in ("out", "rejects"):
        keys = _logged(names, [f"{FUNNEL_PREFIX}/{s}/{count}" for s in stages])
        if keys:
            panels.append(wr.BarPlot(title=f"generation funnel: rows {count}", metrics=keys))
    for name in names:
        if name.startswith(QE_PREFIX + "/"):
            panels.append(wr.LinePlot(title=f"QE scores, {name.rsplit('/', 1)[-1]}", y=[name]))
    return panels


def data_panels(scope: Scope, names: list[str]) -> list:
    panels: list = []
    if scope.view:
        panels.append(wr.MarkdownPanel(markdown=scope.view))
    if SAMPLES_TABLE in names:
        panels.append(wr.WeavePanelSummaryTable(table_name=SAMPLES_TABLE, layout=WIDE))
    return panels


def sections(scope: Scope, names: list[str]) -> list[Section]:
    """The dashboard's sections, in reading order; empty ones left out."""
    sweep = scope.group is not None
    found = [
        Section(
            "Fig. 2: scaling" if sweep else "Metrics",
            "Each metric with a direction against the SFT data size, one line per language."
            if sweep
            else "Each metric with a direction, a bar per language.",
            scaling_plots(names) if sweep else metric_bars(names),
        ),
        Section(
            "Table 6: model grid",
            "Every judged system, a row per language with every metric column; the run "
            "comparer lines up the runs' configs and summaries.",
            grid_panels(names) if any(n.startswith("eval/") for n in names) else [],
        ),
        Section(
            "Generation",
            "Rows out of each generation stage and their rejects; the QE scores of the "
            "passages by language.",
            generation_panels(names),
        ),
        Section("Data", "The generated rows and judged prompts.", data_panels(scope, names)),
    ]
    return [s for s in found if s.panels]


def workspace(scope: Scope, names: list[str]) -> ws.Workspace:
    return ws.Workspace(
        entity=scope.entity,
        project=scope.project,
        name=scope.title,
        sections=[
            ws.Section(name=s.name, panels=s.panels, is_open=True) for s in sections(scope, names)
        ],
        runset_settings=ws.RunsetSettings(
            filters=scope.filters, pinned_columns=grid_columns(names)
        ),
    )


def report(scope: Scope, names: list[str], online: bool = True) -> wr.Report:
    """The report; `online` False: its run set names no entity, since wandb_workspaces looks
    the project up on W&B when one is named (the offline spec keeps the entity in its project)."""
    runset = wr.Runset(
        entity=scope.entity if online else "", project=scope.project, name=scope.title,
        filters=scope.filters, pinned_columns=grid_columns(names),
    )  # fmt: skip
    blocks: list = []
    for s in sections(scope, names):
        blocks += [wr.H2(s.name), wr.P(s.text), wr.PanelGrid(runsets=[runset], panels=s.panels)]
    return wr.Report(
        entity=scope.entity,
        project=scope.project,
        title=scope.title[:128],
        description="Made by xlexp from the names its runs logged.",
        blocks=blocks,
    )

"""A sweep's report: tables.md (the paper's layout, Table 2's RTT deltas), tables.csv and the
Fig. 2 plot(s) under `<sweep dir>/report/`, and the Hydra callback that writes them (and the
sweep's HTML view) when a multirun ends."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from xlexp.report.markdown import paper_table
from xlexp.report.plot import scaling_plot
from xlexp.report.tables import SystemRow, collect, group_tables, languages, order_rows, rtt_deltas

log = logging.getLogger("xlexp")


def write_csv(tables: dict[str, list[SystemRow]], path: Path, metric: str = "win_rate") -> None:
    langs = languages([r for rows in tables.values() for r in rows])
    with Path(path).open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(
            ["comparison", "model", "rtt", "data_size", "selection", "exp", "system", "avg", *langs]
        )
        for name, rows in tables.items():
            for r in rows:
                values = [r.value(c, metric) for c in ["avg", *langs]]
                size = r.data_size if r.data_size is not None else ""
                out.writerow(
                    [name, r.model, r.rtt or "", size, r.selection or "", r.exp or "", r.label()]
                    + ["" if v is None else f"{v:.4f}" for v in values]
                )


def build_report(
    path: Path,
    out_dir: Path | None = None,
    metric: str = "win_rate",
    lines: str = "model",
    best_per: str = "column",
) -> dict[str, Path]:
    """Write tables.md, tables.csv and the scaling plot(s) for a sweep/run/store dir."""
    tables = group_tables(collect(path))
    out = Path(out_dir) if out_dir else Path(path) / "report"
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "tables.md", "csv": out / "tables.csv"}
    parts = [f"# xlexp report: {metric.replace('_', ' ')}", ""]
    deltas = {}
    for i, (name, rows) in enumerate(tables.items()):
        parts.append(paper_table(rows, metric, title=name, best_per=best_per))
        png = out / ("scaling.png" if i == 0 else f"scaling-{i + 1}.png")
        if scaling_plot(rows, png, metric, lines, title=name):
            paths[png.stem] = png
            parts.append(f"![{name}]({png.name})\n")
        if rtt := order_rows(rtt_deltas(rows, metric)):
            deltas[f"{name}: Reason-then-Translate minus direct"] = rtt
    for name, rows in deltas.items():  # Table 2: differences from Table 1, in points
        parts.append(paper_table(rows, metric, title=name))
    paths["markdown"].write_text("\n".join(parts))
    write_csv({**tables, **deltas}, paths["csv"], metric)
    return paths


class SweepReport(Callback):
    """Hydra callback: when a multirun ends, write the sweep's report next to its jobs."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            paths = build_report(sweep_dir)
        except FileNotFoundError as e:  # e.g. the sweep ran without the report stage
            log.warning("%s", e)
            return
        log.info("sweep report: %s", ", ".join(str(p) for p in paths.values()))
        from xlexp.view import write_view

        try:
            log.info("sweep view: %s", write_view(sweep_dir))
        except Exception as e:  # the report stands without its view
            log.warning("sweep view not written: %s", e)
        from xlexp.dashboard import dashboard_for

        try:
            log.info("%s", dashboard_for(sweep_dir))
        except FileNotFoundError:  # logged nothing to W&B: no dashboard to make
            pass
        except Exception as e:  # the report stands without its dashboard
            log.warning("sweep dashboard not made: %s", e)

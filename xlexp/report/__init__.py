"""Results of a run and of a sweep. `tables` holds them as data (the judged systems, the RTT
deltas, the rubric rows, the best value of a column by its declared direction) and writes
nothing; the writers read it: `markdown` (results.md, the console summary, the paper tables),
`plot` (Fig. 2), `sweep` (tables.md, tables.csv, the Hydra callback), `stage_table` (results.md's
stage table). `declaration` is the report stage. The HTML view (`xlexp.view`) reads `tables`.

`python -m xlexp.report <sweep dir | run dir | store dir>` writes a sweep's report.
"""

from xlexp.report.markdown import (
    ABSENT,
    console_summary,
    markdown_table,
    paper_table,
    rubric_table,
    write_results,
)
from xlexp.report.plot import scaling_plot
from xlexp.report.sweep import SweepReport, build_report, write_csv
from xlexp.report.tables import (
    SystemRow,
    collect,
    group_tables,
    judge_label,
    languages,
    order_rows,
    rows_from_runs,
    rows_from_store,
    rtt_deltas,
    size_label,
    system_from_labels,
)

__all__ = [
    "ABSENT",
    "SweepReport",
    "SystemRow",
    "build_report",
    "collect",
    "console_summary",
    "group_tables",
    "judge_label",
    "languages",
    "markdown_table",
    "order_rows",
    "paper_table",
    "rows_from_runs",
    "rows_from_store",
    "rtt_deltas",
    "rubric_table",
    "scaling_plot",
    "size_label",
    "system_from_labels",
    "write_csv",
    "write_results",
]

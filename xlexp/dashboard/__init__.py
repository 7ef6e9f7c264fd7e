"""The W&B dashboard of a sweep (its Hydra multirun's W&B group) or of one run: a saved
workspace view and a report with Fig. 2 (each metric with a direction against the SFT data
size, one line per language), Table 6's grid, the generation funnel, the QE histograms and the
link to the HTML view. `names` knows what a run logged; `panels` makes the wandb_workspaces
objects from those names and the metric declarations; `publish` saves them, or writes their
spec offline.

`python -m xlexp.dashboard <sweep dir | run dir | W&B group>` makes it after the fact.
"""

from xlexp.dashboard.panels import Scope, report, sections, workspace
from xlexp.dashboard.publish import at_report, dashboard_for, publish, spec

__all__ = [
    "Scope",
    "at_report",
    "dashboard_for",
    "publish",
    "report",
    "sections",
    "spec",
    "workspace",
]

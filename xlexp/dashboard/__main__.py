"""`python -m xlexp.dashboard <sweep dir | run dir | W&B group>`: the W&B workspace view and
report of a sweep or a run. Saved when W&B is online (WANDB_API_KEY set, WANDB_MODE not
offline); otherwise the spec it would save is written as dashboard.json (beside results.md, or
in the sweep's report/)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from xlexp.dashboard.publish import dashboard_for, group_dashboard


def online() -> bool:
    return bool(os.environ.get("WANDB_API_KEY")) and os.environ.get("WANDB_MODE") != "offline"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xlexp.dashboard", description=__doc__)
    parser.add_argument("target", help="a Hydra sweep dir, a run dir, or a W&B group name")
    parser.add_argument("--project", default="xlexp", help="W&B project of a group (default xlexp)")
    parser.add_argument("--entity", default=None, help="W&B entity of a group (default: yours)")
    args = parser.parse_args(argv)
    try:
        if Path(args.target).is_dir():
            line = dashboard_for(Path(args.target), online=online())
        elif online():
            line = group_dashboard(args.target, args.project, args.entity)
        else:
            print(
                f"xlexp.dashboard: {args.target} is not a directory, and a W&B group can only "
                "be read online (set WANDB_API_KEY)",
                file=sys.stderr,
            )
            return 2
    except FileNotFoundError as e:
        print(str(e), file=sys.stderr)
        return 2
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

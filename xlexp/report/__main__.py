"""`python -m xlexp.report <sweep dir | run dir | store dir>`: the paper's tables (rows = systems,
a model then its `+N instructions` fine-tunes; columns = Avg + languages; the best of each column
in bold) as tables.md and tables.csv, and the Fig. 2 scaling plot as PNG."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xlexp.report.sweep import build_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xlexp.report", description=__doc__)
    parser.add_argument("path", type=Path, help="a Hydra sweep dir, a run dir, or a store dir")
    parser.add_argument(
        "--out", type=Path, default=None, help="output dir (default: <path>/report)"
    )
    parser.add_argument(
        "--metric",
        default="win_rate",
        help="metric per cell (win_rate, lang_fidelity, avg_len, ...)",
    )
    parser.add_argument(
        "--lines",
        choices=("model", "lang"),
        default="model",
        help="plot one line per model (avg) or per language",
    )
    parser.add_argument(
        "--best",
        choices=("column", "model"),
        default="column",
        help="bold the best per column, or per column within each model (Table 6)",
    )
    args = parser.parse_args(argv)
    try:
        paths = build_report(args.path, args.out, args.metric, args.lines, args.best)
    except FileNotFoundError as e:
        print(f"xlexp.report: {e}", file=sys.stderr)
        return 2
    print((paths["markdown"]).read_text())
    for name, p in paths.items():
        print(f"{name}: {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

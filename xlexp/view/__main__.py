"""`python -m xlexp.view <run dir | sweep dir | store dir> [--out FILE]`: write one HTML file
that shows the generated data, the judgements and the sweep's tables; open it from disk."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from xlexp.view.page import write_view


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xlexp.view", description=__doc__)
    parser.add_argument("path", type=Path, help="a run dir, a Hydra sweep dir, or a store dir")
    parser.add_argument(
        "--out", type=Path, default=None, help="the HTML file (default: <path>/view.html)"
    )
    args = parser.parse_args(argv)
    try:
        target = write_view(args.path, args.out)
    except FileNotFoundError as e:
        print(str(e), file=sys.stderr)
        return 2
    print(
        f"view: {target} ({target.stat().st_size / 1e6:.1f} MB); "
        "open it in a browser, no server needed"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

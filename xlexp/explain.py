"""`python -m xlexp.store explain PATH_OR_KEY`: why an artifact has the key it has, read from
the `made_of` its DONE records (the store's own command, kept apart from the store's code).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: obj}


def explain(store_root: str | os.PathLike, target: str) -> str:
    """Why an artifact has the key it has: the fields in which it differs from the nearest other
    finished artifact of its stage (fewest differing fields). `target`: an artifact dir or key."""
    root = Path(store_root)
    path = Path(target)
    if not (path / "DONE").exists():
        found = sorted(root.glob(f"*/{target}*/DONE"))
        if not found:
            raise FileNotFoundError(f"no finished artifact {target!r} in {root}")
        path = found[0].parent
    meta = json.loads((path / "DONE").read_text())
    stage, mine = meta.get("stage", path.parent.name), meta.get("made_of")
    if mine is None:
        return f"{stage}/{path.name}: its DONE records no `made_of` (built by an older xlexp)"
    lines = [f"{stage}/{path.name}: made of {json.dumps(mine, sort_keys=True)[:400]}"]
    flat = _flatten(mine)
    others = []
    for done in path.parent.glob("*/DONE"):
        if done.parent == path:
            continue
        other = json.loads(done.read_text()).get("made_of")
        if other is None:
            continue
        theirs = _flatten(other)
        diff = sorted(
            k
            for k in set(flat) | set(theirs)
            if flat.get(k, "<absent>") != theirs.get(k, "<absent>")
        )
        others.append((len(diff), done.parent.name, diff, theirs))
    if not others:
        lines.append(f"no other finished {stage} artifact to compare with")
        return "\n".join(lines)
    _, name, diff, theirs = min(others)
    lines.append(f"nearest other {stage} artifact: {name} ({len(diff)} field(s) differ)")
    for k in diff:
        lines.append(
            f"  {k}: {json.dumps(flat.get(k, '<absent>'))[:200]}  "
            f"(there: {json.dumps(theirs.get(k, '<absent>'))[:200]})"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`python -m xlexp.store explain PATH_OR_KEY [--store DIR]`, `... status [DIR]`."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m xlexp.store", description="Inspect the artifact store."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser(
        "explain", help="why an artifact was (re)built: how its key differs from the nearest one"
    )
    ex.add_argument("target", help="an artifact directory, or a key (prefix) under --store")
    ex.add_argument("--store", default="outputs/store")
    st = sub.add_parser(
        "status", help="each generation shard in a store: done, in progress (parts) or missing"
    )
    st.add_argument("target", nargs="?", default="outputs/store", help="a store, run or sweep dir")
    args = parser.parse_args(argv)
    if args.command == "status":
        from xlexp.store_status import status_root, store_status

        root = status_root(args.target)
        if not root.is_dir():
            print(f"xlexp.store: no store at {root}")
            return 2
        print("\n".join(store_status(root)))
        return 0
    try:
        print(explain(args.store, args.target))
    except FileNotFoundError as e:
        print(f"xlexp.store: {e}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

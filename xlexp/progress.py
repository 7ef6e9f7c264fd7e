"""Progress bars for long loops and the one-line summary each stage logs.

Bars go to stderr and show on a terminal; XLEXP_PROGRESS=1 forces them on (e.g. a Slurm log
you tail), XLEXP_PROGRESS=0 turns them off.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm

from xlexp.integrity import ROW_FATES

# A stage where more than this share of items were content rejects (the model answered, the
# answer was unusable) most likely has a broken prompt, parser or model: said loudly.
REJECT_WARN_SHARE = 0.5


def enabled() -> bool | None:
    """True/False when XLEXP_PROGRESS says so; None: tqdm decides (on for a terminal only)."""
    value = os.environ.get("XLEXP_PROGRESS", "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    return None


def bar(
    iterable: Iterable[Any] | None = None,
    desc: str = "",
    total: int | None = None,
    unit: str = "it",
    min_total: int = 2,
) -> tqdm:
    """A tqdm bar, hidden for loops shorter than `min_total` (nothing to watch)."""
    n = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)  # type: ignore[arg-type]
    on = enabled()
    disable = (not on) if on is not None else None
    if n is not None and n < min_total:
        disable = True
    return tqdm(iterable, desc=desc, total=n, unit=unit, disable=disable, dynamic_ncols=True)


def _counts(counts: dict) -> str:
    """`8->8` (in->out), `rows 6`, plus rejects / failures when there are any."""
    if isinstance(counts.get("langs"), dict):  # respond: {"langs": {code: {rows, errors}}}
        per_lang = [c for c in counts["langs"].values() if isinstance(c, dict)]
        counts = {
            "rows": sum(c.get("rows", 0) for c in per_lang),
            "errors": sum(c.get("errors", 0) for c in per_lang),
        }
    if "in" in counts and "out" in counts:
        text = f"{counts['in']}->{counts['out']}"
    else:
        main = next(
            (
                k
                for k in ("out", "rows", "items", "scored_pairs", "langs")
                if isinstance(counts.get(k), int | float)
            ),
            None,
        )
        text = f"{main} {counts[main]}" if main else ""
    bad = {  # where the rows that did not come out went (filtered: by a declared rule)
        k: counts[k]
        for k in ("rejects", "failed", "filtered", "errors", "malformed")
        if isinstance(counts.get(k), int) and counts[k]
    }
    rejected = counts.get("rejected_translations")
    if isinstance(rejected, dict) and rejected:
        bad["rejected"] = sum(rejected.values())
    return text + "".join(f" {k} {v}" for k, v in bad.items())


def stage_line(
    stage: str,
    artifacts: dict[str, Any],
    seconds: float,
    usage: dict[str, float],
    reject_bound: float = REJECT_WARN_SHARE,
) -> str:
    """`stage generate: seed out 8 | reverse 8->7 rejects 1 | ... | 12.3 s, 40 calls (10 cached),
    $0.0012`, then `WARNING ...` for each artifact whose content-reject share passes
    `reject_bound`."""
    parts = []
    for name, art in artifacts.items():
        meta = art.meta
        text = _counts(meta.get("counts", {}))
        parts.append(f"{name} {text}".strip())
    calls = int(usage.get("calls", 0))
    hits = int(usage.get("cache_hits", 0))
    tail = f"{seconds:.1f} s, {calls} calls ({hits} cached), ${usage.get('usd', 0.0):.4f}"
    warnings = reject_warnings(
        {name: art.meta.get("counts", {}) for name, art in artifacts.items()}, reject_bound
    )
    return (
        f"stage {stage}: "
        + " | ".join(parts + [tail])
        + "".join(f"\n  WARNING {w}" for w in warnings)
    )


def reject_share(counts: dict) -> tuple[int, int] | None:
    """(rejected, total) items of an artifact's counts, for the stage shapes that have them."""
    if isinstance(counts.get("langs"), dict):  # respond: per language rows and errors
        per_lang = [c for c in counts["langs"].values() if isinstance(c, dict)]
        bad = sum(c.get("errors", 0) + c.get("empty_outputs", 0) for c in per_lang)
        return bad, sum(c.get("rows", 0) for c in per_lang)
    pairs = (
        ("rejects", "in"),
        ("failed", "scored_pairs"),
        ("malformed", "rows"),
        ("rejected_translations", "translations"),
    )
    for bad_key, total_key in pairs:
        bad, total = counts.get(bad_key), counts.get(total_key)
        if isinstance(bad, dict):
            bad = sum(bad.values())
        if isinstance(bad, int) and isinstance(total, int):
            return bad, total
    if isinstance(counts.get("malformed"), int) and isinstance(counts.get("scored"), int):  # rubric
        return counts["malformed"], counts["malformed"] + counts["scored"]
    return None


def reject_warnings(
    counts_by_artifact: dict[str, dict], bound: float = REJECT_WARN_SHARE
) -> list[str]:
    """`reverse: 9 of 16 items are content rejects (56%), over the 50% bound` per artifact;
    `select: kept 0 of 16 rows` for one that keeps nothing of a non-empty input."""
    out = []
    for name, counts in counts_by_artifact.items():
        counts = counts if isinstance(counts, dict) else {}
        n_in, n_out = counts.get("in"), counts.get("out")
        if isinstance(n_in, int) and n_in > 0 and n_out == 0:  # whatever the reasons
            fates = ", ".join(f"{counts[k]} {k}" for k in ROW_FATES if counts.get(k))
            out.append(f"{name}: kept 0 of {n_in} rows" + (f" ({fates})" if fates else ""))
            continue
        share = reject_share(counts)
        if share and share[1] and share[0] / share[1] > bound:
            bad, total = share
            out.append(
                f"{name}: {bad} of {total} items are content rejects ({bad / total:.0%}), "
                f"over the {bound:.0%} bound"
            )
    return out

"""The training subset (top-N by QE or a seeded random N) and TRL's prompt-completion format."""

from __future__ import annotations

import random


def take(rows: list[dict], n: int, how: str = "top", seed: int = 1) -> list[dict]:
    """`n` training rows: `top` by `qe_score` (ties by id) or a seeded `random` sample (by id)."""
    if n > len(rows):
        raise ValueError(f"data_size: asked for {n} rows but the dataset holds {len(rows)}")
    if n < 0:
        raise ValueError(f"data_size: must be >= 0, not {n}")
    if how == "top":
        return sorted(rows, key=lambda r: (-r["qe_score"], r["id"]))[:n]
    if how == "random":
        # Sample from an id-sorted list so the input order of `rows` does not change the draw.
        ordered = sorted(rows, key=lambda r: r["id"])
        return sorted(random.Random(seed).sample(ordered, n), key=lambda r: r["id"])
    raise ValueError(f"sft.subset: must be 'top' or 'random', not {how!r}")


def to_prompt_completion(rows: list[dict]) -> list[dict]:
    """Chat rows -> {"prompt": all turns but the last, "completion": [last assistant turn]}.

    TRL computes the loss on the completion only for this format (completion_only_loss).
    """
    out = []
    for row in rows:
        messages = row["messages"]
        if len(messages) < 2 or messages[-1]["role"] != "assistant":
            raise ValueError(
                f"row {row.get('id')!r}: messages must end with an assistant turn after a prompt"
            )
        out.append(
            {
                "prompt": [{"role": m["role"], "content": m["content"]} for m in messages[:-1]],
                "completion": [{"role": "assistant", "content": messages[-1]["content"]}],
            }
        )
    return out

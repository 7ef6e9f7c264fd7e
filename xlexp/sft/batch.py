"""The global batch of LoRA SFT, the same on any process count.

`sft.batch_size x sft.grad_accum` is the optimiser's batch (the paper's 8, section 5). On N
processes each optimiser step must still see that many examples, so the per-device batch and the
gradient accumulation are derived from N here; `sft.batch_size` doubles as the per-device cap (GPU
memory). The adapter key holds `batch_size` and `grad_accum`, not N: adapters trained on 1 and on 8
GPUs are the same optimisation and share a store entry.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BatchPlan:
    """How one optimiser step of `global_batch` examples is split over processes and micro-batches:
    global_batch = per_device x grad_accum x world_size."""

    global_batch: int
    per_device: int
    grad_accum: int
    world_size: int


def batch_plan(batch_size: int, grad_accum: int, world_size: int) -> BatchPlan:
    """The split of the global batch `batch_size x grad_accum` for `world_size` processes: the
    largest per-device batch <= `batch_size` that divides each process's share, the rest as
    gradient accumulation. A global batch the processes cannot share evenly is refused."""
    batch_size, grad_accum, world_size = int(batch_size), int(grad_accum), int(world_size)
    if batch_size < 1 or grad_accum < 1:
        raise ValueError(
            f"sft.batch_size and sft.grad_accum must be >= 1, not {batch_size} and {grad_accum}"
        )
    if world_size < 1:
        raise ValueError(f"sft.num_processes: needs at least one process, not {world_size}")
    global_batch = batch_size * grad_accum
    if global_batch % world_size:
        raise ValueError(
            "sft.num_processes: the global batch sft.batch_size x sft.grad_accum "
            f"= {global_batch} cannot be split evenly over {world_size} processes; "
            "use a process count that divides it"
        )
    share = global_batch // world_size
    per_device = max(d for d in range(1, min(batch_size, share) + 1) if share % d == 0)
    return BatchPlan(global_batch, per_device, share // per_device, world_size)

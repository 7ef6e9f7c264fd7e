"""SFT throughput and padding waste: plain padding vs TRL padding-free vs BFD packing.

    python benchmarks/sft_throughput.py [--model DIR] [--rows 96] [--batch 8] [--epochs 1]

Without --model it builds the tiny random Llama from tests/tiny.py (CPU, seconds). Rows have
widely varied lengths, as real instruction data does. For each mode it reports the share of pad
tokens in the collated batches, the optimizer steps, the training time, real (non-pad) tokens
per second, and the first step's loss (the same batch in the padded and padding-free modes, so
the two must agree: padding-free is exact, not an approximation).

On CPU (sdpa) padding-free and packed batches are one flat row with a block-diagonal mask built
from position_ids, so attention costs O(tokens in the batch ^ 2); only FlashAttention's varlen
kernels (CUDA) make them cheaper than padding. Packing also changes the number of steps (rows of
max_seq_len tokens), so compare its tokens/s, not its seconds.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from xlexp.config import SFTConfig  # noqa: E402
from xlexp.sft import build_trainer, fit  # noqa: E402

# With packing, `max_length` is the packed row length; padding-free without packing needs
# max_length=None (TRL refuses to truncate there), so rows are kept short enough by construction.
MODES = {
    "padded": {},
    "padding_free": {"padding_free": True, "max_length": None},
    "packing_bfd": {"packing": True, "packing_strategy": "bfd"},
}


def varied_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    sentence = " Bees make honey from the nectar of flowers."
    rows = []
    for i in range(n):
        # Long-tailed lengths (log-normal, median ~3 sentences, capped at 40), as in real SFT data.
        reps = min(40, int(rng.lognormvariate(1.0, 1.0)))
        rows.append(
            {
                "id": f"r{i:04d}",
                "qe_score": 0.5,
                "messages": [
                    {
                        "role": "user",
                        "content": f"Question {i}: what do bees make?"
                        + " Respond in German." * rng.randint(0, 3),
                    },
                    {"role": "assistant", "content": "Honey." + sentence * reps},
                ],
            }
        )
    return rows


def pad_share(trainer) -> tuple[float, int, int]:
    """(pad tokens / all tokens, real tokens, batches) over one pass of the train dataloader."""
    pad_id = trainer.processing_class.pad_token_id
    pads = total = batches = 0
    for batch in trainer.get_train_dataloader():
        ids = batch["input_ids"]
        if "attention_mask" in batch:
            pads += int((batch["attention_mask"] == 0).sum())
        else:  # padding-free: one flat row; only pad_to_multiple_of could add pads
            pads += int((ids == pad_id).sum()) if pad_id is not None else 0
        total += ids.numel()
        batches += 1
    return pads / total, total - pads, batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", type=Path, default=None, help="local model dir (default: tiny Llama)"
    )
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-seq-len", type=int, default=1024)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model
        if model_dir is None:
            from tiny import build_tiny_llama

            model_dir = build_tiny_llama(Path(tmp) / "tiny")
        rows = varied_rows(args.rows)
        sft = SFTConfig(
            epochs=args.epochs,
            batch_size=args.batch,
            max_seq_len=args.max_seq_len,
            save_steps=10_000,
        )
        results = []
        for mode, overrides in MODES.items():
            out = Path(tmp) / mode
            trainer = build_trainer(rows, model_dir, sft, out, seed=1, overrides=overrides)
            share, real, batches = pad_share(trainer)
            metrics = fit(trainer, out)
            results.append((mode, share, batches, metrics, real))

    lengths = sorted(len(r["messages"][1]["content"]) for r in rows)
    print(
        f"\n{args.rows} rows, answer chars min/median/max = "
        f"{lengths[0]}/{lengths[len(lengths) // 2]}/{lengths[-1]}, "
        f"batch {args.batch}, {args.epochs:g} epoch(s), "
        f"model {model_dir if args.model else 'tiny Llama (CPU)'}"
    )
    header = (
        f"{'mode':<14}{'pad share':>10}{'steps':>7}{'seconds':>9}{'real tok/s':>12}"
        f"{'tok/step':>10}{'1st loss':>10}"
    )
    print(header)
    print("-" * len(header))
    for mode, share, _batches, m, real in results:
        print(
            f"{mode:<14}{share:>10.1%}{m['steps']:>7}{m['seconds']:>9.2f}{m['train_tokens_per_s']:>12.0f}"
            f"{real / max(1, m['steps']):>10.0f}{m['first_loss']:>10.4f}"
        )


if __name__ == "__main__":
    main()

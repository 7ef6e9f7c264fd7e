"""GPU check: bf16 LoRA SFT steps through TRL on CUDA, and batched generation vs a plain loop.

    python benchmarks/gpu_check.py            # on a CUDA machine (sized for one H200, ~2-4 min)
    python benchmarks/gpu_check.py --cpu      # dry run of the same code on CPU, tiny sizes

No network: the model is a random Llama built here (tests/tiny.py's tokenizer and chat template,
a bigger body: `--hidden`, `--layers`), so nothing is downloaded; only xlexp's own dependencies
are needed (torch, transformers, TRL, PEFT, datasets, omegaconf, hydra-core). On a device machine
that has torch and transformers only and no network, bring the rest as wheels in the git-ignored
`.whl/` folder (`pip download --no-deps -d .whl trl peft datasets omegaconf hydra-core ...`, well
under 64 MiB) and `pip install --no-deps --no-index .whl/*` there first.
Status: dry-run on CPU only (`--cpu`); it has not run on a GPU yet.

(1) SFT: `--steps` optimizer steps of xlexp's trainer (`xlexp.sft.build_trainer`: LoRA r=8 on
q_proj/v_proj, the paper's recipe) with bf16 on CUDA; reports whether bf16 was really used, the
first and last loss (finite, falling), seconds per step and peak GPU memory.
(2) Generation: `--prompts` chat prompts through xlexp's hf backend (left-padded batches of
`--batch`) against a plain loop of `model.generate` one prompt at a time, both greedy with
`--max-tokens` new tokens; reports both times, their ratio and how many outputs agree.
One JSON summary line is printed last (`gpu_check: {...}`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def rows(n: int) -> list[dict]:
    sentence = " Bees make honey from the nectar of flowers."
    return [
        {
            "id": f"r{i:04d}",
            "messages": [
                {"role": "user", "content": f"Question {i}: what do bees make? Respond in German."},
                {"role": "assistant", "content": "Honig." + sentence * (1 + i % 7)},
            ],
        }
        for i in range(n)
    ]


def sft_check(model_dir: Path, out: Path, steps: int, batch: int, cuda: bool) -> dict:
    import torch

    from xlexp.config import SFTConfig
    from xlexp.sft import build_trainer

    sft = SFTConfig(
        batch_size=batch, epochs=1.0, save_steps=10_000, bf16="auto" if cuda else "false"
    )
    trainer = build_trainer(rows(steps * batch), model_dir, sft, out, seed=1)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    trainer.train()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "device": str(trainer.model.device),
        "bf16": bool(trainer.args.bf16),
        "base_dtype": str(trainer.model.get_base_model().dtype),
        "steps": trainer.state.global_step,
        "s_per_step": round(seconds / max(1, trainer.state.global_step), 4),
        "first_loss": round(losses[0], 4) if losses else None,
        "last_loss": round(losses[-1], 4) if losses else None,
        "losses_finite": all(loss == loss and abs(loss) < float("inf") for loss in losses),
        "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20) if cuda else None,
    }


def generation_check(
    model_dir: Path, models: Path, n: int, batch: int, max_tokens: int, cuda: bool
) -> dict:
    import torch
    from omegaconf import OmegaConf

    from xlexp.config import LLMConfig
    from xlexp.llm import Sampling
    from xlexp.llm.hf import HFBackend

    card = OmegaConf.structured(
        LLMConfig(name="gpu-check", backend="hf", model=str(model_dir), batch_size=batch)
    )
    backend = HFBackend(card, models)
    convs = [[{"role": "user", "content": f"Write about bees, part {i}."}] for i in range(n)]
    greedy = Sampling(temperature=0.0, max_tokens=max_tokens)
    backend.generate(convs[:batch], greedy)  # warm-up (kernels, allocator)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    sync()
    started = time.perf_counter()
    batched = backend.generate(convs, greedy)
    sync()
    batched_s = time.perf_counter() - started

    model, tok = backend.model, backend.tokenizer
    started = time.perf_counter()
    plain = []
    for conv in convs:  # the loop a script without batching would write
        ids = tok.apply_chat_template(
            conv, add_generation_prompt=True, return_tensors="pt", return_dict=False
        ).to(model.device)
        with torch.no_grad():
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_tokens,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
            )
        plain.append(tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True))
    sync()
    loop_s = time.perf_counter() - started
    same = sum(b.text.strip() == p.strip() for b, p in zip(batched, plain, strict=True))
    return {
        "device": str(model.device),
        "dtype": str(model.dtype),
        "prompts": n,
        "batch": batch,
        "max_tokens": max_tokens,
        "batched_s": round(batched_s, 3),
        "loop_s": round(loop_s, 3),
        "speedup": round(loop_s / batched_s, 2) if batched_s else None,
        "same_outputs": same,
        "errors": sum(not c.ok for c in batched),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="dry run on CPU with tiny sizes")
    parser.add_argument("--hidden", type=int, default=None)
    parser.add_argument("--layers", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--prompts", type=int, default=None)
    parser.add_argument("--max-tokens", type=int, default=None)
    args = parser.parse_args()

    import torch
    import transformers
    import trl

    cuda = torch.cuda.is_available() and not args.cpu
    if not cuda and not args.cpu:
        sys.exit("gpu_check: no CUDA device visible; pass --cpu for a dry run")
    # GPU sizes: a ~100M-parameter Llama (hidden 1024, 8 layers), big enough that batching and bf16
    # matter, small enough that both checks finish in a few minutes on one H200.
    size = dict(hidden=1024, layers=8, steps=30, batch=8, prompts=64, max_tokens=64)
    if not cuda:
        size = dict(hidden=64, layers=2, steps=3, batch=4, prompts=8, max_tokens=8)
    for k in size:
        if getattr(args, k) is not None:
            size[k] = getattr(args, k)

    from tiny import build_tiny_llama

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_llama(
            Path(tmp) / "model", vocab_size=512, layers=size["layers"], hidden=size["hidden"]
        )
        started = time.perf_counter()
        sft = sft_check(model_dir, Path(tmp) / "sft", size["steps"], size["batch"], cuda)
        gen = generation_check(
            model_dir,
            Path(tmp) / "models",
            size["prompts"],
            size["batch"],
            size["max_tokens"],
            cuda,
        )
        total = time.perf_counter() - started
    summary = {
        "cuda": cuda,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "size": size,
        "sft": sft,
        "generation": gen,
        "seconds": round(total, 1),
    }
    print("gpu_check: " + json.dumps(summary))


if __name__ == "__main__":
    main()

"""Generation in shards against one job: peak memory per process and wall time.

    python benchmarks/generate_shards.py                        # 6,000 seeds, 4 shards, both parts
    python benchmarks/generate_shards.py --seeds 600 --part wall --latency 0.05 --workers 2

The paper profile's generate stage (3 translators, 8 languages, QE by an LLM judge, pysbd
splitter) with every role pointed at the fake OpenAI-compatible server of
benchmarks/openai_transport.py (a child process: its CPU is not the client's), on a synthetic
seed file of `--seeds` passages of ~8 sentences.

1. rss: one job over every seed, then each of `--shards` shard jobs and the merge, one at a
   time, with an instant server: the peak RSS of each process (its own ru_maxrss, read in a
   wrapper process that runs only it).
2. wall: the server answers every request after `--latency` s (at most `--cap` at once); one job
   over every seed, against `--shards` shard jobs run `--workers` at a time (as on that many
   nodes) and the merge: wall times and their ratio. Each part uses a fresh store.

Run from the root of the checkout; only stdout is the report.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from openai_transport import Server  # noqa: E402  (the fake server lives beside)

TRANSLATORS = ("eurollm-9b-instruct", "mistral-small-24b-instruct-2501", "gemma-2-27b-it")
WORDS = [
    "river",
    "committee",
    "winter",
    "harbour",
    "engine",
    "garden",
    "council",
    "market",
    "letter",
    "mountain",
    "bridge",
    "village",
    "station",
    "teacher",
    "doctor",
    "kitchen",
    "window",
    "forest",
    "island",
    "museum",
]


def seed_file(path: Path, n: int) -> None:
    with path.open("w") as f:
        for i in range(n):
            sentences = [
                f"The {WORDS[(i + j) % 20]} of passage {i} was described in part {j} with care."
                for j in range(8)
            ]
            f.write(json.dumps({"id": f"p{i:07d}", "text": " ".join(sentences)}) + "\n")


def overrides(base_url: str, seeds: Path, n: int, store: Path) -> list[str]:
    api = ["backend=openai", f"base_url={base_url}", "gguf_file=null", "api_key_env=null"]
    out = ["profile=paper", "stages=[generate]", "splitter=pysbd", "qe=llm", "preflight=false"]
    out += ["seed_data=jsonl", f"seed_data.path={seeds}", f"seed_data.n={n}"]
    out += ["generate.target_rows=null", "generate.batch_size=64", f"store_dir={store}"]
    out += [f"teacher.{a}" for a in api] + [f"judge.{a}" for a in api]
    for name in TRANSLATORS:
        out += [f"translators.{name}.{a}" for a in api]
    return out


def run_job(args: list[str], run_dir: Path) -> tuple[float, float]:
    """`python -m xlexp ARGS` in a wrapper that reports only its child's peak RSS:
    (wall seconds, peak RSS in MB)."""
    wrapper = (
        "import resource, subprocess, sys; "
        "rc = subprocess.run(sys.argv[1:]).returncode; "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)"
    )
    cmd = [sys.executable, "-c", wrapper, sys.executable, "-m", "xlexp", *args,
           f"hydra.run.dir={run_dir}"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_DISABLED": "true"}
    started = time.time()
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{out.stderr[-3000:]}")
    return time.time() - started, int(out.stdout.strip().splitlines()[-1]) / 1024


def sharded(base: list[str], shards: int, workers: int, tmp: Path) -> tuple[list, tuple]:
    """The shard jobs `workers` at a time, then the merge: ([(wall, rss)...], merge)."""
    args = [*base, f"generate.shards={shards}"]
    with ThreadPoolExecutor(workers) as pool:
        jobs = list(
            pool.map(
                lambda i: run_job([*args, f"generate.shard={i}"], tmp / f"run-shard{i}"),
                range(shards),
            )
        )
    return jobs, run_job(args, tmp / "run-merge")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="shard jobs at once (wall part)")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per request (wall)")
    parser.add_argument("--cap", type=int, default=64, help="requests the server serves at once")
    parser.add_argument("--part", choices=("rss", "wall", "both"), default="both")
    a = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="xlexp-shards-"))
    seeds = tmp / "seeds.jsonl"
    seed_file(seeds, a.seeds)
    print(f"# generate in shards: {a.seeds} seeds, paper profile, every role remote ({tmp})")
    if a.part in ("rss", "both"):
        server = Server(0.0, 1024)
        try:
            base = overrides(server.base_url, seeds, a.seeds, tmp / "store-rss")
            wall, rss = run_job(base, tmp / "run-one")
            print(f"rss: one job over every seed: peak {rss:.0f} MB ({wall:.0f} s, "
                  f"{server.stats()['calls']} requests)")  # fmt: skip
            base = overrides(server.base_url, seeds, a.seeds, tmp / "store-rss-shards")
            jobs, (mwall, mrss) = sharded(base, a.shards, 1, tmp)
            for i, (wall, rss) in enumerate(jobs):
                print(f"rss: shard {i} of {a.shards}: peak {rss:.0f} MB ({wall:.0f} s)")
            print(f"rss: merge of {a.shards} shards: peak {mrss:.0f} MB ({mwall:.0f} s)")
        finally:
            server.close()
    if a.part in ("wall", "both"):
        server = Server(a.latency, a.cap)
        try:
            base = overrides(server.base_url, seeds, a.seeds, tmp / "store-wall")
            one, _ = run_job(base, tmp / "run-wall-one")
            base = overrides(server.base_url, seeds, a.seeds, tmp / "store-wall-shards")
            started = time.time()
            sharded(base, a.shards, a.workers, tmp)
            split = time.time() - started
            print(
                f"wall: one job {one:.1f} s; {a.shards} shards x {a.workers} at once + merge "
                f"{split:.1f} s; ratio {one / split:.2f} (latency {a.latency} s, cap {a.cap})"
            )
        finally:
            server.close()


if __name__ == "__main__":
    main()

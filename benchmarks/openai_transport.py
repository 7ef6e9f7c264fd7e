"""How busy xlexp keeps an OpenAI-compatible server, and how much client CPU it spends doing it.

    python benchmarks/openai_transport.py                      # all three parts, a report on stdout
    python benchmarks/openai_transport.py --requests 3000 --latency 0.1 --cap 32 --rounds 3
    python benchmarks/openai_transport.py --xlexp-root /tmp/old  # the same figures for another
                                                                 # checkout

A fake OpenAI-compatible server runs in a child process (its CPU is not the client's): every chat
request takes `--latency` seconds and at most `--cap` are served at once (the rest queue, as on a
vLLM server at its batch limit). Three parts:

1. window: one role sends `--requests` chats through `ChatModel.chat` (response cache in front,
   a fresh cache each round, window = cap). Wall time against the ideal requests x latency / cap.
2. cpu: the same requests from a minimal aiohttp client (one session, a semaphore of cap),
   interleaved with part 1 round by round; CPU time per request of each (time.process_time:
   the machine is shared, wall times of single runs are not comparable, CPU times are).
3. tiny: `python -m xlexp stages=[generate]` on the tiny profile with teacher, translators and
   QE pointed at the fake server: wall time, the child's CPU time and the requests it served.

Run from the root of the checkout to measure (or pass --xlexp-root); only stdout is the report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


# ------------------------------------------------------------------ the fake server (child)


def answer(text: str) -> tuple[str, list[dict] | None]:
    """A plausible answer per xlexp prompt kind (so every generate stage has rows to work on)."""
    if "Write the question" in text:
        passage = text.split("\n\n")[1] if "\n\n" in text else text
        return f"Can you explain why {' '.join(passage.split()[:4])}?", None
    if "Improve the question" in text:
        q = re.search(r"\nQuestion: (.*)\nResponse: ", text)
        r = re.search(r"\nResponse: (.*)\n\nReply in exactly", text, re.S)
        if q and r:
            return f"Question: {q.group(1)}\nResponse: {r.group(1)}", None
    if "Rate the translation" in text:
        return "4", [{"4": -0.2, "5": -2.0, "3": -2.5}]
    if text.startswith("Translate the following"):
        sentence = text.rsplit("English: ", 1)[-1]
        return "Übersetzt: " + sentence, None
    return "B", [{"B": -0.3, "A": -1.4}]


def serve(latency: float, cap: int, port_file: Path) -> None:
    from aiohttp import web

    slots = asyncio.Semaphore(cap)
    stats = {"calls": 0, "in_flight": 0, "max_in_flight": 0}

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        stats["calls"] += 1
        async with slots:
            stats["in_flight"] += 1
            stats["max_in_flight"] = max(stats["max_in_flight"], stats["in_flight"])
            await asyncio.sleep(latency)
            stats["in_flight"] -= 1
        text, top = answer(body["messages"][-1]["content"])
        logprobs = None
        if body.get("logprobs"):
            per_token = top or [{t: 0.0} for t in text.split()]
            n = int(body.get("top_logprobs") or 0)
            logprobs = {"content": [
                {"token": next(iter(alt)), "logprob": next(iter(alt.values())), "bytes": None,
                 "top_logprobs": [{"token": t, "logprob": lp, "bytes": None}
                                  for t, lp in sorted(alt.items(), key=lambda kv: -kv[1])[:n]]}
                for alt in per_token]}
        prompt = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        return web.json_response({
            "id": f"chatcmpl-{stats['calls']}", "object": "chat.completion", "created": 0,
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "logprobs": logprobs, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": len(text.split()),
                      "total_tokens": prompt + len(text.split())},
        })

    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response(stats)

    async def reset(request: web.Request) -> web.Response:
        stats.update(calls=0, max_in_flight=0)
        return web.json_response(stats)

    async def main() -> None:
        app = web.Application(client_max_size=16 * 2**20)
        app.router.add_post("/v1/chat/completions", chat)
        app.router.add_get("/stats", get_stats)
        app.router.add_post("/reset", reset)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        port_file.write_text(str(port))
        await asyncio.Event().wait()

    asyncio.run(main())


class Server:
    def __init__(self, latency: float, cap: int):
        self.dir = tempfile.TemporaryDirectory()
        port_file = Path(self.dir.name) / "port"
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--latency", str(latency), "--cap", str(cap),
             "--port-file", str(port_file)]
        )
        for _ in range(300):
            if port_file.exists() and port_file.read_text():
                break
            time.sleep(0.05)
        self.root = f"http://127.0.0.1:{port_file.read_text()}"
        self.base_url = self.root + "/v1"

    def stats(self, reset: bool = False) -> dict:
        import urllib.request

        request = urllib.request.Request(
            self.root + ("/reset" if reset else "/stats"), method="POST" if reset else "GET"
        )
        with urllib.request.urlopen(request) as response:
            return json.loads(response.read())

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()
        self.dir.cleanup()


# ------------------------------------------------------------------ the clients


def conversations(n: int, tag: str) -> list[list[dict]]:
    """n distinct translation chats of ordinary length (a sentence of ~25 words)."""
    words = [
        "the",
        "committee",
        "agreed",
        "that",
        "the",
        "river",
        "crossing",
        "should",
        "be",
        "rebuilt",
        "before",
        "the",
        "winter",
        "rains",
    ]
    out = []
    for i in range(n):
        sentence = " ".join(words[(i + j) % len(words)] for j in range(25)) + f" ({tag} {i})."
        prompt = (
            "Translate the following English text into German. "
            "Reply with the German translation only.\n\n"
            f"English: {sentence}"
        )
        out.append([{"role": "user", "content": prompt}])
    return out


def xlexp_card(base_url: str, window: int):
    from omegaconf import OmegaConf

    try:
        from xlexp.config import LLMConfig
    except ImportError:  # the card may live elsewhere in another checkout
        from xlexp.llm.card import LLMConfig  # type: ignore[no-redef]
    card = LLMConfig(
        name="bench", backend="openai", model="fake", base_url=base_url, max_concurrency=window
    )
    return OmegaConf.structured(card)


def run_xlexp(
    base_url: str, convs: list[list[dict]], window: int, cache_dir: Path
) -> tuple[float, float, int]:
    """(wall s, CPU s, ok answers) of one ChatModel.chat over all convs, cache fresh."""
    from xlexp.llm import load

    model = load(xlexp_card(base_url, window), cache_dir)
    model.chat(convs[:window])  # connect and warm up outside the measurement
    todo = convs[window:]
    cpu, wall = time.process_time(), time.perf_counter()
    out = model.chat(todo)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    model.close()
    return wall, cpu, sum(c.ok for c in out)


def run_minimal(base_url: str, convs: list[list[dict]], window: int) -> tuple[float, float, int]:
    """The floor: one aiohttp session, `window` requests in flight, JSON in and out, nothing
    else."""
    import aiohttp

    url = base_url + "/chat/completions"
    headers = {"Authorization": "Bearer EMPTY", "Content-Type": "application/json"}

    async def main() -> tuple[float, float, int]:
        slots = asyncio.Semaphore(window)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=window)) as session:

            async def one(conv: list[dict]) -> str:
                body = {
                    "model": "fake",
                    "messages": conv,
                    "temperature": 0.0,
                    "top_p": 1.0,
                    "max_tokens": 256,
                }
                async with (
                    slots,
                    session.post(url, data=json.dumps(body), headers=headers) as response,
                ):
                    data = json.loads(await response.read())
                return data["choices"][0]["message"]["content"]

            await asyncio.gather(*(one(c) for c in convs[:window]))  # warm up, as above
            cpu, wall = time.process_time(), time.perf_counter()
            texts = await asyncio.gather(*(one(c) for c in convs[window:]))
            return (
                time.perf_counter() - wall,
                time.process_time() - cpu,
                sum(bool(t) for t in texts),
            )

    return asyncio.run(main())


def tiny_generate(
    root: Path, base_url: str, store: Path, run_dir: Path, window: int
) -> tuple[float, float]:
    """(wall s, CPU s of the child) of the tiny profile's generate stage against the fake server."""
    api = [
        "backend=openai",
        "model=fake",
        f"base_url={base_url}",
        "gguf_file=null",
        f"max_concurrency={window}",
    ]
    args = [f"teacher.{a}" for a in api] + [f"judge.{a}" for a in api]
    for name in ("smollm2-greedy", "smollm2-sampled"):
        args += [f"translators.{name}.{a}" for a in api]
    args += [
        f"store_dir={store}",
        "stages=[generate]",
        "seed_data.n=24",
        f"hydra.run.dir={run_dir}",
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "xlexp", *args],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"tiny generate failed:\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


# ------------------------------------------------------------------ report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument(
        "--latency", type=float, default=0.25, help="seconds per request on the server"
    )
    parser.add_argument("--cap", type=int, default=32, help="requests the server serves at once")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved xlexp / minimal rounds")
    parser.add_argument(
        "--parts", default="window,tiny", help="comma list: window (parts 1+2), tiny"
    )
    parser.add_argument("--tiny-window", type=int, default=32)
    parser.add_argument("--xlexp-root", type=Path, default=Path.cwd())
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.latency, args.cap, args.port_file)
        return
    root = args.xlexp_root.resolve()
    sys.path.insert(0, str(root))
    import xlexp

    parts = set(args.parts.split(","))
    print(f"# openai transport benchmark: xlexp from {Path(xlexp.__file__).parent}")
    git = subprocess.run(
        ["git", "-C", str(root), "log", "-1", "--format=%h %s"], capture_output=True, text=True
    )
    print(f"commit: {git.stdout.strip() or 'unknown'}")
    server = Server(args.latency, args.cap)
    try:
        if "window" in parts:
            n = args.requests
            ideal = n * args.latency / args.cap
            print(
                f"\n## window and CPU: {n} requests, latency {args.latency}s, "
                f"server cap {args.cap}, "
                f"window {args.cap}; ideal wall {ideal:.2f}s"
            )
            print(
                "| round | client | wall s | wall / ideal | CPU ms / request | ok | "
                "server peak in flight |"
            )
            print("|---|---|---|---|---|---|---|")
            xl_cpu, min_cpu, xl_ratio, min_ratio = [], [], [], []
            with tempfile.TemporaryDirectory() as tmp:
                for r in range(args.rounds):
                    convs = conversations(n + args.cap, f"r{r}")
                    server.stats(reset=True)
                    wall, cpu, ok = run_xlexp(
                        server.base_url, convs, args.cap, Path(tmp) / f"cache{r}"
                    )
                    peak = server.stats()["max_in_flight"]
                    xl_cpu.append(cpu / n * 1e3)
                    xl_ratio.append(wall / ideal)
                    print(
                        f"| {r} | xlexp ChatModel | {wall:.2f} | {wall / ideal:.2f} | "
                        f"{cpu / n * 1e3:.3f} | {ok} | {peak} |"
                    )
                    server.stats(reset=True)
                    wall, cpu, ok = run_minimal(server.base_url, convs, args.cap)
                    peak = server.stats()["max_in_flight"]
                    min_cpu.append(cpu / n * 1e3)
                    min_ratio.append(wall / ideal)
                    print(
                        f"| {r} | minimal aiohttp | {wall:.2f} | {wall / ideal:.2f} | "
                        f"{cpu / n * 1e3:.3f} | {ok} | {peak} |"
                    )
            print(
                f"\nmedian wall / ideal: xlexp {statistics.median(xl_ratio):.2f} (target <= 1.10), "
                "minimal aiohttp "
                f"{statistics.median(min_ratio):.2f} (what this machine allows now)"
            )
            ratio = statistics.median(xl_cpu) / statistics.median(min_cpu)
            print(
                f"median CPU per request: xlexp {statistics.median(xl_cpu):.3f} ms, "
                "minimal aiohttp "
                f"{statistics.median(min_cpu):.3f} ms, ratio {ratio:.2f}  (target <= 2.0)"
            )
        if "tiny" in parts:
            print(
                f"\n## tiny profile, stages=[generate], every model role at the fake server "
                f"(latency {args.latency}s, cap {args.cap}, card window {args.tiny_window}, "
                "seed_data.n=24)"
            )
            with tempfile.TemporaryDirectory() as tmp:
                server.stats(reset=True)
                wall, cpu = tiny_generate(
                    root, server.base_url, Path(tmp) / "store", Path(tmp) / "run", args.tiny_window
                )
                stats = server.stats()
                print(
                    f"first run: wall {wall:.2f}s, CPU {cpu:.2f}s "
                    "(whole process, startup included), "
                    f"{stats['calls']} requests served, "
                    f"server peak in flight {stats['max_in_flight']}"
                )
                server.stats(reset=True)
                wall, cpu = tiny_generate(
                    root, server.base_url, Path(tmp) / "store", Path(tmp) / "run2", args.tiny_window
                )
                print(
                    f"rerun (all cached): wall {wall:.2f}s, CPU {cpu:.2f}s, "
                    f"{server.stats()['calls']} requests served"
                )
    finally:
        server.close()


if __name__ == "__main__":
    main()

"""Load test of `arlm serve`: many concurrent streaming clients against a live server on 127.0.0.1.

Run by hand (about a minute on 2 CPU cores with a tiny Transformer)::

    arlm train transformer --preset tiny --out runs/tiny     # any checkpoint will do
    python benchmarks/serve_load.py runs/tiny/best          # prints the table, updates docs/benchmarks.md
    python benchmarks/serve_load.py runs/tiny/best --quick  # 8 clients, no file written

The server is started as a user starts it (``python -m arlm.cli serve CHECKPOINT``, its own process,
``--threads 1``); the clients are asyncio tasks of this process (httpx), each posting one
``"stream": true`` generation of exactly ``--new`` tokens ([EOS] banned, its own seed) at the same
moment. Measured per client: the time to the first token event (TTFT) and the stream's tokens/s;
overall: all clients completed, and the aggregate tokens/s (all tokens / wall time from the first
request to the last ``done``). The baseline, measured in the same run first, is one client alone
(the median of 3 runs).
Bounded: every client has a deadline (``--time-limit``), and the server is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from report import command_line, table_argv, write_section

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Serving (concurrent streaming clients)"
EOS = 2


async def one_client(client: httpx.AsyncClient, body: dict) -> dict:
    """One streaming generation -> {ttft, total, tokens, done}; times in seconds from the request."""
    start = time.perf_counter()
    ttft, tokens, done = None, 0, False
    async with client.stream("POST", "/v1/generate", json=body) as r:
        if r.status_code != 200:
            return {"ttft": None, "total": None, "tokens": 0, "done": False, "status": r.status_code}
        event = None
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "token":
                tokens += 1
                if ttft is None:
                    ttft = time.perf_counter() - start
            elif line.startswith("data: ") and event == "done":
                done = json.loads(line[6:])["num_tokens"] == tokens
    return {"ttft": ttft, "total": time.perf_counter() - start, "tokens": tokens, "done": done, "status": 200}


async def run_clients(url: str, n: int, new: int, time_limit: float) -> tuple[list[dict], float]:
    """``n`` clients at once -> (their results, wall time)."""
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=url, timeout=time_limit, limits=limits) as client:
        bodies = [{"prompt": "ROMEO:", "max_new_tokens": new, "seed": i, "banned": [EOS], "stream": True}
                  for i in range(n)]
        start = time.perf_counter()
        results = await asyncio.wait_for(asyncio.gather(*(one_client(client, b) for b in bodies)), time_limit)
        return list(results), time.perf_counter() - start


def percentile(xs: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of ``xs``."""
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q / 100 * len(xs) + 0.5) - 1))]


def summary(results: list[dict], wall: float) -> dict:
    ok = [r for r in results if r["done"]]
    ttft = [r["ttft"] for r in ok]
    rates = [r["tokens"] / r["total"] for r in ok]
    return {"clients": len(results), "completed": len(ok), "ttft_p50": percentile(ttft, 50) if ok else None,
            "ttft_p99": percentile(ttft, 99) if ok else None,
            "stream_rate": statistics.median(rates) if ok else None,
            "aggregate": sum(r["tokens"] for r in ok) / wall, "wall": wall}


def start_server(checkpoint: str, queue: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "arlm.cli", "serve", checkpoint, "--port", str(port),
                             "--queue", str(queue), "--threads", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        try:
            if httpx.get(url + "/v1/models").status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            last = (proc.communicate()[1].strip().splitlines() or ["(no message)"])[-1]
            raise RuntimeError(f"the server exited: {last}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the server did not start within 60 s")


def report(base: dict, load: dict, args, model: dict, load_start: tuple[float, ...], argv: list[str]) -> str:
    """The section: command (``argv``: the arguments shown), machine, load, the 1-client and n-client rows."""
    lines = [
        SECTION, "",
        command_line("serve_load.py", ["platform", "arch", "cpus", "python", "torch"],
                     argv=argv, load=[load_start]), "",
        f"`arlm serve` (one process, 1 worker thread, 1 torch thread) serving a {model['family']} of "
        f"{model['parameters']:,} parameters ({model['tokenizer']} tokenizer, vocabulary "
        f"{model['vocab_size']}); clients in another process (httpx, asyncio) on 127.0.0.1. Each client "
        f"streams exactly {args.new} new tokens after \"ROMEO:\" ([EOS] banned, seed = client number); "
        f"all clients start at once. TTFT = time from sending the request to the first token event; "
        f"stream tok/s = a client's tokens / its request time (median over clients); aggregate = all "
        f"tokens / wall time; the 1-client row is the median of 3 runs. The streams are not batched "
        f"together: they take turns on the worker "
        f"token by token, so every client sees its first token early, and the aggregate rate is of the "
        f"order of one stream's (what concurrency adds is the overlap of HTTP work with model steps).",
        "",
        "| clients | completed | TTFT p50 | TTFT p99 | stream tok/s (median) | aggregate tok/s | wall | "
        "aggregate vs 1 client |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in (base, load):
        lines.append(f"| {s['clients']} | {s['completed']}/{s['clients']} | {1000 * s['ttft_p50']:.0f} ms | "
                     f"{1000 * s['ttft_p99']:.0f} ms | {s['stream_rate']:,.1f} | {s['aggregate']:,.0f} | "
                     f"{s['wall']:.2f} s | {s['aggregate'] / base['aggregate']:.2f}× |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="a model folder to serve (e.g. runs/tiny/best)")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--new", type=int, default=32, help="new tokens per client")
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds before giving up")
    parser.add_argument("--quick", action="store_true", help="8 clients, no file written")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    if args.clients < 1 or args.new < 1 or not args.time_limit > 0:
        parser.exit(2, "serve_load.py: --clients and --new must be at least 1 and --time-limit positive\n")
    if not Path(args.checkpoint).is_dir():
        parser.exit(2, f"serve_load.py: {args.checkpoint} is not a model folder; give one "
                       "(e.g. runs/tiny/best)\n")
    if args.quick:
        args.clients = 8
    load_start = os.getloadavg()
    try:
        proc, url = start_server(args.checkpoint, queue=args.clients)
    except RuntimeError as e:
        parser.exit(2, f"serve_load.py: {e}\n")
    try:
        model = httpx.get(url + "/v1/models").json()["data"][0]
        asyncio.run(run_clients(url, 1, 4, args.time_limit))  # warm-up
        bases = [summary(*asyncio.run(run_clients(url, 1, args.new, args.time_limit))) for _ in range(3)]
        base = sorted(bases, key=lambda b: b["aggregate"])[1]  # the median of 3 single-client runs
        load = summary(*asyncio.run(run_clients(url, args.clients, args.new, args.time_limit)))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    section = report(base, load, args, model, load_start, table_argv(parser))
    print(section)
    if load["completed"] != load["clients"]:
        raise SystemExit(f"only {load['completed']} of {load['clients']} clients completed")
    if not args.quick:
        write_section(args.out, SECTION, section)
        print(f"updated {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

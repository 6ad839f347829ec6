"""Load test of `arlm serve`, before and after continuous batching: 1, 8, 32 and 64 concurrent
streaming clients against live servers on 127.0.0.1.

Run by hand (a few minutes on 2 CPU cores with a tiny Transformer)::

    arlm train transformer --preset tiny --out runs/tiny     # any checkpoint will do
    python benchmarks/serve_load.py runs/tiny/best          # prints the table, updates docs/benchmarks.md
    python benchmarks/serve_load.py runs/tiny/best runs/big/best   # a table per model
    python benchmarks/serve_load.py runs/tiny/best --quick  # 1 and 8 clients, one round, no file written

Two servers are started as a user starts them (``python -m arlm.cli serve CHECKPOINT --threads 1``,
each its own process): "before" with ``--no-batching`` (every stream alone, taking turns on the one
worker token by token: the scheduler before issue 22) and "after" (the default: every stream in one
forward per step, :mod:`arlm.serve.batcher`). The clients are asyncio tasks of this process (httpx),
each posting one ``"stream": true`` generation of exactly ``--new`` tokens ([EOS] banned, its own seed)
at the same moment. Measured in each run: the aggregate tokens/s (all tokens / wall time from the
first request to the last ``done``), the time to first token (TTFT: from sending the request to the
first token event) and the time between tokens (TBT: between two token events of one client; p50 and
p99 over every client's gaps). Each (clients, server) case runs ``--rounds`` times, the two servers
alternating within every round (and which goes first alternating between rounds) so that both see
the same machine load; the table shows the medians over the rounds. Every client has a deadline
(``--time-limit``), and the servers are stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from report import command_line, format_load, table_argv, write_section

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Serving (concurrent streaming clients)"
EOS = 2
SERVERS = {"before": ["--no-batching"], "after": []}  # extra `arlm serve` flags
METRICS = ("aggregate", "ttft_p50", "ttft_p99", "tbt_p50", "tbt_p99", "cpu_per_token")


async def one_client(client: httpx.AsyncClient, body: dict) -> dict:
    """One streaming generation -> {arrivals (s from the request, one per token event), done, status}.

    The events are read as bytes, split at the blank line that ends each one: the client's work per
    token stays small next to the server's (httpx's ``aiter_lines`` cost as much CPU per token as the
    batched server), and tokens that arrive in one read arrive at the same time."""
    start = time.perf_counter()
    arrivals: list[float] = []
    done, buffer = False, b""
    async with client.stream("POST", "/v1/generate", json=body) as r:
        if r.status_code != 200:
            return {"arrivals": [], "done": False, "status": r.status_code}
        async for chunk in r.aiter_raw():
            now = time.perf_counter() - start
            *events, buffer = (buffer + chunk).split(b"\n\n")
            for event in events:
                if event.startswith(b"event: token"):
                    arrivals.append(now)
                elif event.startswith(b"event: done"):
                    done = json.loads(event.split(b"data: ", 1)[1])["num_tokens"] == len(arrivals)
    return {"arrivals": arrivals, "done": done, "status": 200}


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
    """The q-th percentile (nearest rank) of ``xs`` (NaN for none)."""
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, math.ceil(q / 100 * len(xs)) - 1))]  # the ⌈q·n/100⌉-th smallest


def summary(results: list[dict], wall: float, cpu: float) -> dict:
    """One run (``cpu``: the server's CPU seconds during it): completed clients, aggregate tokens/s,
    TTFT and TBT percentiles (seconds), the server's CPU seconds per token."""
    ok = [r for r in results if r["done"]]
    ttft = [r["arrivals"][0] for r in ok]
    gaps = [b - a for r in ok for a, b in zip(r["arrivals"], r["arrivals"][1:], strict=False)]
    tokens = sum(len(r["arrivals"]) for r in ok)
    return {"clients": len(results), "completed": len(ok), "aggregate": tokens / wall,
            "ttft_p50": percentile(ttft, 50), "ttft_p99": percentile(ttft, 99),
            "tbt_p50": percentile(gaps, 50), "tbt_p99": percentile(gaps, 99),
            "cpu_per_token": cpu / max(tokens, 1)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(checkpoint: str, queue: int, flags: list[str],
                 timeout: float) -> tuple[subprocess.Popen, str]:
    """``arlm serve CHECKPOINT`` on a free port with ``flags`` -> (its process, its URL)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "arlm.cli", "serve", checkpoint, "--port", str(port),
                             "--queue", str(queue), "--threads", "1", "--request-timeout", str(timeout),
                             *flags],
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


def measure(urls: dict[str, str], pids: dict[str, int], clients: list[int],
            args) -> dict[str, dict[int, list[dict]]]:
    """Every (server, clients) case ``args.rounds`` times, the servers alternating -> the runs."""
    runs: dict[str, dict[int, list[dict]]] = {name: {n: [] for n in clients} for name in urls}
    for url in urls.values():
        asyncio.run(run_clients(url, 2, 4, args.time_limit))  # warm-up
    for r in range(args.rounds):
        for n in clients:
            order = list(urls) if r % 2 == 0 else list(reversed(urls))
            for name in order:
                cpu = cpu_seconds(pids[name])
                results, wall = asyncio.run(run_clients(urls[name], n, args.new, args.time_limit))
                run = summary(results, wall, cpu_seconds(pids[name]) - cpu)
                runs[name][n].append(run)
                print(f"round {r + 1}, {n} clients, {name}: {run['aggregate']:,.0f} tok/s, "
                      f"TBT p99 {1000 * run['tbt_p99']:.1f} ms", file=sys.stderr)
    return runs


def medians(runs: list[dict]) -> dict:
    out = {m: statistics.median(run[m] for run in runs) for m in METRICS}
    out["completed"] = min(run["completed"] for run in runs)
    out["clients"] = runs[0]["clients"]
    return out


def describe(model: dict) -> str:
    """A served model in words: 'a transformer of 31,936 parameters (char tokenizer, vocabulary 74)'."""
    return (f"a {model['family']} of {model['parameters']:,} parameters ({model['tokenizer']} tokenizer, "
            f"vocabulary {model['vocab_size']})")


def model_table(model: dict, table: dict[str, dict[int, dict]], clients: list[int]) -> list[str]:
    """One model's rows (one per number of clients) and the verdict on the issue's aim."""
    ms = lambda x: f"{1000 * x:.1f} ms"  # noqa: E731
    us = lambda x: f"{1e6 * x:,.0f} µs"  # noqa: E731
    before, after = table["before"], table["after"]
    lines = [
        f"**{describe(model)[0].upper()}{describe(model)[1:]}**", "",
        "| clients | aggregate tok/s before | after | after / before | TTFT p50 / p99 before | "
        "after | TBT p50 / p99 before | after | server CPU per token before | after | "
        "completed (before, after) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n in clients:
        b, a = before[n], after[n]
        lines.append(f"| {n} | {b['aggregate']:,.0f} | {a['aggregate']:,.0f} | "
                     f"{a['aggregate'] / b['aggregate']:.2f}× | {ms(b['ttft_p50'])} / {ms(b['ttft_p99'])} | "
                     f"{ms(a['ttft_p50'])} / {ms(a['ttft_p99'])} | {ms(b['tbt_p50'])} / {ms(b['tbt_p99'])} | "
                     f"{ms(a['tbt_p50'])} / {ms(a['tbt_p99'])} | {us(b['cpu_per_token'])} | "
                     f"{us(a['cpu_per_token'])} | {b['completed']}/{n}, {a['completed']}/{n} |")
    if 32 in clients and 1 in clients:
        speed = after[32]["aggregate"] / before[32]["aggregate"]
        tbt = after[32]["tbt_p99"] / after[1]["tbt_p99"]
        cpu = before[32]["cpu_per_token"] / after[32]["cpu_per_token"]
        met = speed >= 4 and tbt <= 2
        lines += ["", f"The aim (issue 22: at 32 streams ≥ 4× the aggregate tokens/s of the scheduler "
                      f"before, with p99 TBT no worse than 2× a single stream's) is "
                      f"{'met' if met else 'not met'} for this model in this run: at 32 streams batching "
                      f"gives {speed:.2f}× the aggregate tokens/s ({'≥' if speed >= 4 else '<'} 4×), and "
                      f"its p99 TBT is {tbt:.2f}× a single stream's ({ms(after[32]['tbt_p99'])} against "
                      f"{ms(after[1]['tbt_p99'])}; {'≤' if tbt <= 2 else '>'} 2×). The server spends "
                      f"{cpu:.1f}× less CPU per token at 32 streams with batching."]
    return [*lines, ""]


def report(tables: list[tuple[dict, dict[str, dict[int, dict]]]], clients: list[int], args,
           loads: list[tuple[float, ...]], argv: list[str]) -> str:
    """The section: command, machine, load, a table per model, the verdicts on the aim."""
    lines = [
        SECTION, "",
        command_line("serve_load.py", ["platform", "arch", "cpus", "python", "torch"], argv=argv,
                     load=loads, note="2 cores shared with other engineers' jobs: the ratios come from "
                                      "runs that alternate the two servers"), "",
        "For each model, two `arlm serve` processes (1 worker thread, 1 torch thread each): **before**, "
        "`--no-batching` (each stream alone, the streams taking turns on the worker token by token: the "
        "scheduler before continuous batching) and **after** (the default: every active stream one "
        "token further in one forward per step). Clients in another process (httpx, asyncio, the events "
        "read as bytes) on 127.0.0.1, all starting at once; each streams exactly "
        f"{args.new} new tokens after \"ROMEO:\" ([EOS] banned, seed = client number). Aggregate = all "
        "tokens / wall time; TTFT = from sending the request to the first token event; TBT = between "
        "two token events of one client (p50 / p99 over all clients' gaps; events the batch made before "
        "the client read them arrive together, 0 ms apart); server CPU per token = the server "
        "process's user + system CPU time during the run (all its threads, from /proc) / the tokens, "
        f"which the load of other jobs moves less than wall times. Medians of {args.rounds} rounds; in "
        "each round the two servers take turns.", "",
    ]
    for model, table in tables:
        lines += model_table(model, table, clients)
    return "\n".join(lines)


def serve_and_measure(checkpoint: str, clients: list[int], args) -> tuple[dict, dict[str, dict[int, dict]]]:
    """Start the two servers on ``checkpoint``, measure, stop them -> (the model, medians per case)."""
    procs, urls = [], {}
    try:
        for name, flags in SERVERS.items():
            proc, urls[name] = start_server(checkpoint, max(clients), flags, args.time_limit)
            procs.append(proc)
        model = httpx.get(urls["after"] + "/v1/models").json()["data"][0]
        runs = measure(urls, {name: p.pid for name, p in zip(SERVERS, procs, strict=True)}, clients, args)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.communicate(timeout=60)
    return model, {name: {n: medians(runs[name][n]) for n in clients} for name in SERVERS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT",
                        help="model folders to serve, one table each (e.g. runs/tiny/best)")
    parser.add_argument("--clients", default="1,8,32,64",
                        help="numbers of concurrent clients, comma-separated")
    parser.add_argument("--new", type=int, default=32, help="new tokens per client")
    parser.add_argument("--rounds", type=int, default=3, help="runs of every case (medians are shown)")
    parser.add_argument("--time-limit", type=float, default=600.0,
                        help="seconds before giving up on a run (also the servers' --request-timeout)")
    parser.add_argument("--quick", action="store_true", help="1 and 8 clients, one round, no file written")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()
    try:
        clients = sorted({int(c) for c in args.clients.split(",")})
    except ValueError:
        parser.exit(2, f"serve_load.py: --clients takes numbers separated by commas, not {args.clients!r}\n")
    if min(clients) < 1 or args.new < 1 or args.rounds < 1 or not args.time_limit > 0:
        parser.exit(2, "serve_load.py: --clients, --new and --rounds must be at least 1 and --time-limit "
                       "positive\n")
    for checkpoint in args.checkpoints:
        if not Path(checkpoint).is_dir():
            parser.exit(2, f"serve_load.py: {checkpoint} is not a model folder; give one "
                           "(e.g. runs/tiny/best)\n")
    if args.quick:
        clients, args.rounds = [1, 8], 1
    load_start = os.getloadavg()
    try:
        tables = [serve_and_measure(checkpoint, clients, args) for checkpoint in args.checkpoints]
    except RuntimeError as e:
        parser.exit(2, f"serve_load.py: {e}\n")
    load_end = os.getloadavg()
    section = report(tables, clients, args, [load_start, load_end], table_argv(parser))
    print(section)
    print(f"load average at the start {format_load(load_start)}, at the end {format_load(load_end)}",
          file=sys.stderr)
    incomplete = [(model["name"], name, n) for model, table in tables for name in SERVERS for n in clients
                  if table[name][n]["completed"] < n]
    if incomplete:
        raise SystemExit(f"some clients did not complete: {incomplete}")
    if not (args.quick or args.no_write):
        write_section(args.out, SECTION, section)
        print(f"updated {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

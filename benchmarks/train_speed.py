"""Training throughput and model-FLOPs utilisation (MFU) of arlm's Trainer on this CPU.

    python benchmarks/train_speed.py            # prints the tables, updates docs/benchmarks.md
    python benchmarks/train_speed.py --quick    # fewer steps, no torch.compile, no curve

* peak: this machine's fp32 matmul rate, timed in the same run (a 2048² torch.mm), per thread count;
* tokens/s of ``Trainer.train_step`` (arlm: micro-batches, clipping, schedule, AdamW with decay groups)
  and of a straightforward PyTorch loop of the same model (forward, cross-entropy, backward,
  AdamW step), medians over steps after warm-up; MFU = tokens/s × FLOPs per token / peak;
  the systems of one model and thread count run in turns (``report.round_robin``: one step each per
  round, after each one's first step), so that all see the same machine load;
* FLOPs per token: 6N + 12·L·d·T for the Transformer (N parameters, nanoGPT/PaLM's estimate: the
  forward pass 2N + attention scores 2·L·d·T, backward twice that), 6N for the LSTM;
* torch threads 1 vs 2, AdamW foreach vs fused vs for-loop, and torch.compile (when it works here;
  the variants take their turns with the small Transformer's rows at the first thread count);
* the val loss against wall clock of a short char-level Shakespeare Transformer run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from arlm.models.registry import FAMILIES
from arlm.streams import PAD_ID
from arlm.train import TrainConfig, Trainer
from arlm.train.batches import loss_targets, random_chunks
from arlm.usecases.data import TokenizerSpec, prepare_data
from report import command_line, round_robin, table_argv, write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Training speed"
WARMUP = 2  # untimed steps of every system: its first (alone) and one more in turns
NOTE = (
    'Caveat: the 2 CPUs are shared with other processes, and the peak is one 2048² torch.mm timed in'
    " the same run, under the load of the moment: it has measured 98.6 GFLOP/s (2026-11-23, when the "
    "LSTM's MFU read above 100%) and 190 (2026-11-28) on this machine, so read MFU as relative between "
    "rows of one run. 6N counts only the LSTM's matmuls."
)


def peak_flops(threads: int, n: int = 2048, repeats: int = 5) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t)
    return 2 * n**3 / min(times)


def flops_per_token(model, config) -> float:
    n = sum(p.numel() for p in model.parameters())
    if model.family == "transformer":
        c = model.config
        return 6 * n + 12 * c.n_layer * c.d_model * config.block_size
    return 6 * n


MODELS = {  # kind: (family, config fields)
    "gpt-4x128": ("transformer", {"block_size": 64, "n_layer": 4, "n_head": 4, "d_model": 128}),
    "gpt-6x384": ("transformer", {"block_size": 256, "n_layer": 6, "n_head": 6, "d_model": 384}),
    "lstm-256": ("rnn", {"cell": "lstm", "d_embed": 128, "d_hidden": 256}),
}


def make_model(kind: str, vocab: int, seed: int = 0, **changes):
    """A model of the registry's family for ``kind``, its weights drawn from ``seed``."""
    family, fields = MODELS[kind]
    torch.manual_seed(seed)
    return FAMILIES[family].model_class(FAMILIES[family].config_class(vocab, **{**fields, **changes}))


SHAPES = {  # kind: (block, rows per step)
    "gpt-4x128": (64, 12),
    "gpt-6x384": (256, 8),
    "lstm-256": (64, 12),
}


def trainer_step(kind: str, stream: np.ndarray, vocab: int) -> Callable[[], object]:
    """arlm's Trainer on ``kind``'s model and shape: its ``train_step`` (one step per call)."""
    block, rows = SHAPES[kind]
    config = TrainConfig(batch_tokens=block * rows, micro_batch_size=rows, block_size=block,
                         max_steps=10**6, warmup_steps=10, eval_interval=0, show_progress=False,
                         device="cpu")
    return Trainer(make_model(kind, vocab), config, stream).train_step


def plain_step(kind: str, stream: np.ndarray, vocab: int, batches: int, optimizer: str = "foreach",
               compile_model: bool = False) -> Callable[[], None]:
    """A straightforward loop on ``kind``'s model and shape, one step per call (forward, cross-entropy,
    backward, AdamW step). Its ``batches`` batches (then again from the first) are drawn here, so that a
    timed step holds no batch sampling."""
    block, rows = SHAPES[kind]
    model = make_model(kind, vocab)
    opts = {"foreach": {"foreach": True}, "fused": {"fused": True}, "for-loop": {"foreach": False}}[optimizer]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1, **opts)
    fwd = torch.compile(model) if compile_model else model
    gen = torch.Generator().manual_seed(0)
    ready = [loss_targets(random_chunks(stream, block, rows, gen)) for _ in range(batches)]  # (B, T) pairs
    calls = 0

    def step() -> None:
        nonlocal calls
        inputs, targets = ready[calls % len(ready)]
        calls += 1
        logits, _ = fwd(inputs)  # every family: (logits, state)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD_ID)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


@dataclass
class Timing:
    """What :func:`race` measured of one system (or why it could not)."""

    median: float = 0.0  # seconds, the median of the timed steps
    first: float = 0.0  # seconds of the first step (where torch.compile compiles)
    total: float = 0.0  # seconds of the build and every step
    error: str = ""  # 'failed: …' when an optional system's build or first step raised


def race(systems: dict[str, Callable[[], Callable[[], object]]], steps: int, warmup: int = WARMUP,
         optional: Collection[str] = ()) -> dict[str, Timing]:
    """Time systems in turns, so that all see the same machine load.

    ``systems``: name -> a builder that returns the system's step. Each is built and takes its first
    step (timed apart: a compile), one after the other; then all step round-robin (one step each per
    round, :func:`report.round_robin`) for ``warmup - 1`` untimed rounds and ``steps`` timed ones.
    A system in ``optional`` whose build or first step raises is left out with the error's first line;
    any other error propagates. -> per system (same order) its :class:`Timing`.
    """
    if warmup < 1 or steps < 1:
        raise ValueError(f"warmup and steps must be ≥ 1, got {warmup} and {steps}")
    timings: dict[str, Timing] = {}
    ready: dict[str, Callable[[], object]] = {}
    for name, build in systems.items():
        start = time.perf_counter()
        try:
            step = build()
            first = time.perf_counter()
            step()
        except Exception as e:
            if name not in optional:
                raise
            line = (str(e).splitlines() or [""])[0]
            timings[name] = Timing(error=f"failed: {type(e).__name__}: {line}"[:160])
            continue
        now = time.perf_counter()
        timings[name] = Timing(first=now - first, total=now - start)
        ready[name] = step
    runs = round_robin(ready, warmup - 1 + steps, warmup=0, collect_garbage=False)
    for name, run in runs.items():
        timings[name].median = statistics.median(run.seconds[warmup - 1:])
        timings[name].total += sum(run.seconds)
    return {name: timings[name] for name in systems}


def val_curve(train: np.ndarray, val: np.ndarray, vocab: int, seconds: float, every: int) -> list[tuple]:
    """(step, wall s, train loss, val loss) of the 4x128 Transformer (block 128, 12 rows)."""
    torch.manual_seed(0)
    model = make_model("gpt-4x128", vocab, block_size=128)
    config = TrainConfig(batch_tokens=128 * 12, micro_batch_size=12, block_size=128, lr=2e-3,
                         warmup_steps=50, max_steps=10**6, schedule="constant", eval_interval=0,
                         eval_batch_size=64, show_progress=False, device="cpu")
    trainer = Trainer(model, config, train, val)
    rows = [(0, 0.0, None, trainer.evaluate()["val_loss"])]
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        summary = trainer.train(steps=every)
        wall = time.perf_counter() - start
        rows.append((trainer.step, wall, summary.train_loss, trainer.evaluate()["val_loss"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--threads", default="", help="comma-separated torch thread counts to try "
                        "(default: 1 and all); the first one also runs the variants and the curve")
    args = parser.parse_args()
    steps = 3 if args.quick else 8
    cores = torch.get_num_threads()
    try:
        thread_options = ([int(t) for t in args.threads.split(",")] if args.threads
                          else sorted({1, max(1, cores)}))
    except ValueError:
        thread_options = []
    if not thread_options or min(thread_options) < 1:
        parser.exit(2, f"train_speed.py: --threads must be thread counts ≥ 1 separated by commas (e.g. 1,2), "
                       f"not {args.threads!r}\n")
    data = prepare_data("shakespeare", TokenizerSpec("char"))
    train, val = data.train.tokens, data.val.tokens
    vocab = data.tokenizer.vocab_size
    load_before = os.getloadavg()
    peaks = {t: peak_flops(t) for t in thread_options}
    for t, p in peaks.items():
        print(f"peak fp32 matmul, {t} thread(s): {p / 1e9:.1f} GFLOP/s")

    small, cores = "gpt-4x128", thread_options[0]  # the variants: the small Transformer, the first count
    rows, extra = [], []
    for kind in SHAPES:
        model = make_model(kind, vocab)
        block, b = SHAPES[kind]
        fpt = flops_per_token(model, TrainConfig(block_size=block, batch_tokens=block * b,
                                                 micro_batch_size=b))
        n = sum(p.numel() for p in model.parameters())
        kind_steps = max(2, steps // 3) if kind == "gpt-6x384" else steps
        batches = WARMUP + kind_steps  # the plain loop's: a new batch for every step, warm-ups included
        for threads in thread_options:
            if kind == "gpt-6x384" and threads != thread_options[0] and not args.quick:
                continue  # minutes per configuration: only the first thread count
            torch.set_num_threads(threads)
            systems = {"arlm": partial(trainer_step, kind, train, vocab),
                       "plain": partial(plain_step, kind, train, vocab, batches)}
            variants = {}
            if kind == small and threads == cores:
                variants = {f"plain loop, AdamW {opt}": partial(plain_step, kind, train, vocab, batches, opt)
                            for opt in ("fused", "for-loop")}
                if not args.quick:
                    variants["plain loop, torch.compile (inductor)"] = partial(
                        plain_step, kind, train, vocab, batches, compile_model=True)
            timings = race({**systems, **variants}, kind_steps, optional=variants)
            ours, plain = (block * b / timings[k].median for k in ("arlm", "plain"))
            rows.append({"model": kind, "params": n, "threads": threads, "variant": "foreach AdamW",
                         "arlm": ours, "plain": plain, "mfu_arlm": ours * fpt / peaks[threads],
                         "mfu_plain": plain * fpt / peaks[threads]})
            print(rows[-1])
            for name in variants:
                t = timings[name]
                if t.error:
                    extra.append((name, None, None, t.error))
                    continue
                tps = block * b / t.median
                compiled = "compile" in name
                note = f"first step (compile) {t.first:.1f} s; total {t.total:.0f} s" if compiled else ""
                extra.append((name, tps, tps * fpt / peaks[threads], note))
    torch.set_num_threads(cores)  # the curve's
    for e in extra:
        print(e)
    curve = []
    if not args.quick:
        curve = val_curve(train, val[:20000], vocab, seconds=90, every=50)
        for r in curve:
            print(r)
    if not args.no_write:
        write_report(rows, extra, curve, peaks, cores, table_argv(parser), load_before)


def _k(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def write_report(rows, extra, curve, peaks, cores, argv: list[str], load_before) -> None:
    """Write the section into docs/benchmarks.md (``argv``: the arguments its command line shows)."""
    lines = [
        SECTION, "",
        command_line("train_speed.py", ["platform", "arch", "cpus", "python", "torch"], argv=argv,
                     load=[load_before[:1], os.getloadavg()[:1]],
                     note="other processes share these CPUs: compare rows of one run only"), "",
        "Peak fp32 matmul measured in the same run (2048² `torch.mm`, best of 5): "
        + ", ".join(f"{t} thread(s) {p / 1e9:.1f} GFLOP/s" for t, p in peaks.items()) + ".", "",
        f"Training tokens/s (median over steps after {WARMUP} warm-up steps; the systems of a model and "
        "thread count step in turns), char-level Shakespeare batches. "
        "`arlm`: `Trainer.train_step` (LR schedule, decay/no-decay AdamW groups, gradient clipping, "
        "loss normalised over the batch); `plain`: forward, `F.cross_entropy`, backward, `AdamW.step` "
        "(foreach). MFU = tokens/s × FLOPs/token ÷ the peak at the same thread count "
        "(6N + 12·L·d·T for the Transformer, 6N for the LSTM).", "",
        "| model | params | block × rows | threads | arlm tok/s | plain tok/s | arlm / plain | MFU arlm "
        "| MFU plain |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        block, b = SHAPES[r["model"]]
        lines.append(f"| {r['model']} | {r['params']:,} | {block} × {b} | {r['threads']} | {_k(r['arlm'])} | "
                     f"{_k(r['plain'])} | {r['arlm'] / r['plain']:.2f} | {r['mfu_arlm']:.1%} | "
                     f"{r['mfu_plain']:.1%} |")
    lines += ["", NOTE]
    lines += ["", f"Variants of the plain loop on gpt-4x128 ({cores} threads), in turns with its rows above "
              "at that thread count:", "",
              "| variant | tok/s | MFU | note |", "|---|---|---|---|"]
    for name, tps, mfu, note in extra:
        lines.append(f"| {name} | {_k(tps)} | {'-' if mfu is None else f'{mfu:.1%}'} | {note} |")
    if curve:
        lines += ["", "Validation loss (nats/char, first 20,000 val characters) against wall clock: "
                  "Transformer 4 layers × 4 heads × 128, block 128, 12 rows, lr 2e-3 constant after 50 "
                  f"warm-up steps, {cores} threads.", "",
                  "| step | wall s | train loss | val loss |", "|---|---|---|---|"]
        for step, wall, tl, vl in curve:
            lines.append(f"| {step} | {wall:.0f} | {'-' if tl is None else f'{tl:.3f}'} | {vl:.3f} |")
    section = "\n".join(lines) + "\n"
    doc = ROOT / "docs" / "benchmarks.md"
    write_section(doc, SECTION, section)
    print(f"wrote the {SECTION!r} section of {doc}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""The lean step at 2 torch threads with numpy's BLAS at torch's thread count (before 2026-12-06) or at one
thread (``arlm.models.numpy_gemv.one_blas_thread``, now): two spinning thread pools on the same cores.

    nice python benchmarks/blas_threads_bench.py --out docs/benchmarks.md

For each case (random weights, seed 0, vocabulary 70, block 512): greedy decoding of 128 new tokens after
a 121-token random prompt (1 row, or 64 rows of 32-token random prompts) through
:class:`~arlm.decode.fast.FastDecoder` at 2 torch threads, once with numpy's BLAS given 2 threads (what
``follow_torch_threads`` did) and once with one, alternating round-robin. The two give the same tokens
(checked). Reported: seconds per decode (medians) and the per-round ratio with its 95% bootstrap interval.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from threadpoolctl import threadpool_limits

import arlm.decode.fast as fast
from arlm.decode.fast import FastDecoder
from arlm.decode.search import generate
from report import (
    PROMPT_LEN,
    command_line,
    publish,
    random_transformer,
    ratio_interval,
    round_robin,
    shapes_bench_args,
    table_argv,
)

SECTION = "## CPU decoding at 2 threads: numpy's BLAS at torch's thread count or at one"
CASES = [(4, 128, 4, 1), (6, 384, 6, 1), (4, 128, 4, 64)]  # (layers, d_model, heads, rows)
VOCAB, BLOCK, THREADS, ROWS_PROMPT = 70, 512, 2, 32


def measure(layers: int, width: int, heads: int, rows: int, new: int, repeats: int) -> dict:
    model, prompt = random_transformer(layers, width, heads, VOCAB, BLOCK)  # (1, Tp) prompt
    if rows > 1:  # (rows, 32) random prompts
        prompt = torch.randint(3, VOCAB, (rows, ROWS_PROMPT), generator=torch.Generator().manual_seed(0))
    decoder = FastDecoder(model)

    def decode(blas_threads: int):
        def run():
            threadpool_limits(limits=blas_threads, user_api="blas")
            return generate(decoder, prompt, temperature=0, max_new_tokens=new, eos_id=None).rows()
        return run

    fast.one_blas_thread = lambda: None  # the limit is set by each case
    runs = round_robin({"torch's count": decode(THREADS), "one": decode(1)}, repeats)
    return {"before": runs["torch's count"].median, "now": runs["one"].median,
            "ratio": ratio_interval(runs["torch's count"], runs["one"]),
            "same": runs["torch's count"].last == runs["one"].last}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args = shapes_bench_args(parser, repeats=7)
    torch.set_num_threads(THREADS)
    load = os.getloadavg()
    rows = []
    for layers, width, heads, batch in CASES:
        r = measure(layers, width, heads, batch, args.new, args.repeats)
        median, lo, hi = r["ratio"]
        prompt = (f"{PROMPT_LEN}-token prompt" if batch == 1
                  else f"{batch} rows of {ROWS_PROMPT}-token prompts")
        rows.append(f"| {layers} × {width}, {heads} heads | {prompt} | {r['before']:.3f} | {r['now']:.3f} | "
                    f"{median:.2f}× [{lo:.2f}, {hi:.2f}] | {'yes' if r['same'] else 'NO'} |")
        print(rows[-1], file=sys.stderr)
    lines = [SECTION, "",
             command_line("blas_threads_bench.py", ["platform", "python", "torch"], argv=table_argv(parser),
                          more=[f"{THREADS} torch threads"], load=[load, os.getloadavg()]), "",
             f"Random-weight Transformers (seed 0, vocabulary {VOCAB}, block {BLOCK}, fp32); greedy, "
             f"{args.new} new tokens, through the lean step (`FastDecoder`) at {THREADS} torch threads; "
             f"seconds per decode (medians of {args.repeats} rounds, the two alternating). "
             "\"BLAS at torch's count\": "
             "numpy's BLAS given torch's thread count, as `follow_torch_threads` did; \"BLAS at one\": "
             "`one_blas_thread`, what the lean step does now. Ratio: the first's time / the second's, per "
             "round, median [95% bootstrap interval].", "",
             "| shape | prompt | BLAS at torch's count, s | BLAS at one, s | ratio | same tokens |",
             "|---|---|---|---|---|---|", *rows]
    publish("\n".join(lines) + "\n", args.out, SECTION)


if __name__ == "__main__":
    main()

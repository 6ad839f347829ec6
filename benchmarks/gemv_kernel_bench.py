"""The lean step's one-row products by OpenBLAS's ``sgemv`` or numpy's ``einsum`` loop, across model sizes:
where the weights stop fitting the CPU's cache and ``einsum`` pays (``arlm.models.numpy_gemv``).

    nice python benchmarks/gemv_kernel_bench.py --out docs/benchmarks.md

For each shape (random weights, seed 0, vocabulary 70, block 512): greedy decoding of 128 new tokens
after a 121-token random prompt through :class:`~arlm.decode.fast.FastDecoder`, once with
``one_row="blas"`` and once with ``one_row="einsum"``, alternating round-robin on 1 thread. The two give
the same tokens (checked). Reported: the fp32 weights' size against the last-level cache, each decode's
ms per new token (medians), the per-round ratio sgemv / einsum (above 1: einsum is faster) as its
median with a 95% bootstrap interval, and the kernel ``FastDecoder`` chooses by itself
(``numpy_gemv.weights_stream``: einsum from 0.6 of the last-level cache).
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from arlm.decode.fast import FastDecoder
from arlm.decode.search import generate
from arlm.models.numpy_gemv import STREAMING_FRACTION, last_level_cache_bytes
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

SECTION = "## CPU batch-1 decoding: one-row products by sgemv or einsum, by model size"
SHAPES = [(2, 128, 2), (4, 256, 4), (6, 256, 4), (7, 256, 4), (3, 384, 6), (8, 256, 4), (4, 384, 6),
          (6, 384, 6), (8, 512, 8)]  # (layers, d_model, heads), by the weights' size
VOCAB, BLOCK = 70, 512


def measure(layers: int, width: int, heads: int, new: int, repeats: int) -> dict:
    model, prompt = random_transformer(layers, width, heads, VOCAB, BLOCK)  # (1, Tp) prompt
    decoders = {kernel: FastDecoder(model, one_row=kernel) for kernel in ("blas", "einsum")}
    cases = {name: (lambda d=d: generate(d, prompt, temperature=0, max_new_tokens=new, eos_id=None).rows()[0])
             for name, d in decoders.items()}
    runs = round_robin(cases, repeats)
    return {"mb": sum(p.numel() * p.element_size() for p in model.parameters()) / 1e6,
            "blas": runs["blas"].median / new, "einsum": runs["einsum"].median / new,
            "ratio": ratio_interval(runs["blas"], runs["einsum"]),
            "same": runs["blas"].last == runs["einsum"].last,
            "chosen": FastDecoder(model).one_row}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args = shapes_bench_args(parser, repeats=15)
    torch.set_num_threads(1)
    load = os.getloadavg()
    cache_mb = last_level_cache_bytes() / 1e6
    rows = []
    for layers, width, heads in SHAPES:
        r = measure(layers, width, heads, args.new, args.repeats)
        median, lo, hi = r["ratio"]
        rows.append(f"| {layers} × {width}, {heads} heads | {r['mb']:.1f} MB ({r['mb'] / cache_mb:.2f}) | "
                    f"{r['blas'] * 1e3:.3f} | {r['einsum'] * 1e3:.3f} | {median:.3f} [{lo:.3f}, {hi:.3f}] | "
                    f"{'yes' if r['same'] else 'NO'} | {r['chosen']} |")
        print(rows[-1], file=sys.stderr)
    lines = [SECTION, "",
             command_line("gemv_kernel_bench.py", ["platform", "python", "torch"],
                          argv=table_argv(parser), more=["1 torch thread"], load=[load, os.getloadavg()]), "",
             f"Random-weight Transformers (seed 0, vocabulary {VOCAB}, block {BLOCK}, fp32); greedy, batch "
             f"1, {args.new} new tokens after a {PROMPT_LEN}-token random prompt; ms per new token (medians "
             f"of {args.repeats} rounds, the two kernels alternating). Weights: all parameters, and their "
             f"share of this machine's last-level cache ({cache_mb:.1f} MB, as Linux describes it). "
             "Ratio: sgemv's time / einsum's, per round, median [95% bootstrap interval of the median]; "
             "above 1 einsum is faster. \"lean step takes\": what `FastDecoder` chooses (einsum from "
             f"{STREAMING_FRACTION:.2f} of the cache).", "",
             "| shape | weights (of the cache) | sgemv ms / token | einsum ms / token | sgemv / einsum "
             "| same tokens | lean step takes |",
             "|---|---|---|---|---|---|---|", *rows]
    publish("\n".join(lines) + "\n", args.out, SECTION)


if __name__ == "__main__":
    main()

"""One new token's attention in numpy or through SDPA, across model widths: where the lean step's numpy
attention pays (``arlm.decode.fast.NUMPY_ATTENTION_MIN_WIDTH``).

    nice python benchmarks/attention_width_bench.py --out docs/benchmarks.md

For each shape (random weights, seed 0, vocabulary 70, block 512): greedy decoding of 128 new tokens
after a 121-token random prompt through :class:`~arlm.decode.fast.FastDecoder`, once with
``numpy_attention`` on and once off (SDPA), alternating round-robin on 1 thread. The two give the same
tokens (checked). Reported: each decode's ms per new token (medians), and the per-round ratio
SDPA / numpy (above 1: numpy's is faster) as its median with a 95% bootstrap interval of that median
(2,000 resamples of the rounds, generator seed 0): neighbouring rounds see the same load, so the
per-round ratio is steadier than the ratio of medians.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from arlm.decode.fast import NUMPY_ATTENTION_MIN_WIDTH, FastDecoder
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

SECTION = "## CPU batch-1 decoding: one token's attention in numpy or SDPA, by width"
SHAPES = [(2, 128, 4), (4, 256, 4), (6, 256, 8), (4, 384, 6), (6, 384, 6)]  # (layers, d_model, heads)
VOCAB, BLOCK = 70, 512


def measure(layers: int, width: int, heads: int, new: int, repeats: int) -> dict:
    model, prompt = random_transformer(layers, width, heads, VOCAB, BLOCK)  # (1, Tp) prompt
    decoders = {"numpy": FastDecoder(model), "sdpa": FastDecoder(model)}
    decoders["numpy"].numpy_attention, decoders["sdpa"].numpy_attention = True, False
    cases = {name: (lambda d=d: generate(d, prompt, temperature=0, max_new_tokens=new, eos_id=None).rows()[0])
             for name, d in decoders.items()}
    runs = round_robin(cases, repeats)
    return {"numpy": runs["numpy"].median / new, "sdpa": runs["sdpa"].median / new,
            "ratio": ratio_interval(runs["sdpa"], runs["numpy"]),
            "same": runs["numpy"].last == runs["sdpa"].last}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    args = shapes_bench_args(parser, repeats=21)
    torch.set_num_threads(1)
    load = os.getloadavg()
    rows = []
    for layers, width, heads in SHAPES:
        r = measure(layers, width, heads, args.new, args.repeats)
        median, lo, hi = r["ratio"]
        chosen = "numpy" if width >= NUMPY_ATTENTION_MIN_WIDTH else "SDPA"
        rows.append(f"| {layers} × {width}, {heads} heads | {r['numpy'] * 1e3:.3f} | {r['sdpa'] * 1e3:.3f} | "
                    f"{median:.3f} [{lo:.3f}, {hi:.3f}] | {'yes' if r['same'] else 'NO'} | {chosen} |")
        print(rows[-1], file=sys.stderr)
    lines = [SECTION, "",
             command_line("attention_width_bench.py", ["platform", "python", "torch"],
                          argv=table_argv(parser), more=["1 torch thread"], load=[load, os.getloadavg()]), "",
             f"Random-weight Transformers (seed 0, vocabulary {VOCAB}, block {BLOCK}); greedy, batch 1, "
             f"{args.new} new tokens after a {PROMPT_LEN}-token random prompt; ms per new token (medians of "
             f"{args.repeats} rounds, the two cases alternating). Ratio: SDPA's time / numpy's, per round, "
             "median [95% bootstrap interval of the median]; above 1 numpy's attention is faster. "
             f"\"lean step takes\": what `FastDecoder` chooses (numpy from d_model "
             f"{NUMPY_ATTENTION_MIN_WIDTH}).", "",
             "| shape | numpy attention ms / token | SDPA ms / token | SDPA / numpy | same tokens "
             "| lean step takes |",
             "|---|---|---|---|---|---|", *rows]
    publish("\n".join(lines) + "\n", args.out, SECTION)


if __name__ == "__main__":
    main()

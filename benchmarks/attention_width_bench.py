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
from pathlib import Path

import torch

from arlm.decode.fast import NUMPY_ATTENTION_MIN_WIDTH, FastDecoder
from arlm.decode.search import generate
from arlm.models.transformer import TransformerConfig, TransformerLM
from report import command_line, ratio_interval, round_robin, table_argv, write_section

SECTION = "## CPU batch-1 decoding: one token's attention in numpy or SDPA, by width"
SHAPES = [(2, 128, 4), (4, 256, 4), (6, 256, 8), (4, 384, 6), (6, 384, 6)]  # (layers, d_model, heads)
VOCAB, BLOCK, PROMPT_LEN = 70, 512, 121


def measure(layers: int, width: int, heads: int, new: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(vocab_size=VOCAB, block_size=BLOCK, n_layer=layers, n_head=heads,
                                            d_model=width)).eval()
    prompt = torch.randint(3, VOCAB, (1, PROMPT_LEN), generator=torch.Generator().manual_seed(0))  # (1, Tp)
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
    parser.add_argument("--new", type=int, default=128, help="new tokens per decode")
    parser.add_argument("--repeats", type=int, default=21, help="timed rounds per shape")
    parser.add_argument("--out", type=Path, default=None, help="write the section into this Markdown file")
    args = parser.parse_args()
    if args.new < 1 or args.repeats < 2:
        print(f"error: --new must be ≥ 1 and --repeats ≥ 2, got {args.new} and {args.repeats}",
              file=sys.stderr)
        sys.exit(2)
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
    section = "\n".join(lines) + "\n"
    print(section)
    if args.out is not None:
        write_section(args.out, SECTION, section)
        print(f"updated {args.out} ({SECTION})", file=sys.stderr)


if __name__ == "__main__":
    main()

"""One continuous-batching step at 1 row against 32 rows, in process, 1 torch thread.

Every token of every stream waits one batched step, so the ratio of a 32-row step to a 1-row step is the
least p99 time between tokens at 32 streams can be, against a single stream's, before any HTTP work
(issue 22's aim: ≤ 2×). Random-weight char Transformers of the two sizes benchmarks/serve_load.py uses;
greedy rows, 5 steps of warm-up per batch then 40 timed, the two batch sizes alternating, medians.

    python benchmarks/batch_step_bench.py                       # prints the section
    python benchmarks/batch_step_bench.py --out docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from arlm.decode.batched import ContinuousBatch
from arlm.decode.config import DecodingConfig
from arlm.models.transformer import TransformerConfig, TransformerLM
from arlm.streams import PAD_ID, SOS_ID
from report import command_line, round_robin, table_argv, write_section

SECTION = "## Continuous batching: one step at 1 row against 32 rows"
MODELS = {  # name -> the model's shape (vocabulary 74: the char tokenizer of Shakespeare)
    "small": TransformerConfig(vocab_size=74, block_size=256, n_layer=2, n_head=2, d_model=32),
    "6 × 384": TransformerConfig(vocab_size=74, block_size=256, n_layer=6, n_head=6, d_model=384),
}
STEPS = 40  # timed steps per call


def steps_of(model: TransformerLM, rows: int):
    """A call that runs STEPS batched greedy steps of ``rows`` rows (after 5 untimed ones) and returns the
    seconds of those STEPS steps alone."""

    def run() -> float:
        batch = ContinuousBatch(model, eos_id=None, pad_id=PAD_ID)
        for r in range(rows):
            batch.add([SOS_ID, 5 + r % 10], DecodingConfig(temperature=0, max_new_tokens=STEPS + 10))
        for _ in range(5):
            batch.step()
        start = time.perf_counter()
        for _ in range(STEPS):
            batch.step()
        return time.perf_counter() - start

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="write the section into this Markdown file")
    args = parser.parse_args()
    if args.repeats < 1:
        print(f"error: --repeats must be ≥ 1, got {args.repeats}", file=sys.stderr)
        sys.exit(2)
    torch.set_num_threads(1)
    load_start = os.getloadavg()
    rows_out = []
    for name, config in MODELS.items():
        torch.manual_seed(0)
        model = TransformerLM(config).eval()
        runs = round_robin({"1 row": steps_of(model, 1), "32 rows": steps_of(model, 32)}, args.repeats,
                           keep_results=True)
        one, many = (statistics.median(runs[k].results) / STEPS for k in ("1 row", "32 rows"))
        rows_out.append(f"| {name} ({model.num_parameters():,} parameters) | {one * 1e3:.2f} "
                        f"| {many * 1e3:.2f} | {many / one:.2f}× |")
    lines = [SECTION, "",
             command_line("batch_step_bench.py", ["platform", "python", "torch"], argv=table_argv(parser),
                          more=["1 torch thread"], load=(load_start, os.getloadavg())), "",
             f"`ContinuousBatch.step` of greedy rows, ms per step ({STEPS} timed steps after 5 untimed ones "
             f"per call), medians of {args.repeats} calls, the two batch "
             "sizes alternating. The last column is the least p99 time between tokens at 32 streams can be "
             "against one stream's, before any HTTP work.", "",
             "| model | 1 row, ms | 32 rows, ms | 32 rows / 1 row |", "|---|---:|---:|---:|", *rows_out]
    section = "\n".join(lines) + "\n"
    print(section)
    if args.out is not None:
        write_section(args.out, SECTION, section)
        print(f"updated {args.out} ({SECTION})", file=sys.stderr)


if __name__ == "__main__":
    main()

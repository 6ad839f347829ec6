"""Training wall time on nanoGPT's CPU "baby" config: arlm's Trainer (eager, and with compile=true)
against a nanoGPT-style plain PyTorch loop, in the same run.

    nice python benchmarks/train_baby.py              # 500 iterations each, updates docs/benchmarks.md
    python benchmarks/train_baby.py --iters 50 --no-write

nanoGPT itself is not on PyPI (this machine reaches no other source), so the baseline is its train.py
loop written out: random 64-token windows of the char-level Shakespeare stream, batch 12, the same
4 layers × 4 heads × 128 model (arlm's TransformerLM, the network of nanoGPT's model.py), forward
with F.cross_entropy over all positions, backward, gradient clipping at 1.0, AdamW (decay groups,
foreach, betas 0.9/0.99, lr 1e-3 with warmup and cosine decay), ``zero_grad(set_to_none=True)``;
fp32, no compile (nanoGPT's CPU command: ``--device=cpu --compile=False``). Wall time from model
construction to the last step, start-up included; the compiled run is also given without its
first (compiling) step. One torch thread each.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from arlm import pipeline
from arlm.data.cache import encode_corpus
from arlm.data.corpora import load_corpus
from arlm.models.transformer import TransformerConfig, TransformerLM
from arlm.train import TrainConfig, Trainer
from arlm.train.trainer import param_groups
from report import write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Training speed: nanoGPT's baby config"
BLOCK, BATCH, LR, MIN_LR, WARMUP = 64, 12, 1e-3, 1e-4, 100


def model(vocab: int) -> TransformerLM:
    torch.manual_seed(1337)
    return TransformerLM(TransformerConfig(vocab, block_size=BLOCK, n_layer=4, n_head=4, d_model=128))


def nanogpt_loop(data: np.ndarray, vocab: int, iters: int) -> float:
    """nanoGPT's train.py on the CPU, written out; -> wall seconds (model construction included)."""
    t0 = time.perf_counter()
    m = model(vocab)
    opt = torch.optim.AdamW(param_groups(m, 0.1), lr=LR, betas=(0.9, 0.99))
    for it in range(iters):
        lr = LR * (it + 1) / (WARMUP + 1) if it < WARMUP else MIN_LR + 0.5 * (1 + math.cos(
            math.pi * (it - WARMUP) / max(1, iters - WARMUP))) * (LR - MIN_LR)
        for g in opt.param_groups:
            g["lr"] = lr
        ix = torch.randint(len(data) - BLOCK, (BATCH,))
        x = torch.stack([torch.from_numpy(data[i : i + BLOCK].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(data[i + 1 : i + 1 + BLOCK].astype(np.int64)) for i in ix])
        logits, _ = m(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1), ignore_index=-1)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def arlm_trainer(data: np.ndarray, vocab: int, iters: int, compile: bool) -> tuple[float, float, float]:
    """arlm's Trainer on the same config -> (wall seconds, seconds of the first step, final loss)."""
    t0 = time.perf_counter()
    config = TrainConfig(batch_tokens=BLOCK * BATCH, micro_batch_size=BATCH, block_size=BLOCK, lr=LR,
                         min_lr=MIN_LR, betas=(0.9, 0.99), warmup_steps=WARMUP, max_steps=iters,
                         eval_interval=0, show_progress=False, device="cpu", compile=compile)
    trainer = Trainer(model(vocab), config, data)
    t1 = time.perf_counter()
    out = trainer.train_step()
    first = time.perf_counter() - t1
    summary = trainer.train()
    return time.perf_counter() - t0, first, summary.train_loss or out["loss"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iters", type=int, default=500)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load0 = os.getloadavg()
    corpus = load_corpus("shakespeare")
    tok = pipeline.build_tokenizer(corpus, pipeline.TokenizerSpec("char"))
    data = encode_corpus(corpus, "train", tok).tokens.astype(np.int64)
    vocab = tok.vocab_size
    # the runs one after the other, the baseline first and last (the load drifts)
    plain = nanogpt_loop(data, vocab, args.iters)
    eager, eager_first, eager_loss = arlm_trainer(data, vocab, args.iters, compile=False)
    comp, comp_first, comp_loss = arlm_trainer(data, vocab, args.iters, compile=True)
    plain2 = nanogpt_loop(data, vocab, args.iters)
    base = (plain + plain2) / 2
    rows = [("nanoGPT-style plain loop (mean of a run before and after)", base, None, None),
            ("arlm Trainer, fp32 eager", eager, eager_first, eager_loss),
            ("arlm Trainer, compile=true (start-up and compiling included)", comp, comp_first, comp_loss),
            ("arlm Trainer, compile=true, without the first (compiling) step", comp - comp_first, None, None)]
    lines = [SECTION, "",
             f"Command: `nice python benchmarks/train_baby.py --iters {args.iters}` — "
             f"{datetime.date.today().isoformat()}, {platform.platform()}, "
             f"Python {platform.python_version()}, torch {torch.__version__}, 1 torch thread; load average "
             f"at the start {load0[0]:.2f}, at the end {os.getloadavg()[0]:.2f} "
             "(2 cores shared with other engineers' jobs).", "",
             f"nanoGPT's CPU baby config (4 layers × 4 heads × 128, block 64, batch 12, dropout 0), "
             f"{args.iters} iterations on char-level Shakespeare; nanoGPT is not installable here, so the "
             f"baseline is its loop written out (see the script's docstring). Speed = baseline wall time / "
             f"wall time (the issue's aim: ≥ 1.3).", "",
             "| run | wall time | first step | speed vs baseline | final train loss |",
             "|---|---|---|---|---|"]
    for name, secs, first, loss in rows:
        lines.append(f"| {name} | {secs:.1f} s | {'-' if first is None else f'{first:.1f} s'} | "
                     f"{base / secs:.2f}× | {'-' if loss is None else f'{loss:.3f}'} |")
    lines += ["", f"Baseline runs: {plain:.1f} s before, {plain2:.1f} s after."]
    section = "\n".join(lines) + "\n"
    print(section)
    if not args.no_write:
        write_section(ROOT / "docs" / "benchmarks.md", SECTION, section)
        print(f"updated docs/benchmarks.md ({SECTION})", file=sys.stderr)


if __name__ == "__main__":
    main()

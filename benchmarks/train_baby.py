"""Training wall time on nanoGPT's CPU "baby" config: arlm's Trainer (eager, and with compile=true)
against a nanoGPT-style plain PyTorch loop, in the same run.

    nice python benchmarks/train_baby.py              # 500 iterations each, updates docs/benchmarks.md
    python benchmarks/train_baby.py --iters 50 --no-write

nanoGPT itself is not on PyPI (this machine reaches no other source), so the baseline is its train.py
loop written out: random 64-token windows of the char-level Shakespeare stream, batch 12, the same
4 layers × 4 heads × 128 model (arlm's TransformerLM, the network of nanoGPT's model.py), forward
with F.cross_entropy over all positions, backward, gradient clipping at 1.0, AdamW (decay groups,
foreach, betas 0.9/0.99, lr 1e-3 with warmup and cosine decay), ``zero_grad(set_to_none=True)``;
fp32, no compile (nanoGPT's CPU command: ``--device=cpu --compile=False``). The three systems are
built (timed: the setup) and then step round-robin, one iteration each in turn, so that all see the
same load on a shared machine; wall time = setup + the sum of each one's step times. The "without
the first step" column leaves out the first step, which is where torch.compile compiles. One torch
thread. The same seed gives every system the same initial weights (their batches differ: each draws
its own).
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
from arlm.streams import PAD_ID, SOS_ID
from arlm.train import TrainConfig, Trainer
from arlm.train.trainer import param_groups
from report import write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Training speed: nanoGPT's baby config"
BLOCK, BATCH, LR, MIN_LR, WARMUP = 64, 12, 1e-3, 1e-4, 100


def model(vocab: int) -> TransformerLM:
    torch.manual_seed(1337)
    return TransformerLM(TransformerConfig(vocab, block_size=BLOCK, n_layer=4, n_head=4, d_model=128))


class NanoGPTLoop:
    """nanoGPT's train.py on the CPU, written out, one iteration per :meth:`step`."""

    def __init__(self, data: np.ndarray, vocab: int, iters: int) -> None:
        self.data, self.iters, self.it = data, iters, 0
        self.model = model(vocab)
        self.opt = torch.optim.AdamW(param_groups(self.model, 0.1), lr=LR, betas=(0.9, 0.99))

    def step(self) -> float:
        it, data = self.it, self.data
        lr = LR * (it + 1) / (WARMUP + 1) if it < WARMUP else MIN_LR + 0.5 * (1 + math.cos(
            math.pi * (it - WARMUP) / max(1, self.iters - WARMUP))) * (LR - MIN_LR)
        for g in self.opt.param_groups:
            g["lr"] = lr
        ix = torch.randint(len(data) - BLOCK, (BATCH,))
        x = torch.stack([torch.from_numpy(data[i : i + BLOCK].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(data[i + 1 : i + 1 + BLOCK].astype(np.int64)) for i in ix])
        y[(y == SOS_ID) | (y == PAD_ID)] = -1  # [SOS]/[PAD] targets are not scored (as in arlm)
        logits, _ = self.model(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1), ignore_index=-1)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.it += 1
        return float(loss.detach())


class ArlmTrainer:
    """arlm's Trainer on the same config, one ``train_step`` per :meth:`step`."""

    def __init__(self, data: np.ndarray, vocab: int, iters: int, compile: bool) -> None:
        config = TrainConfig(batch_tokens=BLOCK * BATCH, micro_batch_size=BATCH, block_size=BLOCK, lr=LR,
                             min_lr=MIN_LR, betas=(0.9, 0.99), warmup_steps=WARMUP, max_steps=iters,
                             eval_interval=0, show_progress=False, device="cpu", compile=compile)
        self.trainer = Trainer(model(vocab), config, data)

    def step(self) -> float:
        return self.trainer.train_step()["loss"]


def race(systems: dict, iters: int) -> dict[str, dict]:
    """Build each system (timed), then run their iterations round-robin, one step each in turn, so that
    all see the same machine load; -> per system: setup s, first step s, total s, last losses."""
    res = {}
    built = {}
    for make in systems.values():  # one-time start-up costs (imports, first use of AdamW) untimed
        make()
    for name, make in systems.items():
        t = time.perf_counter()
        built[name] = make()
        res[name] = {"setup": time.perf_counter() - t, "steps": [], "losses": []}
    for _ in range(iters):
        for name, system in built.items():
            t = time.perf_counter()
            loss = system.step()
            res[name]["steps"].append(time.perf_counter() - t)
            res[name]["losses"].append(loss)
    for r in res.values():
        r["first"] = r["steps"][0]
        r["total"] = r["setup"] + sum(r["steps"])
        r["loss"] = sum(r["losses"][-20:]) / len(r["losses"][-20:])
    return res


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
    res = race({"nanoGPT-style plain loop": lambda: NanoGPTLoop(data, vocab, args.iters),
                "arlm Trainer, fp32 eager": lambda: ArlmTrainer(data, vocab, args.iters, False),
                "arlm Trainer, compile=true": lambda: ArlmTrainer(data, vocab, args.iters, True)},
               args.iters)
    base = res["nanoGPT-style plain loop"]["total"]
    base_later = base - res["nanoGPT-style plain loop"]["first"]
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
             "| run | wall time (setup + all steps) | first step | speed vs baseline | speed without the "
             "first step | train loss (mean of the last 20 steps) |",
             "|---|---|---|---|---|---|"]
    for name, r in res.items():
        lines.append(f"| {name} | {r['total']:.1f} s | {r['first']:.2f} s | {base / r['total']:.2f}× | "
                     f"{base_later / (r['total'] - r['first']):.2f}× | {r['loss']:.3f} |")
    section = "\n".join(lines) + "\n"
    print(section)
    if not args.no_write:
        write_section(ROOT / "docs" / "benchmarks.md", SECTION, section)
        print(f"updated docs/benchmarks.md ({SECTION})", file=sys.stderr)


if __name__ == "__main__":
    main()

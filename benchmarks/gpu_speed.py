"""GPU speed, in one run on one CUDA device: batch-1 greedy decoding (arlm's lean step and its CUDA
graph against HF ``generate``) and compiled training (arlm's Trainer against a nanoGPT-style loop).

    python benchmarks/gpu_speed.py                             # both parts, updates docs/benchmarks.md
    python benchmarks/gpu_speed.py --part decode --no-write
    python benchmarks/gpu_speed.py --part train --train-steps 3000 --save-model /tmp/char-6x384

Needs a CUDA device (it says so in one line otherwise); the CPU numbers are decode_speed.py's and
train_vs_nanogpt.py's (against the real nanoGPT).

**Decoding.** GPT-2 small's shape (12 layers × 12 heads × 768, vocabulary 50,257, 1,024 positions),
random weights of an HF ``GPT2LMHeadModel`` copied into arlm's ``GPT2LM`` (``interop.gpt2.from_hf``),
fp32, a random 16-token prompt, ``--new`` new tokens, [EOS] disabled. Cases: HF ``generate`` (eager,
its default SDPA attention and dynamic cache), arlm's ``generate`` over the model's modules, over the
lean step (``FastDecoder``) and over the static step captured as a CUDA graph
(``FastDecoder(cuda_graphs=True)``). Every case must give HF's tokens. Medians of ``--repeats`` runs
after a warm-up, the cases alternating round-robin, each run bracketed by ``torch.cuda.synchronize``.

**Training.** nanoGPT's ``train_shakespeare_char`` config: 6 layers × 6 heads × 384, block 256, batch
64, dropout 0.2, no biases, AdamW (fused, betas 0.9/0.99, weight decay 0.1 on matrices), lr 1e-3 with
100 warm-up steps and cosine decay to 1e-4, gradient clipping at 1.0, bf16 autocast, on the char-level
Shakespeare training stream. The baseline is nanoGPT's train.py loop written out over arlm's
``TransformerLM`` (the network of nanoGPT's model.py; nanoGPT is not installable here): a random batch
pinned and copied without blocking, forward under autocast, ``F.cross_entropy``, backward, clip,
step, ``zero_grad(set_to_none=True)``, ``loss.item()`` every 10 iterations (its log_interval).
arlm: ``Trainer.train_step`` with ``dtype="bf16"`` (on CUDA nothing in it waits for the GPU: the
loss, read here every 10 iterations as in the baseline, and its finiteness check stay on the device).
Each is timed eager and with ``torch.compile``
(nanoGPT's ``compile=True``; arlm's ``compile=true``), in blocks of iterations that alternate between
the systems after the compile and a warm-up; ms/iter = the median block's mean. ``--save-model``
then trains arlm's compiled run on to ``--train-steps`` and writes the model (a char model for the
CPU decoding benchmark's target).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
DECODE_SECTION = "## GPU: batch-1 decoding with CUDA graphs"
TRAIN_SECTION = "## GPU: compiled training against nanoGPT"
GPT2_SMALL = dict(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024)
PROMPT_LEN = 16
# nanoGPT's config/train_shakespeare_char.py (and train.py's defaults it keeps)
CHAR = dict(n_layer=6, n_head=6, d_model=384, block_size=256, dropout=0.2, bias=False)
BATCH, LR, MIN_LR, WARMUP, BETAS, LOG_INTERVAL = 64, 1e-3, 1e-4, 100, (0.9, 0.99), 10


# ----- decoding --------------------------------------------------------------------------------------


def decode_part(new: int, repeats: int) -> str:
    import transformers
    from transformers import GPT2Config, GPT2LMHeadModel

    from arlm.decode.fast import FastDecoder
    from arlm.decode.search import generate
    from arlm.interop.gpt2 import from_hf
    from report import round_robin

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(**GPT2_SMALL, bos_token_id=None, eos_token_id=None, pad_token_id=0))
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0
    ours = from_hf(hf).eval().cuda()
    hf = hf.eval().cuda()
    lean, graphs = FastDecoder(ours), FastDecoder(ours, cuda_graphs=True)
    g = torch.Generator().manual_seed(1)
    rows = []
    for batch in (1, 8):
        prompt = torch.randint(3, GPT2_SMALL["vocab_size"], (batch, PROMPT_LEN), generator=g).cuda()

        def hf_greedy(prompt=prompt):
            with torch.inference_mode():
                out = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new,
                                  min_new_tokens=0, do_sample=False, num_beams=1, use_cache=True,
                                  pad_token_id=0, eos_token_id=None)
            return out[:, PROMPT_LEN:]

        def ours_greedy(model, prompt=prompt):
            return lambda: generate(model, prompt, temperature=0, max_new_tokens=new, eos_id=None).tokens

        res = round_robin({"HF generate (eager)": hf_greedy, "arlm generate (modules)": ours_greedy(ours),
                           "arlm lean step": ours_greedy(lean),
                           "arlm static step + CUDA graph": ours_greedy(graphs)}, repeats,
                          collect_garbage=False, synchronize=torch.cuda.synchronize)
        base, ref = res["HF generate (eager)"].median, res["HF generate (eager)"].last
        for name, run in res.items():
            seconds, tokens = run.median, run.last
            same = "yes" if torch.equal(tokens.cpu(), ref.cpu()) else "NO"
            rows.append(f"| {name} | {batch} | {batch * new / seconds:,.0f} | {seconds * 1e3 / new:.2f} ms | "
                        f"{base / seconds:.2f}× | {same} |")
    lines = [DECODE_SECTION, "", gpu_command_line(), "",
             f"GPT-2 small's shape (12 × 12 × 768, vocabulary 50,257), random weights copied from HF's "
             f"`GPT2LMHeadModel` into arlm's `GPT2LM`; fp32 (TF32 off), a random {PROMPT_LEN}-token prompt, "
             f"{new} new tokens, [EOS] disabled; medians of {repeats} runs after a warm-up, the cases "
             f"alternating; transformers {transformers.__version__}. ms/token = wall time / new tokens.",
             "", "| case | batch | tok/s | ms/token | vs HF eager | same tokens as HF |",
             "|---|---|---|---|---|---|", *rows]
    return "\n".join(lines) + "\n"


# ----- training --------------------------------------------------------------------------------------


def char_data():
    from arlm.data.corpora import load_corpus
    from arlm.usecases.data import TokenizerSpec, prepare_data

    corpus = load_corpus("shakespeare")
    return prepare_data(corpus, TokenizerSpec("char"), "train", "val")


def char_model(vocab: int):
    from arlm.models.transformer import TransformerConfig, TransformerLM

    torch.manual_seed(1337)
    return TransformerLM(TransformerConfig(vocab, **CHAR)).cuda()


def cosine_lr(it: int, iters: int) -> float:
    if it < WARMUP:
        return LR * (it + 1) / (WARMUP + 1)
    progress = min(1.0, (it - WARMUP) / max(1, iters - WARMUP))
    return MIN_LR + 0.5 * (1 + math.cos(math.pi * progress)) * (LR - MIN_LR)


class NanoGPTLoop:
    """nanoGPT's train.py loop on a GPU, written out, one iteration per :meth:`step`."""

    def __init__(self, stream: np.ndarray, vocab: int, iters: int, compile: bool) -> None:
        from arlm.streams import PAD_ID, SOS_ID
        from arlm.train.trainer import param_groups

        self.data, self.iters, self.it, self.ignore = stream, iters, 0, (PAD_ID, SOS_ID)
        self.model = char_model(vocab)
        self.forward = torch.compile(self.model) if compile else self.model
        self.opt = torch.optim.AdamW(param_groups(self.model, 0.1), lr=LR, betas=BETAS, fused=True)
        self.batch = self.get_batch()

    def get_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        block = CHAR["block_size"]
        ix = torch.randint(len(self.data) - block, (BATCH,))
        x = torch.stack([torch.from_numpy(self.data[i : i + block]) for i in ix])
        y = torch.stack([torch.from_numpy(self.data[i + 1 : i + 1 + block]) for i in ix])
        y[(y == self.ignore[0]) | (y == self.ignore[1])] = -1  # [PAD]/[SOS] targets unscored, as in arlm
        return x.pin_memory().cuda(non_blocking=True), y.pin_memory().cuda(non_blocking=True)

    def step(self) -> None:
        for group in self.opt.param_groups:
            group["lr"] = cosine_lr(self.it, self.iters)
        x, y = self.batch
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits, _ = self.forward(x)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1), ignore_index=-1)
        self.batch = self.get_batch()  # the next batch is prepared while the GPU computes
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if self.it % LOG_INTERVAL == 0:
            loss.item()
        self.it += 1


class ArlmTrainer:
    """arlm's Trainer on the same config, one ``train_step`` per :meth:`step`."""

    def __init__(self, data, iters: int, compile: bool) -> None:
        from arlm.train import TrainConfig, Trainer

        block = CHAR["block_size"]
        config = TrainConfig(batch_tokens=BATCH * block, micro_batch_size=BATCH, block_size=block, lr=LR,
                             min_lr=MIN_LR, betas=BETAS, warmup_steps=WARMUP, max_steps=iters, dtype="bf16",
                             eval_interval=0, show_progress=False, device="cuda", compile=compile)
        self.trainer = Trainer(char_model(data.tokenizer.vocab_size), config, data.train, data.val)
        self.it = 0

    def step(self) -> None:
        out = self.trainer.train_step()  # loss and norm stay on the GPU (no wait for it) ...
        if self.it % LOG_INTERVAL == 0:
            float(out["loss"])  # ... but for the loss read every log interval, as the baseline does
        self.it += 1


def train_part(iters: int, block_iters: int, blocks: int, save_model: Path | None, train_steps: int) -> str:
    from report import round_robin

    data = char_data()
    stream = data.train.tokens.astype(np.int64)
    vocab = data.tokenizer.vocab_size
    systems: dict[str, Callable[[], object]] = {
        "nanoGPT-style loop, eager": lambda: NanoGPTLoop(stream, vocab, iters, False),
        "arlm Trainer, eager": lambda: ArlmTrainer(data, iters, False),
        "nanoGPT-style loop, torch.compile": lambda: NanoGPTLoop(stream, vocab, iters, True),
        "arlm Trainer, compile=true": lambda: ArlmTrainer(data, iters, True),
    }
    built, first = {}, {}
    for name, make in systems.items():
        t = time.perf_counter()
        built[name] = make()
        for _ in range(10):  # the compile (if any) and a warm-up
            built[name].step()
        torch.cuda.synchronize()
        first[name] = time.perf_counter() - t
        print(f"{name}: built, compiled and warmed up in {first[name]:.1f} s", file=sys.stderr, flush=True)

    def block(system: NanoGPTLoop | ArlmTrainer) -> Callable[[], None]:
        def run() -> None:
            for _ in range(block_iters):
                system.step()
        return run

    runs = round_robin({name: block(system) for name, system in built.items()}, blocks, warmup=0,
                       collect_garbage=False, synchronize=torch.cuda.synchronize)
    ms = {name: [seconds * 1e3 / block_iters for seconds in run.seconds] for name, run in runs.items()}
    median = {name: statistics.median(v) for name, v in ms.items()}
    base = {"eager": median["nanoGPT-style loop, eager"],
            "compile": median["nanoGPT-style loop, torch.compile"]}
    rows = [f"| {name} | {median[name]:.2f} | {min(ms[name]):.2f}–{max(ms[name]):.2f} | "
            f"{base['compile' if 'compile' in name else 'eager'] / median[name]:.2f}× | {first[name]:.1f} s |"
            for name in built]
    lines = [TRAIN_SECTION, "", gpu_command_line(), "",
             f"nanoGPT's `train_shakespeare_char` config (6 × 6 × 384, block 256, batch 64, dropout 0.2, "
             f"bf16 autocast, fused AdamW) on char-level Shakespeare; the baseline is nanoGPT's loop written "
             f"out (see the script's docstring). {blocks} blocks of {block_iters} iterations per system, "
             f"alternating, after 10 warm-up iterations (the compile included); ms/iter = median block mean. "
             f"Speed = the nanoGPT-style loop's ms/iter (same mode) / this row's.", "",
             "| run | ms/iter (median block) | block range | speed vs nanoGPT-style (same mode) | "
             "build + compile + 10 warm-up iterations |", "|---|---|---|---|---|", *rows]
    if save_model is not None:
        lines += ["", train_on(built["arlm Trainer, compile=true"].trainer, data, train_steps, save_model)]
    return "\n".join(lines) + "\n"


def train_on(trainer, data, steps: int, folder: Path) -> str:
    """Train ``trainer`` on to ``steps`` steps (its schedule is ``--iters`` long), evaluate it and save its
    model with the tokenizer."""
    from arlm.usecases.checkpoints import save_model

    t = time.perf_counter()
    while trainer.step < steps:
        trainer.train_step()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    val = trainer.evaluate()
    save_model(folder, trainer.model.eval(), data.tokenizer)
    return (f"The compiled arlm run then trained on to {steps} steps ({seconds:.0f} s more): validation "
            f"loss {val['val_loss']:.3f} nats/char, {val.get('val_bits_per_char', float('nan')):.3f} "
            f"bits/char; model written to `{folder}`.")


# ----- the report ------------------------------------------------------------------------------------


def gpu_command_line() -> str:
    """The sections' first line: the command, the date, the GPU, the platform, Python, torch."""
    from report import command_line, table_argv

    props = torch.cuda.get_device_properties(0)
    return command_line("gpu_speed.py", [f"{props.name} ({props.total_memory / 2**30:.0f} GiB)", "platform",
                                         "python", "torch"], argv=table_argv(arguments()))


def arguments() -> argparse.ArgumentParser:
    """The command line's options (main reads them; the sections' command lines show them)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("all", "decode", "train"), default="all")
    parser.add_argument("--new", type=int, default=256, help="new tokens per decoding run")
    parser.add_argument("--repeats", type=int, default=5, help="timed decoding runs per case")
    parser.add_argument("--iters", type=int, default=5000, help="the training schedule's length")
    parser.add_argument("--block-iters", type=int, default=50, help="training iterations per timed block")
    parser.add_argument("--blocks", type=int, default=4, help="timed blocks per training system")
    parser.add_argument("--save-model", type=Path, default=None,
                        help="train the compiled arlm run on to --train-steps and save it here")
    parser.add_argument("--train-steps", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true", help="print the tables only")
    return parser


def main() -> None:
    parser = arguments()
    args = parser.parse_args()
    counts = {"--new": args.new, "--repeats": args.repeats, "--iters": args.iters,
              "--block-iters": args.block_iters, "--blocks": args.blocks, "--train-steps": args.train_steps}
    for name, value in counts.items():
        if value < 1:
            print(f"error: {name} must be ≥ 1, got {value}", file=sys.stderr)
            raise SystemExit(2)
    if args.save_model is not None and args.part == "decode":
        print("error: --save-model trains the compiled arlm run of the training part; drop it or use "
              "--part train/all", file=sys.stderr)
        raise SystemExit(2)
    if not torch.cuda.is_available():
        print("error: benchmarks/gpu_speed.py needs a CUDA device; on a CPU run decode_speed.py and "
              "train_vs_nanogpt.py", file=sys.stderr)
        raise SystemExit(2)
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 decoding is fp32 (same tokens as HF)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from report import write_section

    sections = []
    if args.part in ("all", "decode"):
        sections.append((DECODE_SECTION, decode_part(args.new, args.repeats)))
        print(sections[-1][1], flush=True)
    if args.part in ("all", "train"):
        sections.append((TRAIN_SECTION, train_part(args.iters, args.block_iters, args.blocks, args.save_model,
                                                   args.train_steps)))
        print(sections[-1][1], flush=True)
    if not args.no_write:
        for heading, text in sections:
            write_section(args.out, heading, text)
        print(f"updated {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

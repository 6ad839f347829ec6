"""How fast does arlm decode a Transformer? Greedy (with / without the KV cache, batch 1 and 8) and
beam search, against HF ``GPT2LMHeadModel.generate()`` on identical weights, in the same run.

Run by hand (a few minutes on 2 CPU cores)::

    python benchmarks/decode_speed.py            # prints the tables, updates docs/benchmarks.md
    python benchmarks/decode_speed.py --quick    # fewer tokens and repeats, no file written

Model: a randomly initialised GPT-2 shape — 6 layers, d_model 384, 6 heads, vocabulary 8192,
block_size 512 (10.6M non-embedding parameters, 14.0M with the tied token embedding and the
positions). arlm's :class:`GPT2LM` (``interop.gpt2``: the same network with no reserved ids) gets the
weights of an HF ``GPT2LMHeadModel`` (``interop.gpt2.from_hf``), so both compute the same function;
the run checks that greedy decoding gives the same tokens. Both decode from the same random 16-token
prompt, [EOS] disabled (``eos_id=None`` / ``eos_token_id=None``) so every run makes exactly
``--new`` tokens. tokens/s = new tokens (all rows) / wall time; beam: new tokens of the returned
best hypothesis per second (each step scores K = 4 beams). Medians of ``--repeats`` runs after one
warm-up. "no cache": arlm recomputes the whole prefix every step through ``log_probs`` (the
textbook loop), HF with ``use_cache=False``.

Also measured: the generation time T(L) of arlm's greedy decoding against the length L, with and
without the cache, and the fitted exponent b of T ≈ a·L^b (least squares on log T vs log L).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from arlm.decode.search import beam_search, generate
from arlm.errors import ArlmError
from arlm.interop.gpt2 import from_hf
from report import OUTPUT_ONLY, Runs, command_line, format_load, round_robin, table_argv, timed, write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Decoding (Transformer)"
FAST_SECTION = "## Fast decoding (char Transformer on Shakespeare)"
TARGET_SECTION = "## Fast decoding: a trained target from a checkpoint"
SHAPE = dict(n_layer=6, n_embd=384, n_head=6, vocab_size=8192, n_positions=512)
PROMPT_LEN = 16
GPT2_ONLY = ("--new", "--no-scaling")  # the options that decide only the GPT-2-shape section
FAST_ONLY = ("--target-steps", "--target", "--fast-new")  # … only the fast-decoding section


def arlm_and_hf(ours: Callable[[], object], hf: Callable[[], object], repeats: int) -> tuple[Runs, Runs]:
    """arlm's and HF's runs of one case, alternating (arlm first) after a warm-up each."""
    runs = round_robin({"arlm": ours, "HF": hf}, repeats)
    return runs["arlm"], runs["HF"]


def build() -> tuple[torch.nn.Module, torch.nn.Module]:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(**SHAPE, bos_token_id=None, eos_token_id=None,
                                    pad_token_id=0)).eval()
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0
    ours = from_hf(hf).eval()
    return hf, ours


@torch.inference_mode()
def greedy_no_cache(model, prompt: torch.Tensor, n: int) -> torch.Tensor:
    """The textbook loop: every step recomputes log p over the whole prefix (no state kept)."""
    x = prompt
    for _ in range(n):
        nxt = model.log_probs(x)[:, -1].argmax(-1, keepdim=True)  # (B, 1)
        x = torch.cat([x, nxt], 1)
    return x[:, prompt.shape[1]:]


def run_cases(hf, ours, new: int, repeats: int) -> tuple[list[dict], dict]:
    g = torch.Generator().manual_seed(1)
    prompts = {b: torch.randint(3, SHAPE["vocab_size"], (b, PROMPT_LEN), generator=g) for b in (1, 8)}
    hf_kw = dict(max_new_tokens=new, min_new_tokens=0, do_sample=False, pad_token_id=0,
                 eos_token_id=None)
    rows, checks = [], {}

    def hf_gen(p, **kw):
        with torch.inference_mode():
            return hf.generate(p, attention_mask=torch.ones_like(p), **hf_kw, **kw)

    for b in (1, 8):
        p = prompts[b]
        r_ours, r_hf = arlm_and_hf(
            lambda p=p: generate(ours, p, temperature=0, max_new_tokens=new, eos_id=None),
            lambda p=p: hf_gen(p, num_beams=1, use_cache=True), repeats)
        checks[f"greedy b{b} same tokens"] = bool(torch.equal(r_ours.last.tokens, r_hf.last[:, PROMPT_LEN:]))
        rows.append(dict(case=f"greedy, KV cache, batch {b}", tokens=b * new, ours=r_ours.median,
                         hf=r_hf.median))
        r_ours, r_hf = arlm_and_hf(lambda p=p: greedy_no_cache(ours, p, new),
                                   lambda p=p: hf_gen(p, num_beams=1, use_cache=False), repeats)
        same = torch.equal(r_ours.last, r_hf.last[:, PROMPT_LEN:])
        checks[f"greedy b{b} no cache same tokens"] = bool(same)
        rows.append(dict(case=f"greedy, no cache, batch {b}", tokens=b * new, ours=r_ours.median,
                         hf=r_hf.median))
    p = prompts[1]
    r_ours, r_hf = arlm_and_hf(
        lambda: beam_search(ours, p, num_beams=4, max_new_tokens=new, length_penalty=1.0,
                            eos_id=None),
        lambda: hf_gen(p, num_beams=4, use_cache=True, length_penalty=1.0, early_stopping=True),
        repeats)
    checks["beam 4 same best"] = bool(torch.equal(r_ours.last.tokens[0, 0], r_hf.last[0, PROMPT_LEN:]))
    rows.append(dict(case="beam 4, KV cache, batch 1", tokens=new, ours=r_ours.median, hf=r_hf.median))
    return rows, checks


def scaling(ours, lengths: list[int], repeats: int) -> dict:
    """Greedy decoding time vs the number of new tokens L, with and without the cache; fit L^b."""
    p = torch.randint(3, SHAPE["vocab_size"], (1, PROMPT_LEN), generator=torch.Generator().manual_seed(2))
    res: dict = {"L": lengths, "cache": [], "nocache": []}
    for L in lengths:
        res["cache"].append(timed(lambda L=L: generate(ours, p, temperature=0, max_new_tokens=L,
                                                       eos_id=None), repeats).median)
        res["nocache"].append(timed(lambda L=L: greedy_no_cache(ours, p, L), repeats).median)
    logL = np.log(lengths)
    for k in ("cache", "nocache"):
        res[f"b_{k}"] = float(np.polyfit(logL, np.log(res[k]), 1)[0])
        # the exponent over the longest half of the range, where per-step overheads matter least
        res[f"b_{k}_tail"] = float(np.polyfit(logL[-3:], np.log(res[k][-3:]), 1)[0])
    return res


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


def report(rows: list[dict], checks: dict, sc: dict | None, args, n_params: tuple[int, int]) -> str:
    facts = ["platform", "arch", f"{torch.get_num_threads()} torch threads", "python", "torch",
             "transformers"]
    lines = [
        SECTION,
        "",
        command_line("decode_speed.py", facts, argv=args.argv[SECTION]),
        "",
        f"GPT-2 shape: 6 layers, d_model 384, 6 heads, vocabulary 8,192, block_size 512 "
        f"({n_params[0] / 1e6:.1f}M non-embedding parameters, {n_params[1] / 1e6:.1f}M in all), random "
        f"weights copied from an HF `GPT2LMHeadModel` into arlm's `GPT2LM` with `interop.gpt2.from_hf`; "
        f"fp32, CPU. A random {PROMPT_LEN}-token prompt, {args.new} new tokens, [EOS] disabled. "
        f"tokens/s = new tokens of all rows / wall time (beam: of the best hypothesis). Medians of "
        f"{args.repeats} runs after a warm-up, arlm and HF runs alternating (same machine load); "
        f"{torch.get_num_threads()} torch thread(s); load average at the start {format_load(args.load)}. "
        f"arlm \"no cache\" = recompute the prefix each step "
        f"through `log_probs`; HF = `generate(use_cache=False)`. Absolute tokens/s move with the "
        f"machine's load (other jobs shared the 2 cores); the arlm / HF ratios, from alternating "
        f"runs, are the comparable numbers.",
        "",
        "| case | arlm tok/s | HF tok/s | arlm time | HF time | arlm / HF speed |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['case']} | {fmt_rate(r['tokens'] / r['ours'])} | "
                     f"{fmt_rate(r['tokens'] / r['hf'])} | {r['ours']:.3f} s | {r['hf']:.3f} s | "
                     f"{r['hf'] / r['ours']:.2f}× |")
    lines += ["", "Same output as HF (greedy tokens, best beam): "
              + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in checks.items()) + "."]
    if sc is not None:
        lines += [
            "",
            f"Generation time vs length L (arlm greedy, batch 1, {PROMPT_LEN}-token prompt), fitted "
            "T ≈ a·L^b by least squares on log T vs log L:",
            "",
            "| L | " + " | ".join(str(L) for L in sc["L"]) + " | b (all L) | b (3 longest) |",
            "|---" * (len(sc["L"]) + 3) + "|",
            "| KV cache | " + " | ".join(f"{t:.3f} s" for t in sc["cache"])
            + f" | {sc['b_cache']:.2f} | {sc['b_cache_tail']:.2f} |",
            "| no cache | " + " | ".join(f"{t:.3f} s" for t in sc["nocache"])
            + f" | {sc['b_nocache']:.2f} | {sc['b_nocache_tail']:.2f} |",
            "",
            "With the cache each step costs O(d² + t·d) (the attention over t cached positions is a "
            "small part at this size), so T grows ~linearly; without it step t re-runs all t "
            "positions, O(t·d² + t²·d), so T ~ L² once the prefix dominates the prompt.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--new", type=int, default=128, help="new tokens per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="32 tokens, 1 repeat, no file written")
    parser.add_argument("--no-scaling", action="store_true", help="skip the T(L) measurement")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for both systems (1: robust on a shared machine)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--only", choices=("all", "gpt2", "fast"), default="all",
                        help="gpt2: the GPT-2-shape comparison; fast: the trained char Transformer with the "
                             "lean step, speculative decoding, int8 and HF's assisted decoding")
    parser.add_argument("--target-steps", type=int, default=300,
                        help="training steps of the fast case's target")
    parser.add_argument("--target", type=Path, default=None, metavar="CHECKPOINT",
                        help="the fast case's target: a trained arlm Transformer folder on Shakespeare's "
                             "chars (default: train one for --target-steps in the run)")
    parser.add_argument("--fast-new", type=int, default=128, help="new tokens in the fast case")
    args = parser.parse_args()
    if args.quick:
        args.new, args.repeats = 32, 1
    counts = {"--threads": args.threads, "--new": args.new, "--repeats": args.repeats,
              "--target-steps": args.target_steps, "--fast-new": args.fast_new}
    for name, value in counts.items():
        if value < 1:
            print(f"error: {name} must be ≥ 1, got {value}", file=sys.stderr)
            sys.exit(2)
    torch.set_num_threads(args.threads)
    args.load = os.getloadavg()
    args.argv = {SECTION: table_argv(parser, drop=(*OUTPUT_ONLY, *FAST_ONLY)),  # each section's command
                 FAST_SECTION: table_argv(parser, drop=(*OUTPUT_ONLY, *GPT2_ONLY))}
    if args.only in ("all", "fast"):
        try:
            fast_case(args)
        except ArlmError as e:  # a bad --target: one line, exit 2
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
    if args.only == "fast":
        return
    hf, ours = build()
    n_all = sum(p.numel() for p in ours.parameters())
    n_non_emb = n_all - ours.transformer.wte.weight.numel() - ours.transformer.wpe.weight.numel()
    rows, checks = run_cases(hf, ours, args.new, args.repeats)
    sc = None if args.no_scaling or args.quick else scaling(ours, [32, 64, 128, 256], 2)
    section = report(rows, checks, sc, args, (n_non_emb, n_all))
    print(section)
    if not args.quick:
        write_section(args.out, SECTION, section)
        print(f"updated {args.out}", file=sys.stderr)


def fast_case(args) -> None:
    """The trained char Transformer: lean step, speculative decoding, int8, HF assisted (its own section)."""
    from fast_decode_bench import report as fast_report
    from fast_decode_bench import run as fast_run

    steps = 30 if args.quick else args.target_steps
    res = fast_run(args.fast_new if not args.quick else 32, 1 if args.quick else max(args.repeats, 5),
                   steps, max(20, steps // 2), target_path=args.target, threads=args.threads)
    line = command_line("decode_speed.py", ["platform", "python", "torch", "transformers"],
                        argv=args.argv[FAST_SECTION], load=[args.load, os.getloadavg()],
                        note="2 cores shared with other engineers' jobs: absolute tokens/s move with the "
                             "load, the ratios come from alternating runs")
    heading = fast_heading(args.target, args.threads)
    lines = [heading, "", line, "", *fast_report(res)]
    section = "\n".join(lines) + "\n"
    print(section)
    if not args.quick:
        write_section(args.out, heading, section)
        print(f"updated {args.out} ({heading})", file=sys.stderr)


def fast_heading(target: Path | None, threads: int) -> str:
    """The fast case's section: one for the target trained in the run, one for a target loaded with
    ``--target``, each at 1 thread and at any other ``--threads`` (a run replaces only its own)."""
    heading = FAST_SECTION if target is None else TARGET_SECTION
    return heading if threads == 1 else f"{heading}, {threads} threads"


if __name__ == "__main__":
    main()

"""Where the time of CPU batch-1 greedy decoding goes, and what the levers of issue 11 change.

Run by hand on a trained char Transformer (a model folder of `arlm train transformer` on Shakespeare)::

    nice python benchmarks/decode_levers.py --target /work/notes/char-6x384 --out docs/benchmarks.md
    nice python benchmarks/decode_levers.py --target CKPT --threads 2 --compile freezing --out x.md

A run at N ≠ 1 threads writes its own section (the heading ends in ", N threads").

Measured in one process, cases alternating round-robin (medians of ``--repeats`` after a warm-up),
per new token of a 128-token greedy run from the first 120 characters of the test split (as
``decode_speed.py --only fast``):

* HF ``generate`` (greedy) and arlm ``generate`` through the lean step (:class:`FastDecoder`) —
  prefill included, as in the tokens/s of decode_speed.py;
* the lean step alone, in a bare loop (argmax fed back; no ``stream``);
* the weight-reading floor: the step's 6·4 + 1 matrix-vector products over the real weights, and
  nothing else (x (1, C) · Wᵀ views, as the lean step calls them);
* a lean step over *contiguous* Wᵀ copies (the weight-layout lever; not bit-identical);
* with ``--compile OPTIONS``: the static step through ``torch.compile`` (Inductor with its default
  options, ``freezing``, or ``freezing`` + ``cpp_wrapper``; one per run), compile time reported apart;
* the prefill of the prompt (arlm's lean forward, HF's forward with its cache);
* ``stream``'s own overhead per token: a model whose step returns a fixed (1, V) tensor.

Nothing here changes decoding; the section it writes is the evidence for the levers kept or not.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from arlm.decode.fast import FastDecoder
from arlm.decode.search import generate
from arlm.errors import ArlmError
from report import command_line, round_robin, table_argv, timed, write_section

SECTION = "## CPU batch-1 decoding: where the time goes (a trained target)"
NEW = 128
HF_GREEDY, BARE = "HF greedy (generate)", "lean step alone (bare loop)"
NO_GEMV = "lean step, Linear layers returning fixed tensors (no GEMV)"
FLOOR = "GEMV floor (the step's mat-vec products, 4 a layer + the head, nothing between them)"


class _FixedState:
    """The state of :class:`_FixedModel`: nothing, selectable."""

    length = 0

    def select(self, index: torch.Tensor) -> _FixedState:
        return self


class _FixedModel:
    """An ARModel whose every step returns the same log-probs (1, V): ``stream``'s cost alone."""

    device = torch.device("cpu")

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size
        self.logp = torch.log_softmax(torch.randn(1, vocab_size, generator=torch.Generator().manual_seed(0)),
                                      -1)  # (1, V)

    def start(self, batch_size: int) -> _FixedState:
        return _FixedState()

    def step(self, tokens: torch.Tensor, state: _FixedState) -> tuple[torch.Tensor, _FixedState]:
        return self.logp, state


class _ContiguousLean(FastDecoder):
    """The lean step over contiguous Wᵀ (C_in, C_out) copies of the bias-free Linear layers (the
    weight-layout lever: another GEMV memory order, so other last bits)."""

    def __init__(self, model) -> None:
        super().__init__(model)
        for layer, block in zip(self.lean.blocks, model.transformer.h, strict=True):
            for name, mod in (("qkv", block.attn.c_attn), ("attn_out", block.attn.c_proj),
                              ("mlp_in", block.mlp.c_fc), ("mlp_out", block.mlp.c_proj)):
                if mod.bias is not None:
                    raise ArlmError("the contiguous-Wᵀ case takes a bias-free target (bias=false)")
                w_t = mod.weight.detach().t().contiguous()  # (C_in, C_out), row-major
                setattr(layer, name, lambda x, w_t=w_t: torch.mm(x, w_t))


class _NoGemvLean(FastDecoder):
    """The lean step with its four Linear layers returning fixed tensors of their output shapes: what
    the step costs besides reading the weights (not a model: its numbers are meaningless)."""

    def __init__(self, model) -> None:
        super().__init__(model)
        C = model.config.d_model
        for layer in self.lean.blocks:
            qkv, c, fc = torch.zeros(1, 3 * C), torch.zeros(1, C), torch.zeros(1, 4 * C)  # outputs (1, ·)
            layer.qkv, layer.attn_out, layer.mlp_in, layer.mlp_out = map(self._fixed, (qkv, c, fc, c))

    @staticmethod
    def _fixed(out: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """A layer returning ``out`` (1, C_out) for one row (a prefill's rows: zeros of their shape)."""
        return lambda x: out.clone() if len(x) == 1 else out.new_zeros(len(x), out.shape[1])


def measure(args) -> dict:
    """Every case on the target at ``args.threads`` threads (see the module docstring)."""
    from arlm.data.corpora import load_corpus
    from arlm.interop.gpt2 import to_hf
    from fast_decode_bench import load_target

    torch.set_num_threads(args.threads)
    target, tok = load_target(args.target)
    text = "\n".join(load_corpus("shakespeare").lines("test")[:6])[:120]
    prompt = torch.tensor([[tok.sos_id, *tok.encode(text)]])  # (1, Tp)
    hf = to_hf(target, eos_token_id=tok.eos_id, bos_token_id=tok.sos_id).eval()
    hf.generation_config.pad_token_id = tok.pad_id
    hf.generation_config.eos_token_id = None
    lean = FastDecoder(target)
    mask = torch.ones_like(prompt)

    def hf_greedy():
        with torch.inference_mode():
            out = hf.generate(prompt, attention_mask=mask, max_new_tokens=NEW, min_new_tokens=0,
                              do_sample=False, pad_token_id=tok.pad_id, eos_token_id=None)  # (1, Tp+NEW)
            return out[0, prompt.shape[1]:]

    def greedy(model):
        return lambda: generate(model, prompt, temperature=0, max_new_tokens=NEW, eos_id=None).tokens[0]

    def bare(decoder: FastDecoder) -> Callable[[], None]:
        """NEW one-token steps of ``decoder`` with the argmax fed back, after a prefill (not timed)."""
        state = decoder.start(1)
        with torch.inference_mode():
            first = decoder.step(prompt, state)[0]  # (1, V), and the prompt's K, V in the cache

        @torch.inference_mode()
        def run() -> None:
            state.length, logp = prompt.shape[1], first
            for _ in range(NEW):
                logp, _ = decoder.step(logp.argmax(-1, keepdim=True), state)
        return run

    prefill_state = lean.start(1)

    weights = [m.weight.t() for b in target.transformer.h
               for m in (b.attn.c_attn, b.attn.c_proj, b.mlp.c_fc, b.mlp.c_proj)]  # (C_in, C_out) views
    head = target.lm_head.weight.t()  # (C, V)
    x_c, x_4c = torch.randn(1, target.config.d_model), torch.randn(1, weights[3].shape[0])  # (1, C), (1, 4C)

    @torch.inference_mode()
    def floor():  # NEW tokens' worth of the step's matrix-vector products, nothing else
        for _ in range(NEW):
            for i, w in enumerate(weights):
                torch.mm(x_4c if i % 4 == 3 else x_c, w)
            torch.mm(x_c, head)

    @torch.inference_mode()
    def prefill_ours():
        prefill_state.length = 0
        lean.step(prompt, prefill_state)

    @torch.inference_mode()
    def prefill_hf():
        hf(prompt, attention_mask=mask, use_cache=True)

    cases: dict[str, Callable[[], object]] = {
        HF_GREEDY: hf_greedy, "arlm greedy, lean step (generate)": greedy(lean),
        BARE: bare(lean), NO_GEMV: bare(_NoGemvLean(target)), FLOOR: floor,
        "arlm greedy, lean step, contiguous Wᵀ": greedy(_ContiguousLean(target)),
    }
    compile_s: dict[str, float] = {}
    if args.compile is not None:
        import torch._inductor.config as inductor

        options = {"default": {}, "freezing": {"freezing": True},
                   "cpp_wrapper": {"freezing": True, "cpp_wrapper": True}}[args.compile]
        dec = FastDecoder(target, static=True)
        with inductor.patch(options):
            dec.static_step = torch.compile(dec.static_step, fullgraph=True)
            t = time.perf_counter()
            greedy(dec)()  # compiles (one graph: every shape is fixed)
            compile_s[args.compile] = time.perf_counter() - t
            cases[f"static step, torch.compile ({args.compile})"] = greedy(dec)
    load_start = os.getloadavg()
    per_token = {name: r.median / NEW for name, r in round_robin(cases, args.repeats).items()}
    prefill = {name: r.median for name, r in round_robin({"arlm": prefill_ours, "HF": prefill_hf},
                                                         args.repeats).items()}
    fixed = _FixedModel(target.vocab_size)
    loop = timed(lambda: generate(fixed, prompt, temperature=0, max_new_tokens=256, eos_id=None),
                 args.repeats).median / 256
    same = {name: bool(torch.equal(torch.as_tensor(f()), hf_greedy()))
            for name, f in cases.items() if "greedy" in name or "compile" in name}
    return dict(per_token=per_token, prefill=prefill, loop=loop, same=same, compile_s=compile_s,
                load=(load_start, os.getloadavg()), prompt_len=prompt.shape[1],
                params=target.num_parameters(),
                weight_mb=sum(w.numel() for w in [*weights, head]) * 4 / 1e6)


def heading(threads: int) -> str:
    """The section's heading: one per thread count (a 2-thread run does not replace the 1-thread table)."""
    return SECTION if threads == 1 else f"{SECTION}, {threads} threads"


def report(res: dict, args, argv: list[str]) -> str:
    """The section: command (``argv``: the arguments shown), machine, load, the per-token table, prefill and
    loop overhead."""
    pt, hf = res["per_token"], res["per_token"][HF_GREEDY]
    lines = [
        heading(args.threads), "",
        command_line("decode_levers.py", ["platform", "python", "torch", "transformers"], argv=argv,
                     more=[f"{args.threads} torch thread(s)"], load=res["load"],
                     note="2 cores shared with other jobs"), "",
        f"Target `{args.target}` ({res['params'] / 1e6:.2f}M parameters: {res['weight_mb']:.1f} MB of fp32 "
        f"weights read per token). Greedy, batch 1, {NEW} new tokens after a {res['prompt_len']}-token "
        f"prompt; ms per new token, medians of {args.repeats} runs, cases alternating round-robin.", "",
        "| case | ms / token | HF / case | same tokens as HF greedy |",
        "|---|---|---|---|",
    ]
    for name, s in pt.items():
        same = {True: "yes", False: "NO"}.get(res["same"].get(name), "-")
        lines.append(f"| {name} | {s * 1e3:.3f} | {hf / s:.2f}× | {same} |")
    step, rest, gemv = pt[BARE], pt[NO_GEMV], pt[FLOOR]
    lines += ["", f"2× HF greedy needs ≤ {hf / 2 * 1e3:.3f} ms a token (prefill included). The lean step "
              f"alone takes {step * 1e3:.3f} ms: without its GEMVs {rest * 1e3:.3f} ms (the layer norms, "
              f"attention, K/V writes, GELU, residuals, the head, their dispatch and Python), so its GEMVs "
              f"cost ~{(step - rest) * 1e3:.3f} ms where, back to back with nothing between them, the same "
              f"products take {gemv * 1e3:.3f} ms ({res['weight_mb'] / gemv / 1e3:.0f} GB/s)."]
    pre = res["prefill"]
    lines += ["", f"Prefill of the {res['prompt_len']}-token prompt: arlm {pre['arlm'] * 1e3:.1f} ms, "
              f"HF {pre['HF'] * 1e3:.1f} ms. `stream`'s own cost (a model whose step returns a "
              f"fixed tensor, 256 tokens): {res['loop'] * 1e6:.1f} µs a token."]
    if res["compile_s"]:
        lines += ["", "Compile time (the first greedy run through the compiled step): "
                  + ", ".join(f"{k} {v:.1f} s" for k, v in res["compile_s"].items()) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", type=Path, required=True, metavar="CHECKPOINT",
                        help="a trained arlm Transformer folder on Shakespeare's chars (bias=false)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for every case")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--compile", choices=("default", "freezing", "cpp_wrapper"), default=None,
                        help="also time the static step through torch.compile with these Inductor options "
                             "(cpp_wrapper: with freezing; tens of seconds to compile)")
    parser.add_argument("--out", type=Path, default=None, help="write the section into this Markdown file")
    args = parser.parse_args()
    if args.threads < 1 or args.repeats < 1:
        print(f"error: --threads and --repeats must be ≥ 1, got {args.threads} and {args.repeats}",
              file=sys.stderr)
        sys.exit(2)
    try:
        res = measure(args)
    except ArlmError as e:  # a bad --target: one line, exit 2
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    section = report(res, args, table_argv(parser))
    print(section)
    if args.out is not None:
        write_section(args.out, heading(args.threads), section)
        print(f"updated {args.out} ({heading(args.threads)})", file=sys.stderr)


if __name__ == "__main__":
    main()

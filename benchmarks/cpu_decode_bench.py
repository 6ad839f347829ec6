"""CPU batch-1 greedy decoding as ``arlm generate`` does it, against HF ``generate``, on 1 thread (issue 24).

Two random-weight 6 × 384 targets of vocabulary 97, each against HF ``GPT2LMHeadModel.generate`` on the
same function, in one process::

    nice python benchmarks/cpu_decode_bench.py --out docs/benchmarks.md

* ``gpt2``: an HF ``GPT2LMHeadModel`` (biases, tanh GELU, untied nothing) imported with
  ``interop.gpt2.from_hf`` — arlm's ``GPT2LM``;
* ``transformer``: arlm's own ``TransformerLM`` (bias=false, as nanoGPT trains it) exported to HF with
  ``interop.gpt2.to_hf`` (zero biases: the same function).

For each target, cases alternate round-robin (medians of ``--repeats`` after a warm-up), ms per new
token of a ``--new``-token greedy run after a 121-token random prompt, prefill included, [EOS] off:

* HF ``generate`` (greedy);
* arlm as ``arlm generate`` decodes: :func:`arlm.usecases.decoding.decode` (``fast_decoder``: the
  lean step, its one-row products by numpy's ``einsum`` over row-major Wᵀ copies on a CPU, then
  :func:`~arlm.decode.search.generate`; one new token's attention over the cache in numpy) with a
  per-token callback as the CLI's streaming has;
* the same lean step with its one-row products by numpy's BLAS (OpenBLAS ``sgemv``) instead of
  ``einsum`` (the step before that lever);
* the same lean step with one new token's attention by torch's SDPA instead of numpy's (the step
  before this lever);
* the lean step with its products in torch (MKL) over row-major Wᵀ (issue 24's first lever), and over
  views of W (the layout before issue 24): the GEMV levers one at a time;
* arlm's modules (``fast=False``);
* the lean step alone in a bare loop (argmax fed back; no prefill, no ``stream``), and the same with
  its blocks' products replaced by fixed outputs (what the step costs besides its GEMVs);
* the GEMV floors: the step's 4 · 6 + 1 matrix-vector products and nothing else, through numpy's
  ``einsum`` and numpy's BLAS over row-major Wᵀ, through torch over row-major Wᵀ and over the views of
  W, and through MKL's packed linear (where torch has MKL);
* the step's products for 2, 5 and 9 rows at once through numpy's BLAS (what the lean step calls for
  several rows): what a speculative verification of 1, 4 or 8 proposals costs in products, against a
  plain step's one row through ``einsum`` (its ratio bounds what any draft can give: m tokens for that
  cost);
* the same bytes read by ``sum`` (the pace of the memory, with no GEMV).

Every arlm greedy case is checked to give HF's tokens. The load average is recorded at the start and the
end: on a machine shared with other jobs absolute times move with the load, the ratios from alternating
runs are the comparable numbers.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from arlm.decode.config import DecodingConfig
from arlm.decode.fast import FastDecoder
from arlm.interop.gpt2 import from_hf, to_hf
from arlm.models.numpy_gemv import last_level_cache_bytes, one_blas_thread
from arlm.models.transformer import LeanTransformer, TransformerConfig, TransformerLM
from arlm.usecases.decoding import decode
from report import command_line, round_robin, table_argv, write_section

SECTION = "## CPU batch-1 decoding: arlm generate against HF generate"
SHAPE = dict(vocab_size=97, block_size=512, n_layer=6, n_head=6, d_model=384)
PROMPT_LEN = 121  # [SOS]-less random prompt of 121 ids (as the 120 characters + [SOS] of decode_levers.py)
HF_CASE = "HF greedy (generate)"
ARLM_CASE = ("arlm greedy as `arlm generate` (decode: lean step, numpy's einsum over row-major Wᵀ, "
             "one token's attention in numpy)")
BLAS_CASE = "arlm greedy, lean step, its one-row products by numpy's BLAS (`sgemv`; before this change)"
SDPA_CASE = "arlm greedy, lean step, one token's attention by SDPA (the step before the numpy attention)"
WITHOUT_PRODUCTS = "lean step alone, its 24 block products replaced by fixed outputs (all but the GEMVs)"
FLOOR_EINSUM = ("GEMV floor, numpy's einsum over row-major Wᵀ (the step's 25 mat-vec products, nothing "
                "between them, by the kernel the lean step calls)")
FLOOR_NUMPY = "GEMV floor, numpy's BLAS (OpenBLAS `sgemv`) over row-major Wᵀ"
FLOOR_ROW_MAJOR = "GEMV floor, torch (MKL) over row-major Wᵀ"
FLOOR_VIEW = "GEMV floor, torch (MKL) over Wᵀ as a view of W"
FLOOR_PACKED = "GEMV floor, MKL's packed linear (`torch.ops.mkl._mkl_linear`, what Inductor's freezing uses)"
VERIFY_ROWS = (2, 5, 9)  # a speculative verification's rows: the token + k = 1, 4, 8 proposals


def verify_floor(m: int) -> str:
    return (f"the same products for {m} rows at once (a speculative verification of {m - 1} "
            f"proposal{'s' if m > 2 else ''}), numpy's BLAS")


STREAM = "the same bytes streamed by `sum` (one flat copy of the weights: the memory's pace, no GEMV)"
RATE_NAMES = {FLOOR_EINSUM: "numpy's einsum", FLOOR_NUMPY: "numpy's BLAS",
              FLOOR_ROW_MAJOR: "torch over row-major Wᵀ", FLOOR_VIEW: "torch over the views",
              FLOOR_PACKED: "MKL's packed linear", STREAM: "`sum`"}


class _TorchGemv(FastDecoder):
    """The lean step with its products in torch (MKL) over ``gemv`` = "view" (views of W, the layout
    before issue 24) or "row_major" (row-major Wᵀ copies, issue 24's first lever); the same numbers up to
    the GEMV's order of sums."""

    def __init__(self, model: TransformerLM, gemv: str) -> None:
        super().__init__(model)
        self.numpy_gemv = False
        self.lean = LeanTransformer(model, gemv=gemv)
        head_t, mask = model.lm_head.weight.detach().t(), self.head_mask  # (C, V), (V,)
        self.head = lambda x: torch.addmm(mask, x, head_t)


class _SdpaAttention(FastDecoder):
    """The lean step with one new token's attention by torch's SDPA instead of numpy's."""

    def __init__(self, model: TransformerLM) -> None:
        super().__init__(model)
        self.numpy_attention = False


def without_products(decoder: FastDecoder) -> FastDecoder:
    """``decoder`` with each block's four products replaced, for one-row inputs, by a fixed output (the
    first one it computed): what the step costs besides its GEMVs (a prefill still multiplies)."""
    for block in decoder.lean.blocks:
        for name in ("qkv", "attn_out", "mlp_in", "mlp_out"):
            product, fixed = getattr(block, name), []

            def stand_in(x: torch.Tensor, product=product, fixed=fixed) -> torch.Tensor:
                if x.shape[0] != 1:
                    return product(x)
                if not fixed:
                    fixed.append(product(x))
                return fixed[0].clone()
            setattr(block, name, stand_in)
    return decoder


def targets(seed: int) -> dict[str, tuple[TransformerLM, torch.nn.Module, str]]:
    """name -> (arlm model, HF model on the same function, description), random weights from ``seed``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=SHAPE["vocab_size"], n_positions=SHAPE["block_size"], n_embd=SHAPE["d_model"],
                     n_layer=SHAPE["n_layer"], n_head=SHAPE["n_head"], bos_token_id=0, eos_token_id=0)
    hf_gpt2 = GPT2LMHeadModel(cfg).eval()
    gpt2 = from_hf(hf_gpt2).eval()
    torch.manual_seed(seed)
    own = TransformerLM(TransformerConfig(**SHAPE, bias=False)).eval()
    hf_own = to_hf(own, eos_token_id=0, bos_token_id=0).eval()
    return {"gpt2": (gpt2, hf_gpt2, "HF GPT2LMHeadModel (biases) imported with from_hf"),
            "transformer": (own, hf_own, "arlm TransformerLM, bias=false, exported with to_hf")}


def measure(model: TransformerLM, hf: torch.nn.Module, new: int, repeats: int, seed: int) -> dict:
    """Every case on one target (see the module docstring) -> per-token medians, same-token checks."""
    prompt = torch.randint(2, SHAPE["vocab_size"], (1, PROMPT_LEN),
                           generator=torch.Generator().manual_seed(seed))  # (1, Tp)
    ids = prompt[0].tolist()
    mask = torch.ones_like(prompt)
    config = DecodingConfig(temperature=0.0, max_new_tokens=new)
    tokenizer = SimpleNamespace(eos_id=None, sos_id=0, pad_id=0, decode=None)  # what decode() reads
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0

    def hf_greedy() -> list[int]:
        with torch.inference_mode():
            out = hf.generate(prompt, attention_mask=mask, max_new_tokens=new, min_new_tokens=new,
                              do_sample=False, pad_token_id=0, eos_token_id=None)  # (1, Tp + new)
        return out[0, PROMPT_LEN:].tolist()

    def as_arlm_generate(fast: bool) -> Callable[[], list[int]]:
        def run() -> list[int]:
            got: list[int] = []
            result = decode(model, tokenizer, ids, config, fast=fast,
                            on_token=lambda step: got.extend(step.tokens.tolist()))
            assert result.rows()[0] == got
            return got
        return run

    def greedy_with(decoder: FastDecoder) -> Callable[[], list[int]]:
        from arlm.decode.search import generate

        return lambda: generate(decoder, prompt, config, eos_id=None).rows()[0]

    def bare(decoder: FastDecoder) -> Callable[[], None]:
        state = decoder.start(1)
        with torch.inference_mode():
            first = decoder.step(prompt, state)[0]  # (1, V), the prompt's K, V in the cache

        @torch.inference_mode()
        def run() -> None:
            state.length, logp = PROMPT_LEN, first
            for _ in range(new):
                logp, _ = decoder.step(logp.argmax(-1, keepdim=True), state)
        return run

    linears = [m for b in model.transformer.h
               for m in (b.attn.c_attn, b.attn.c_proj, b.mlp.c_fc, b.mlp.c_proj)]
    views = [m.weight.detach().t() for m in linears]  # (C_in, C_out) views of W (C_out, C_in)
    row_major = [w.contiguous() for w in views]  # (C_in, C_out), row-major
    head = model.lm_head.weight.detach().t()  # (C, V)
    inputs = [torch.randn(1, w.shape[0]) for w in views]  # (1, C_in) each

    def floor(weights: list[torch.Tensor]) -> Callable[[], None]:
        @torch.inference_mode()
        def run() -> None:
            for _ in range(new):
                for x, w in zip(inputs, weights, strict=True):
                    torch.mm(x, w)
                torch.mm(inputs[0], head)
        return run

    numpy_weights = [w.numpy() for w in [*row_major, head]]
    numpy_inputs = [x.numpy() for x in [*inputs, inputs[0]]]

    numpy_vectors = [x[0] for x in numpy_inputs]  # (C_in,) each

    def floor_einsum() -> None:
        for _ in range(new):
            for x, w in zip(numpy_vectors, numpy_weights, strict=True):
                np.einsum("k,kn->n", x, w)

    def floor_numpy(inputs: list[np.ndarray] = numpy_inputs) -> None:
        one_blas_thread()
        for _ in range(new):
            for x, w in zip(inputs, numpy_weights, strict=True):
                np.dot(x, w)

    def floor_numpy_rows(m: int) -> Callable[[], None]:
        rows = [np.repeat(x, m, axis=0) for x in numpy_inputs]  # (m, C_in) each
        return lambda: floor_numpy(rows)

    packed = [(torch.ops.mkl._mkl_reorder_linear_weight(m.weight.detach(), 1), m.weight.detach())
              for m in [*linears, model.lm_head]]  # MKL's packed form of W (C_out, C_in), batch 1
    packed_inputs = [*inputs, inputs[0]]

    @torch.inference_mode()
    def floor_packed() -> None:
        for _ in range(new):
            for x, (w_packed, w) in zip(packed_inputs, packed, strict=True):
                torch.ops.mkl._mkl_linear(x, w_packed, w, None, 1)

    flat = torch.cat([w.reshape(-1) for w in [*views, head]])  # every weight once, contiguous

    @torch.inference_mode()
    def stream() -> None:
        for _ in range(new):
            flat.sum()

    cases: dict[str, Callable[[], object]] = {
        HF_CASE: hf_greedy,
        ARLM_CASE: as_arlm_generate(True),
        "arlm greedy, lean step in torch (MKL) over row-major Wᵀ":
            greedy_with(_TorchGemv(model, "row_major")),
        "arlm greedy, lean step in torch (MKL) over views of W (before issue 24)":
            greedy_with(_TorchGemv(model, "view")),
        BLAS_CASE: greedy_with(FastDecoder(model, one_row="blas")),
        SDPA_CASE: greedy_with(_SdpaAttention(model)),
        "arlm greedy, modules (`--no-fast`)": as_arlm_generate(False),
        "lean step alone (bare loop)": bare(FastDecoder(model)),
        WITHOUT_PRODUCTS: bare(without_products(FastDecoder(model))),
        FLOOR_EINSUM: floor_einsum,
        FLOOR_NUMPY: floor_numpy,
        **{verify_floor(m): floor_numpy_rows(m) for m in VERIFY_ROWS},
        FLOOR_ROW_MAJOR: floor(row_major),
        FLOOR_VIEW: floor(views),
    }
    if torch.backends.mkl.is_available():
        cases[FLOOR_PACKED] = floor_packed
    cases[STREAM] = stream
    runs = round_robin(cases, repeats)
    reference = runs[HF_CASE].last
    same = {name: r.last == reference for name, r in runs.items() if name.startswith("arlm")}
    return {"per_token": {name: r.median / new for name, r in runs.items()}, "same": same,
            "weight_mb": flat.numel() * flat.element_size() / 1e6, "one_row": FastDecoder(model).one_row}


def report(results: dict, descriptions: dict, args, argv: list[str], load: tuple) -> str:
    """The section: command, machine, load, one table per target, the ratio against HF stated."""
    lines = [SECTION, "",
             command_line("cpu_decode_bench.py", ["platform", "python", "torch", "transformers"], argv=argv,
                          more=["1 torch thread for every system"], load=load,
                          note="2 cores shared with other jobs: absolute times move with the load, the "
                               "ratios come from alternating runs"), "",
             f"Random weights (seed {args.seed}), {SHAPE['n_layer']} layers × {SHAPE['n_head']} heads × "
             f"{SHAPE['d_model']}, vocabulary {SHAPE['vocab_size']}, block {SHAPE['block_size']}; greedy, "
             f"batch 1, {args.new} new tokens after a {PROMPT_LEN}-token random prompt, [EOS] off, prefill "
             "included; ms per "
             f"new token, medians of {args.repeats} runs, the cases of a target alternating round-robin. "
             "\"HF / case\": HF's time over the case's (above 1: faster than HF).", ""]
    for name, res in results.items():
        pt, hf = res["per_token"], res["per_token"][HF_CASE]
        lines += [f"Target `{name}`: {descriptions[name]}.", "",
                  "| case | ms / token | HF / case | same tokens as HF greedy |", "|---|---|---|---|"]
        for case, s in pt.items():
            same = {True: "yes", False: "NO"}.get(res["same"].get(case), "-")
            lines.append(f"| {case} | {s * 1e3:.3f} | {hf / s:.2f}× | {same} |")
        rates = ", ".join(f"{short} {res['weight_mb'] / pt[case] / 1e3:.1f} GB/s"
                          for case, short in RATE_NAMES.items() if case in pt)
        cache_mib = last_level_cache_bytes() / 2**20
        lines += ["", f"The weights read per token: {res['weight_mb']:.1f} MB; read at {rates}. The lean "
                  f"step's one-row kernel on this machine (last-level cache {cache_mib:.0f} MiB): "
                  f"{res['one_row']}.", ""]
    ratios = ", ".join(f"{name} {r['per_token'][HF_CASE] / r['per_token'][ARLM_CASE]:.2f}×"
                       for name, r in results.items())
    floors = ", ".join(f"{name} {r['per_token'][HF_CASE] / r['per_token'][FLOOR_EINSUM]:.2f}×"
                       for name, r in results.items())
    verify = "; ".join(f"{name}: " + ", ".join(
        f"{m} rows {r['per_token'][verify_floor(m)] / r['per_token'][FLOOR_EINSUM]:.2f}×"
        for m in VERIFY_ROWS) for name, r in results.items())
    lines += [f"arlm generate against HF generate: {ratios} (the issue's aim: ≥ 2×). HF's time over the "
              f"GEMV floor of the kernel arlm calls (numpy's einsum over row-major Wᵀ) alone: "
              f"{floors}. The products of m rows at once (numpy's BLAS), over those of one row (einsum): "
              f"what a speculative verification pass costs in products, against a plain step: "
              f"{verify}; a draft that is always right can speed decoding up by at most m / that ratio."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--new", type=int, default=128, help="new tokens per run")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the section into this Markdown file")
    args = parser.parse_args()
    if args.new < 1 or args.repeats < 1:
        print(f"error: --new and --repeats must be ≥ 1, got {args.new} and {args.repeats}", file=sys.stderr)
        sys.exit(2)
    torch.set_num_threads(1)
    load_start = os.getloadavg()
    results, descriptions = {}, {}
    for name, (model, hf, description) in targets(args.seed).items():
        descriptions[name] = description
        results[name] = measure(model, hf, args.new, args.repeats, args.seed)
    section = report(results, descriptions, args, table_argv(parser), (load_start, os.getloadavg()))
    print(section)
    if args.out is not None:
        write_section(args.out, SECTION, section)
        print(f"updated {args.out} ({SECTION})", file=sys.stderr)


if __name__ == "__main__":
    main()

"""Fast incremental decoding of a Transformer: a lean one-token step, and that step captured as a CUDA graph.

Decoding one token at batch size 1 does little arithmetic per weight read: 2 FLOPs per parameter.
A 6-layer × 384 Transformer has ~10.6M parameters, so one step is ~21 MFLOPs, a fraction of a
millisecond of matmul on one CPU core — and what is left is *overhead*: ~16 ``nn.Module`` calls,
~60 small tensor ops and their Python per layer, (B, 1, C) shapes reshaped back and forth. On a GPU
each of those ops is a kernel launch of a few microseconds, and the launches, not the arithmetic,
set the pace. :class:`FastDecoder` removes what it can, in two ways:

* **The lean step** (every device; the default): the same computation as
  :meth:`~arlm.models.transformer.TransformerLM.step` through the model's lean forward
  (:class:`~arlm.models.transformer.LeanTransformer`: the blocks over weights fetched once, no module
  calls, no dropout), with the attention written here: no mask for one new token (it attends to every
  cached key), the head applied to the last position only (``step``) or to every new one
  (``step_all``, a speculative verifier's pass), the head's [PAD]/[SOS] mask added as a fixed (V,)
  vector. It writes into the same preallocated :class:`~arlm.models.transformer.KVCache`, so
  ``select`` (beam search, finished rows) and ``crop`` (rejected draft tokens) are the cache's own.
  On a CPU (fp32) its matrix-vector products go through numpy (:mod:`arlm.models.numpy_gemv`: OpenBLAS's
  ``sgemv`` while the weights fit the CPU's cache, numpy's ``einsum`` loop once they stream from
  memory) over row-major copies of Wᵀ (C_in, C_out), HF GPT-2's ``Conv1D`` layout, made once per
  weight (:func:`~arlm.models.transformer.row_major_t`): on this project's CPUs either reads the
  weights faster than torch's (MKL's) GEMV, over either layout; and one new token's
  attention over the cache is numpy's too (:meth:`FastDecoder._one_token_attention`), not SDPA's,
  for models at least ``NUMPY_ATTENTION_MIN_WIDTH`` wide.
  Every :class:`~arlm.models.transformer.TransformerLM` takes it (GPT-2; σ-GPT read left to right,
  its second position table added as its own ``_run`` adds it).
* **The static step** (``static=True``; captured with CUDA graphs when ``cuda_graphs=True``): the
  same lean forward with another attention, of *static shapes*: the position is a tensor, the new
  key and value are written with ``index_copy_`` at that position, and the query attends to the
  whole preallocated cache, positions > the current one masked:

      A = softmax(q Kᵀ / √D + M),    M_j = 0 if j ≤ pos, -inf otherwise    (over all block_size keys)

  written out as two batched mat-vec products and a softmax: for one query, fp32 SDPA with a mask
  chose a memory-efficient kernel that cost more than all the step's matmuls on an H100
  (docs/benchmarks.md, "GPU: batch-1 decoding").
  Nothing in it depends on a Python value, so ``torch.cuda.graph`` records its kernels once per
  batch size and each later step is one graph replay: the launches of ~100 kernels become one.
  (The captured graph reads its inputs from fixed buffers — the token, the position and the cache —
  so the decoder owns one cache per batch size and copies a foreign cache into it when needed,
  e.g. after beam search's ``select``.) On a CPU the static step runs eagerly, which is how it is
  tested here; it pays for attending to the empty tail of the cache, so the lean step is faster.

Both give the tokens of the model's own ``step``: the same weights, the same operations on the same
numbers, up to the order of floating-point sums inside kernels (tests compare log-probs to 1e-5
and greedy tokens exactly). int8 weights (:func:`arlm.models.quantize.quantize_int8`) work
in the lean step: a quantized ``Linear`` is called as the module it has become.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from arlm.errors import ConfigError
from arlm.models.numpy_gemv import (
    ONE_ROW_KERNELS,
    numpy_rows_linear,
    one_blas_thread,
    parameter_bytes,
    weights_stream,
)
from arlm.models.transformer import KVCache, LeanTransformer, TransformerLM, causal_mask, rows_linear

_KEPT_MASK_T = 16  # _causal_mask keeps a buffer for t ≤ this many new tokens (draft lengths + 1)
# The width (d_model) from which one new token attends in numpy rather than through SDPA on a CPU. Whole
# decodes alternating the two (AVX2 EPYC, 1 thread, 121 + 128 tokens; ratio SDPA / numpy, median of
# 21–41 rounds; benchmarks/attention_width_bench.py): 6 × 384 1.02–1.04 (and 1.85× → 1.92×, 1.90× →
# 2.01× HF in cpu_decode_bench.py), 4 × 384 1.03–1.04, 6 × 256 1.00–1.01, 4 × 256 0.98–1.01 (the two
# runs disagree), 2 × 128 0.95–0.96 (numpy slower). The gain is clear from 384; 256 is a coin toss.
NUMPY_ATTENTION_MIN_WIDTH = 256


def split_heads(qkv: Tensor, batch_size: int, n_head: int) -> tuple[Tensor, ...]:
    """Q, K, V side by side, (B·t, 3C) rows -> q, k, v, each (B, nh, t, hs) (views; one new token
    per row needs no transpose, and every op saved counts at batch 1)."""
    rows, three_c = qkv.shape
    t, head_dim = rows // batch_size, three_c // (3 * n_head)
    if t == 1:
        return qkv.view(batch_size, 3, n_head, 1, head_dim).unbind(1)
    return qkv.view(batch_size, t, 3, n_head, head_dim).permute(2, 0, 3, 1, 4).unbind(0)


class FastDecoder:
    """A :class:`~arlm.models.transformer.TransformerLM` (GPT-2, σ-GPT read left to right) as an ARModel
    whose one-token steps take the lean (or static / CUDA-graph) path; everything else is the model's own.

    >>> fast = FastDecoder(model)                       # the lean step, exact
    >>> generate(fast, prompt, temperature=0)           # same tokens as generate(model, …)
    >>> FastDecoder(model.cuda(), cuda_graphs=True)     # one graph replay per token on a GPU

    The model must be in eval mode (no dropout) and its weights must not change while the decoder is
    used (the weights are fetched once; a CUDA graph also bakes in their addresses).
    """

    def __init__(self, model: TransformerLM, static: bool = False, cuda_graphs: bool = False,
                 one_row: str | None = None) -> None:
        """``one_row``: the kernel of a CPU fp32 step's one-row products, "blas" (numpy's ``dot``) or
        "einsum"; None (the default) chooses by where the weights are (:mod:`arlm.models.numpy_gemv`)."""
        if not isinstance(model, TransformerLM):
            raise ConfigError(f"FastDecoder takes a Transformer (GPT-2, σ-GPT) model, not a "
                              f"{type(model).__name__}; decode other families directly")
        if model.config.attention != "sdpa" or not model.config.causal:
            raise ConfigError("FastDecoder computes causal SDPA attention; use the model itself for "
                              "attention='explicit' or causal=False")
        device = model.device
        if cuda_graphs and device.type != "cuda":
            raise ConfigError(f"CUDA graphs need the model on a CUDA device, not {device.type}; move it "
                              "with model.cuda() or leave cuda_graphs off")
        self.model = model.eval()
        self.config = model.config
        self.static = static or cuda_graphs
        self.cuda_graphs = cuda_graphs
        # the model's forward without module calls; on a CPU in fp32 its products go through numpy's
        # BLAS over row-major Wᵀ copies (a faster GEMV there, see rows_linear), elsewhere through torch
        # over views of the weights
        self.numpy_gemv = device.type == "cpu" and model.transformer.wte.weight.dtype == torch.float32
        # one row by numpy's einsum loop instead of BLAS's sgemv where the weights stream from memory
        # (too large for the CPU's cache: sgemv streams them below the memory's pace; numpy_gemv);
        # None off the numpy path
        if one_row is not None and one_row not in ONE_ROW_KERNELS:
            raise ConfigError(f"one_row must be one of {', '.join(ONE_ROW_KERNELS)} or None (chosen by the "
                              f"weights' size against the CPU's cache), not {one_row!r}")
        if one_row is None and self.numpy_gemv:
            one_row = "einsum" if weights_stream(parameter_bytes(model)) else "blas"
        self.one_row = one_row if self.numpy_gemv else None
        gemv = {"blas": "numpy", "einsum": "einsum", None: "view"}[self.one_row]
        self.lean = LeanTransformer(model, gemv=gemv)
        # one new token's attention over the cache in numpy there too (_one_token_attention), for models
        # at least NUMPY_ATTENTION_MIN_WIDTH wide; else SDPA
        self.numpy_attention = self.numpy_gemv and model.config.d_model >= NUMPY_ATTENTION_MIN_WIDTH
        if getattr(type(model), "step_all", None) is None:  # σ-GPT: verified one token at a time
            self.step_all = None  # type: ignore[assignment]
        # the head as lm_head plus a fixed (V,) mask, 0 or -inf: the family's head() (which masks
        # [PAD] and [SOS], or nothing for GPT-2) without building an index tensor per step — which
        # a CUDA graph could not capture (a host-to-device copy)
        with torch.inference_mode():
            zero = torch.zeros(1, model.config.d_model, device=device, dtype=self.lean.wte.dtype)
            self.head_mask = (model.head(zero) - model.lm_head(zero))[0].float()  # (V,)
        head = model.lm_head
        if type(head) is nn.Linear and head.bias is None and head.weight.dtype == torch.float32:
            # logits + mask in one kernel, addmm(M, x, Eᵀ) (M is 0 or -inf, so adding it inside the
            # kernel or after gives the same numbers)
            head_t, mask = head.weight.t(), self.head_mask  # (C, V), (V,)
            if self.numpy_gemv:  # Eᵀ as the transposed view of E (V, C): numpy hands BLAS the flag
                self.head: Callable[[Tensor], Tensor] = numpy_rows_linear(head_t, mask, self.one_row)
            else:
                self.head = lambda x: torch.addmm(mask, x, head_t)
        else:
            lm_head = rows_linear(head)
            self.head = lambda x: lm_head(x).float() + self.head_mask
        self._device = device
        self._positions = torch.arange(model.config.block_size, device=device)  # positions to write
        self._steps: dict[int, _StaticStep] = {}  # batch size -> its static (captured) step
        # t -> ((t, block_size) mask buffer, its causal (t, t) block, [where the block is]): _causal_mask
        self._masks: dict[int, tuple[Tensor, Tensor, list[int]]] = {}

    # ----- the ARModel interface ---------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self.model.vocab_size

    @property
    def device(self) -> torch.device:
        return self.model.device

    def log_probs(self, tokens: Tensor) -> Tensor:
        return self.model.log_probs(tokens)

    def score(self, tokens: Tensor) -> Tensor:
        return self.model.score(tokens)

    def start(self, batch_size: int) -> KVCache:
        """An empty cache (with CUDA graphs: the decoder's own static cache for this batch size)."""
        if self.static:
            return self._static(batch_size).start()
        return self.model.start(batch_size)

    @torch.inference_mode()
    def step_all(self, tokens: Tensor, state: KVCache) -> tuple[Tensor, KVCache]:
        """tokens (B, t) -> the log-probs after every one of them (B, t, V), by the lean path (what a
        speculative verifier calls: the context's new tokens plus the draft's proposals)."""
        tokens = self._check(tokens, state)
        x = self.lean_forward(tokens, state)  # (B·t, C)
        state.advance(tokens.shape[1])
        return self.log_softmax_head(x).view(*tokens.shape, -1), state  # (B, t, V)

    def _check(self, tokens: Tensor, state: KVCache) -> Tensor:
        if not (type(tokens) is Tensor and tokens.dtype == torch.long and tokens.dim() == 2
                and tokens.device == self._device):  # (the common case checked without new tensors)
            tokens = self.model._tokens(tokens)
        if tokens.shape[0] != state.k.shape[1]:
            raise ConfigError(f"step got {tokens.shape[0]} rows but the cache holds {state.batch_size}; "
                              "select the cache rows first")
        if state.length + tokens.shape[1] > self.config.block_size:
            raise ConfigError(f"the sequence would be {state.length + tokens.shape[1]} tokens long but the "
                              f"model's block_size is {self.config.block_size}; crop the context")
        return tokens

    def step(self, tokens: Tensor, state: KVCache) -> tuple[Tensor, KVCache]:
        """tokens (B, t) -> (log p(next | all fed so far) (B, V), the cache updated in place).

        The lean path for any t (a prefill too); with ``static`` / ``cuda_graphs`` the one-token steps
        take the static (captured) step and a prefill the lean path. Runs in inference mode (entered
        here only when the caller is not in it already: the decoding loops are)."""
        if not torch.is_inference_mode_enabled():
            with torch.inference_mode():
                return self.step(tokens, state)
        tokens = self._check(tokens, state)
        B, t = tokens.shape
        if t == 1 and self.static:
            logp = self._static(B).step(tokens, state)
        else:
            x = self.lean_forward(tokens, state)  # (B·t, C)
            x = x if t == 1 else x.view(B, t, -1)[:, -1]  # (B, C): the head on the last position only
            logp = self.log_softmax_head(x)  # (B, V)
        state.advance(t)
        return logp, state

    # ----- the lean forward with two attentions: over the filled cache, or static over the whole block ----

    def log_softmax_head(self, x: Tensor) -> Tensor:
        """(N, C) final hidden states -> log-softmax of the family's logits (N, V), in fp32."""
        return F.log_softmax(self.head(x), dim=-1)

    def lean_forward(self, tokens: Tensor, cache: KVCache) -> Tensor:
        """tokens (B, t) at positions L..L+t-1 (L = cache.length) -> final hidden states LN_f(z) (B·t, C).

        Writes K, V of the new positions into the cache (does not advance it): one ``index_copy_``
        each into the cache's per-layer views. One new token attends to every cached key with no
        mask; t > 1 new tokens (a prefill, a speculative verification) with the causal mask shifted by L."""
        (B, t), nh = tokens.shape, self.config.n_head
        L, end = cache.length, cache.length + t
        if self.numpy_gemv:
            one_blas_thread()
        positions = self._positions[L:end]  # (t,) the positions to write
        if t == 1 and self.numpy_attention:
            return self.lean(tokens, positions, self._one_token_attention(cache, B))
        mask = None if t == 1 else self._causal_mask(t, L)  # (t, L+t)
        layers = cache.layers()

        def attend(layer: int, qkv: Tensor) -> Tensor:  # (B·t, 3C) -> (B·t, C)
            q, k, v = split_heads(qkv, B, nh)  # 3 x (B, nh, t, hs)
            k_cache, v_cache = layers[layer]  # (B, nh, block, hs)
            k_cache.index_copy_(2, positions, k)
            v_cache.index_copy_(2, positions, v)
            y = F.scaled_dot_product_attention(q, k_cache[:, :, :end], v_cache[:, :, :end],
                                               attn_mask=mask)  # (B, nh, t, hs)
            return y.view(B, -1) if t == 1 else y.transpose(1, 2).reshape(B * t, -1)  # heads side by side

        return self.lean(tokens, positions, attend)

    def _one_token_attention(self, cache: KVCache, B: int) -> Callable[[int, Tensor], Tensor]:
        """The attention of one new token per row over the cache, written in numpy (CPU, fp32): for each
        row and head, with K, V the cached keys and values of positions 0..L (the new one written at L),

            s = K q / √D  (L+1,),    a = softmax(s),    y = Vᵀ a  (D,)

        two batched mat-vec products (numpy's ``matmul``, BLAS per head) and a softmax over arrays that
        share the cache's memory. The same numbers as SDPA's CPU kernel up to the order of sums; at batch
        1 that kernel's set-up, not its arithmetic, was its price: whole decodes of the 6 × 384 model ran
        2–6% faster with this one (docs/fast_decoding.md, "CPU batch 1"), small ones slower (see
        NUMPY_ATTENTION_MIN_WIDTH)."""
        nh, hs, L = self.config.n_head, self.config.head_dim, cache.length
        scale = 1.0 / math.sqrt(hs)
        keys_all = cache.k.detach().numpy()  # (n_layer, B, nh, block, hs), the cache's memory
        values_all = cache.v.detach().numpy()

        def attend(layer: int, qkv: Tensor) -> Tensor:  # (B, 3C) -> (B, C)
            q, k, v = qkv.detach().numpy().reshape(B, 3, nh, hs).transpose(1, 0, 2, 3)  # 3 x (B, nh, hs)
            keys, values = keys_all[layer], values_all[layer]  # (B, nh, block, hs)
            keys[:, :, L], values[:, :, L] = k, v
            s = np.matmul(keys[:, :, : L + 1], q[..., None])  # (B, nh, L+1, 1)
            s *= scale
            s -= np.maximum.reduce(s, axis=2, keepdims=True)
            np.exp(s, out=s)  # e = exp(s - max s); a = e / Σ e, the division applied to y below
            y = np.matmul(s.transpose(0, 1, 3, 2), values[:, :, : L + 1])  # (B, nh, 1, hs)
            y /= np.add.reduce(s, axis=2, keepdims=True)
            return torch.from_numpy(y.reshape(B, nh * hs))  # heads side by side

        return attend

    def _causal_mask(self, t: int, L: int) -> Tensor:
        """The additive mask (t, L+t) of t new queries at positions L.. over L+t keys: 0 over the cached
        keys, the causal (t, t) block over the new ones. A view of a (t, block_size) buffer kept per t
        (a speculative verifier's t is the draft length + 1, a handful of values), the block written in
        at L: two ops a pass instead of building the mask (t = a prompt's length: built, not kept)."""
        kept = self._masks.get(t)
        dtype = self.lean.wte.dtype
        if kept is None:
            if t > _KEPT_MASK_T:
                return causal_mask(t, L + t, L, self._device).to(dtype)  # (t, L+t)
            block = causal_mask(t, t, 0, self._device).to(dtype)  # (t, t)
            buffer = block.new_zeros(t, self.config.block_size)  # (t, block_size)
            buffer[:, :t] = block
            kept = self._masks[t] = (buffer, block, [0])
        buffer, block, at = kept
        if at[0] != L:  # move the causal block from where the last pass put it
            buffer[:, at[0] : at[0] + t].zero_()
            buffer[:, L : L + t].copy_(block)
            at[0] = L
        return buffer[:, : L + t]

    def static_step(self, token: Tensor, pos: Tensor, k_cache: Tensor, v_cache: Tensor) -> Tensor:
        """token (B,), pos () int64 tensor, caches (n_layer, B, nh, block, hs) -> log-probs (B, V).

        Every shape is fixed and no Python value depends on the position: what a CUDA graph records.
        """
        B, nh = token.shape[0], self.config.n_head
        if self.numpy_gemv:
            one_blas_thread()
        block, scale = k_cache.shape[3], 1.0 / math.sqrt(self.config.head_dim)
        visible = torch.arange(block, device=token.device) <= pos  # (block,): keys j ≤ pos
        mask = torch.zeros(1, block, device=token.device, dtype=self.lean.wte.dtype).masked_fill(
            ~visible, float("-inf"))  # (1, block): the additive M of the one query
        where = pos.view(1)  # (1,) the cache position to write

        def attend(layer: int, qkv: Tensor) -> Tensor:  # (B, 3C) -> (B, C)
            q, k, v = split_heads(qkv, B, nh)  # 3 x (B, nh, 1, hs)
            k_cache[layer].index_copy_(2, where, k)  # (B, nh, block, hs) at pos
            v_cache[layer].index_copy_(2, where, v)
            # one query against every slot: two batched mat-vec products and a softmax, written out
            # (fp32 SDPA with a mask picks a memory-efficient kernel that took 115 µs a layer on an H100)
            scores = (q * scale) @ k_cache[layer].transpose(-2, -1) + mask  # (B, nh, 1, block)
            y = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype) @ v_cache[layer]  # (B, nh, 1, hs)
            return y.view(B, -1)

        return self.log_softmax_head(self.lean(token.view(B, 1), where, attend))  # (B, V)

    def _static(self, batch_size: int) -> _StaticStep:
        if batch_size not in self._steps:
            self._steps[batch_size] = _StaticStep(self, batch_size, capture=self.cuda_graphs)
        return self._steps[batch_size]


class _StaticStep:
    """The static step for one batch size over fixed buffers (the token, the position, the KV cache),
    captured once as a CUDA graph when ``capture`` (then each step is one replay), else run eagerly.

    The eager form is what the test suite runs on the CPU; the capture needs a CUDA device and is
    tested by ``tests/fast/test_cuda.py`` where one exists (not in CI).
    """

    def __init__(self, decoder: FastDecoder, batch_size: int, capture: bool) -> None:
        self.cache = decoder.model.start(batch_size)  # the static KV buffers (zeros: finite everywhere)
        device = self.cache.k.device
        self.token = torch.zeros(batch_size, dtype=torch.long, device=device)  # (B,)
        self.pos = torch.zeros((), dtype=torch.long, device=device)
        self.run = lambda: decoder.static_step(self.token, self.pos, self.cache.k, self.cache.v)
        self.graph = self._capture(device) if capture else None

    def _capture(self, device: torch.device):
        step = self.run
        with torch.inference_mode():
            stream = torch.cuda.Stream(device)
            stream.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(stream):  # warm up on a side stream, as torch.cuda.graph requires
                for _ in range(3):
                    step()
            torch.cuda.current_stream(device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.out = step()  # (B, V)
        self.cache.k.zero_()
        self.cache.v.zero_()
        return graph

    def start(self) -> KVCache:
        """The static cache, emptied (its tensors are the step's; an older state sharing them ends)."""
        self.cache.length = 0
        return self.cache

    def step(self, tokens: Tensor, state: KVCache) -> Tensor:
        if state.k is not self.cache.k:  # a foreign cache (e.g. after select): move it in
            L = state.length
            self.cache.k[:, :, :, :L].copy_(state.k[:, :, :, :L])
            self.cache.v[:, :, :, :L].copy_(state.v[:, :, :, :L])
            state.k, state.v = self.cache.k, self.cache.v
        self.token.copy_(tokens[:, 0])
        self.pos.fill_(state.length)
        if self.graph is None:
            return self.run()
        self.graph.replay()
        return self.out.clone()  # (B, V): the buffer is overwritten by the next replay


def fast_decoder(model: Any, enabled: bool = True) -> Any:
    """``model`` wrapped in a :class:`FastDecoder` when it is a Transformer in eval mode that the lean
    step supports (and ``enabled``); any other model unchanged."""
    if (enabled and isinstance(model, TransformerLM) and not model.training
            and model.config.attention == "sdpa" and model.config.causal):
        return FastDecoder(model)
    return model


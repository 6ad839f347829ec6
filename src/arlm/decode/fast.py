"""Fast incremental decoding of a Transformer: a lean one-token step, and that step captured as a CUDA graph.

Decoding one token at batch size 1 does little arithmetic per weight read: 2 FLOPs per parameter.
A 6-layer × 384 Transformer has ~10.6M parameters, so one step is ~21 MFLOPs, a fraction of a
millisecond of matmul on one CPU core — and what is left is *overhead*: ~16 ``nn.Module`` calls,
~60 small tensor ops and their Python per layer, (B, 1, C) shapes reshaped back and forth. On a GPU
each of those ops is a kernel launch of a few microseconds, and the launches, not the arithmetic,
set the pace. :class:`FastDecoder` removes what it can, in two ways:

* **The lean step** (every device; the default): the same computation as
  :meth:`~arlm.models.transformer.TransformerLM.step` written as one flat function over weights
  fetched once — no module calls, no dropout, no mask for one new token (it attends to every cached
  key), the head applied to the last position only (``step``) or to every new one (``step_all``, a
  speculative verifier's pass), the head's [PAD]/[SOS] mask added as a fixed (V,) vector. It writes
  into the same preallocated :class:`~arlm.models.transformer.KVCache`, so ``select`` (beam search,
  finished rows) and ``crop`` (rejected draft tokens) are the cache's own.
* **The static step** (``static=True``; captured with CUDA graphs when ``cuda_graphs=True``): the
  lean step with *static shapes*: the position is a tensor, the new key and value are written with
  ``index_copy_`` at that position, and the query attends to the whole preallocated cache,
  positions > the current one masked:

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

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from arlm.errors import ConfigError
from arlm.models.transformer import KVCache, TransformerLM, causal_mask


def _linear(module: nn.Module) -> Callable[[Tensor], Tensor]:
    """A plain ``nn.Linear`` as F.linear over its weights (no module call); any other layer (an
    int8 dynamically quantized Linear) as its own forward."""
    if type(module) is nn.Linear:
        weight, bias = module.weight, module.bias
        return lambda x: F.linear(x, weight, bias)
    return module.forward


def _linear_2d(module: nn.Module) -> Callable[[Tensor], Tensor]:
    """The same layer for a (B, C_in) input, called as the kernel F.linear itself dispatches to:
    ``torch.addmm(b, x, Wᵀ)`` over a Wᵀ view taken once (the same numbers, less dispatch per call);
    an int8 layer as its own forward."""
    if type(module) is nn.Linear:
        weight_t, bias = module.weight.t(), module.bias  # (C_in, C_out) view, (C_out,)
        if bias is None:
            return lambda x: torch.mm(x, weight_t)
        return lambda x: torch.addmm(bias, x, weight_t)
    return module.forward


class _Layer:
    """One block's weights and callables, fetched once: LN_1, QKV, output projection, LN_2, MLP."""

    def __init__(self, block: nn.Module) -> None:
        self.ln_1 = (block.ln_1.weight, block.ln_1.bias, block.ln_1.eps)
        self.ln_2 = (block.ln_2.weight, block.ln_2.bias, block.ln_2.eps)
        self.qkv = _linear(block.attn.c_attn)
        self.attn_out = _linear(block.attn.c_proj)
        self.mlp_in = _linear(block.mlp.c_fc)
        self.mlp_out = _linear(block.mlp.c_proj)
        # the one-token step's (B, C) forms (see _linear_2d)
        self.qkv_2d = _linear_2d(block.attn.c_attn)
        self.attn_out_2d = _linear_2d(block.attn.c_proj)
        self.mlp_in_2d = _linear_2d(block.mlp.c_fc)
        self.mlp_out_2d = _linear_2d(block.mlp.c_proj)


class FastDecoder:
    """A :class:`~arlm.models.transformer.TransformerLM` (or GPT-2) as an ARModel whose one-token steps
    take the lean (or static / CUDA-graph) path; everything else is the model's own.

    >>> fast = FastDecoder(model)                       # the lean step, exact
    >>> generate(fast, prompt, temperature=0)           # same tokens as generate(model, …)
    >>> FastDecoder(model.cuda(), cuda_graphs=True)     # one graph replay per token on a GPU

    The model must be in eval mode (no dropout) and its weights must not change while the decoder is
    used (the weights are fetched once; a CUDA graph also bakes in their addresses).
    """

    def __init__(self, model: TransformerLM, static: bool = False, cuda_graphs: bool = False) -> None:
        if not isinstance(model, TransformerLM):
            raise ConfigError(f"FastDecoder takes a Transformer (or GPT-2) model, not a "
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
        t = model.transformer
        self.wte, self.wpe = t.wte.weight, t.wpe.weight
        self.ln_f = (t.ln_f.weight, t.ln_f.bias, t.ln_f.eps)
        self.layers = [_Layer(block) for block in t.h]
        # the head as lm_head plus a fixed (V,) mask, 0 or -inf: the family's head() (which masks
        # [PAD] and [SOS], or nothing for GPT-2) without building an index tensor per step — which
        # a CUDA graph could not capture (a host-to-device copy)
        self.lm_head = _linear(model.lm_head)
        with torch.inference_mode():
            zero = torch.zeros(1, model.config.d_model, device=device, dtype=self.wte.dtype)
            self.head_mask = (model.head(zero) - model.lm_head(zero))[0].float()  # (V,)
        head = model.lm_head
        if type(head) is nn.Linear and head.bias is None and head.weight.dtype == torch.float32:
            # the one-token head: logits + mask in one kernel, addmm(M, x, Eᵀ) (M is 0 or -inf, so
            # adding it inside the kernel or after gives the same numbers)
            head_t, mask = head.weight.t(), self.head_mask  # (C, V), (V,)
            self.head_2d: Callable[[Tensor], Tensor] = lambda x: torch.addmm(mask, x, head_t)
        else:
            lm_head = _linear_2d(head)
            self.head_2d = lambda x: lm_head(x).float() + self.head_mask
        self._device = device
        self._positions = torch.arange(model.config.block_size, device=device)  # lean_step's write positions
        self._steps: dict[int, _StaticStep] = {}  # batch size -> its static (captured) step

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
        x = self.lean_forward(tokens, state)  # (B, t, C)
        state.advance(tokens.shape[1])
        return self.log_softmax_head(x), state  # (B, t, V)

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
        if tokens.shape[1] == 1 and self.static:
            logp = self._static(tokens.shape[0]).step(tokens, state)
        elif tokens.shape[1] == 1:
            logp = self.lean_step(tokens, state)
        else:
            x = self.lean_forward(tokens, state)[:, -1]  # (B, C): the head on the last position only
            logp = self.log_softmax_head(x)  # (B, V)
        state.advance(tokens.shape[1])
        return logp, state

    # ----- the lean forward pass and the static one-token step -------------------------------------

    def log_softmax_head(self, x: Tensor) -> Tensor:
        """(..., C) final hidden states -> log-softmax of the family's logits (..., V), in fp32."""
        return F.log_softmax(self.lm_head(x).float() + self.head_mask, dim=-1)

    def lean_forward(self, tokens: Tensor, cache: KVCache) -> Tensor:
        """tokens (B, t) at positions L..L+t-1 (L = cache.length) -> final hidden states LN_f(z) (B, t, C).

        Writes K, V of the new positions into the cache (does not advance it). One new token attends
        to every cached key with no mask; t > 1 new tokens (a speculative verification) with the
        causal mask shifted by L."""
        cfg = self.config
        (B, t), C, nh, hs = tokens.shape, cfg.d_model, cfg.n_head, cfg.head_dim
        L = cache.length
        mask = None if t == 1 else causal_mask(t, L + t, L, tokens.device).to(self.wte.dtype)  # (t, L+t)
        x = F.embedding(tokens, self.wte) + self.wpe[L : L + t]  # (B, t, C): z_0 = E[x] + P[pos]
        for i, layer in enumerate(self.layers):
            h = F.layer_norm(x, (C,), *layer.ln_1)
            q, k, v = layer.qkv(h).view(B, t, 3, nh, hs).permute(2, 0, 3, 1, 4)  # 3 x (B, nh, t, hs)
            cache.k[i, :, :, L : L + t] = k
            cache.v[i, :, :, L : L + t] = v
            keys, values = cache.k[i, :, :, : L + t], cache.v[i, :, :, : L + t]  # (B, nh, L+t, hs)
            y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)  # (B, nh, t, hs)
            y = y.view(B, t, C) if t == 1 else y.transpose(1, 2).reshape(B, t, C)  # heads side by side
            x = x + layer.attn_out(y)
            h = F.layer_norm(x, (C,), *layer.ln_2)
            x = x + layer.mlp_out(F.gelu(layer.mlp_in(h), approximate="tanh"))  # (B, t, C)
        return F.layer_norm(x, (C,), *self.ln_f)

    def lean_step(self, tokens: Tensor, cache: KVCache) -> Tensor:
        """One new token per row, tokens (B, 1) at position L = cache.length -> log-probs (B, V).

        :meth:`lean_forward` for t = 1 with the fewest tensor operations a layer allows (each costs
        microseconds of dispatch, as much as its arithmetic at batch 1): (B, C) rows throughout, the
        Linear layers as ``addmm`` over Wᵀ views taken once, the residual added in place to the
        layer's fresh output, K and V written with one ``index_copy_`` each into per-layer views of
        the cache, the head and its mask in one ``addmm``, ``torch.layer_norm`` and ``torch.embedding``
        called without F's Python wrappers. The operations and their order are :meth:`lean_forward`'s,
        so the numbers are too. Writes K, V at L (does not advance)."""
        cfg = self.config
        B, C, nh, hs = tokens.shape[0], cfg.d_model, cfg.n_head, cfg.head_dim
        L = cache.length
        end = L + 1
        where = self._positions[L:end]  # (1,) the cache position to write
        x = torch.embedding(self.wte, tokens[:, 0]) + self.wpe[L]  # (B, C): z_0 = E[x] + P[L]
        for layer, (k_cache, v_cache) in zip(self.layers, cache.layers(), strict=True):
            h = torch.layer_norm(x, (C,), *layer.ln_1)
            q, k, v = layer.qkv_2d(h).view(B, 3, nh, 1, hs).unbind(1)  # 3 x (B, nh, 1, hs)
            k_cache.index_copy_(2, where, k)  # (B, nh, block, hs) at L
            v_cache.index_copy_(2, where, v)
            y = F.scaled_dot_product_attention(q, k_cache[:, :, :end], v_cache[:, :, :end])  # (B, nh, 1, hs)
            x = layer.attn_out_2d(y.view(B, C)).add_(x)  # (B, C): heads side by side, then + residual
            h = torch.layer_norm(x, (C,), *layer.ln_2)
            x = layer.mlp_out_2d(F.gelu(layer.mlp_in_2d(h), approximate="tanh")).add_(x)
        x = torch.layer_norm(x, (C,), *self.ln_f)
        return F.log_softmax(self.head_2d(x), dim=-1)  # (B, V)

    def static_step(self, token: Tensor, pos: Tensor, k_cache: Tensor, v_cache: Tensor) -> Tensor:
        """token (B,), pos () int64 tensor, caches (n_layer, B, nh, block, hs) -> log-probs (B, V).

        Every shape is fixed and no Python value depends on the position: what a CUDA graph records.
        """
        cfg = self.config
        B, C, nh, hs = token.shape[0], cfg.d_model, cfg.n_head, cfg.head_dim
        block, scale = k_cache.shape[3], 1.0 / math.sqrt(hs)
        visible = torch.arange(block, device=token.device) <= pos  # (block,): keys j ≤ pos
        mask = torch.zeros(1, block, device=token.device, dtype=self.wte.dtype).masked_fill(
            ~visible, float("-inf"))  # (1, block): the additive M of the one query
        where = pos.view(1)  # (1,) the cache position to write
        x = F.embedding(token, self.wte) + self.wpe.index_select(0, where)  # (B, C)
        for i, layer in enumerate(self.layers):
            h = F.layer_norm(x, (C,), *layer.ln_1)
            q, k, v = layer.qkv(h).view(B, 3, nh, hs).unbind(1)  # 3 x (B, nh, hs)
            k_cache[i].index_copy_(2, where, k.unsqueeze(2))  # (B, nh, block, hs) at pos
            v_cache[i].index_copy_(2, where, v.unsqueeze(2))
            # one query against every slot: two batched mat-vec products and a softmax, written out
            # (fp32 SDPA with a mask picks a memory-efficient kernel that took 115 µs a layer on an H100)
            scores = (q * scale).unsqueeze(2) @ k_cache[i].transpose(-2, -1) + mask  # (B, nh, 1, block)
            y = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype) @ v_cache[i]  # (B, nh, 1, hs)
            x = x + layer.attn_out(y.view(B, C))
            h = F.layer_norm(x, (C,), *layer.ln_2)
            x = x + layer.mlp_out(F.gelu(layer.mlp_in(h), approximate="tanh"))
        x = F.layer_norm(x, (C,), *self.ln_f)
        return self.log_softmax_head(x)  # (B, V)

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


"""Decoder-only Transformer language model (GPT-2 shaped, in the style of nanoGPT's model.py).

Tokens x_1..x_T become vectors (token embedding + learned position embedding), pass through
``n_layer`` pre-LN blocks, a final LayerNorm and a linear head tied to the token embedding:

    z_0 = E[x_t] + P[t]
    z   = z + Attn(LN_1(z))                        (causal self-attention, n_head heads)
    z   = z + MLP(LN_2(z))                         (d_model -> 4 d_model -> d_model, GELU)
    y_t = LN_f(z_t) Eᵀ                             (logits for x_{t+1}; [PAD], [SOS] -> -inf)

**Attention.** Each head projects z to queries, keys and values Q, K, V ∈ R^{T×D} (D = head_dim):

    A = softmax(Q Kᵀ / √D + M),        M_ij = 0 if j ≤ i, -inf if j > i
    out = A V

M is upper-triangular -inf: position i attends to positions j ≤ i only, so the prediction of x_{i+1}
cannot read x_{i+1} or anything after it. Drop M (``causal=False``) and the model *cheats*: training
sees the answer, and the output at i changes when a later token changes (tests/models show it).
``attention="explicit"`` computes the formula above step by step; ``attention="sdpa"`` (default)
calls ``F.scaled_dot_product_attention``, a fused kernel that gives the same result, except where the
explicit products are faster (:func:`sdpa_pays`: a bf16 training pass on the CPU).

**KV cache.** Generating token by token would recompute K and V of the whole prefix at every step.
The keys and values of a position never change once computed (causality), so :class:`KVCache`
keeps them in tensors allocated once, (n_layer, B, n_head, block_size, head_dim); ``step`` writes
the new positions' K, V in place and attends from the new queries to all positions < length + t.

**The lean forward.** :class:`LeanTransformer` is the same arithmetic over (N, C) rows without module
calls (weights fetched once, eval mode), the attention left to its caller: the one forward that the
fast decoding paths of :mod:`arlm.decode.fast` (the lean step, a prefill, the static CUDA-graph step)
share. A change to :class:`Block` is mirrored once, in :class:`LeanBlock` next to it.

Parameter names follow GPT-2 / nanoGPT (``transformer.wte``, ``transformer.h.0.attn.c_attn``, …,
``lm_head``), so GPT-2 weights map onto them one to one (HF's Conv1D weights are transposed).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from arlm.errors import ConfigError
from arlm.models.neural import NeuralLM, mask_unpredictable
from arlm.models.numpy_gemv import numpy_rows_linear

ATTENTIONS = ("sdpa", "explicit")
# GELU's form -> F.gelu's `approximate`: "tanh" is GPT-2's 0.5 h (1 + tanh(√(2/π)(h + 0.044715 h³))),
# "exact" is h Φ(h) with the normal CDF Φ (erf), what nanoGPT's nn.GELU() computes
GELUS = {"tanh": "tanh", "exact": "none"}
GELU_2K = 2 * math.sqrt(2 / math.pi)  # 2√(2/π), in GELU's tanh form written with σ
_compiling = getattr(torch.compiler, "is_compiling", lambda: False)  # torch >= 2.3; True while traced


@dataclass
class TransformerConfig:
    vocab_size: int
    block_size: int = 256  # the longest sequence (number of learned positions)
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 256
    dropout: float = 0.0
    bias: bool = True  # biases in Linear and LayerNorm layers (GPT-2 has them)
    tie_weights: bool = True  # lm_head.weight is transformer.wte.weight
    attention: str = "sdpa"  # "sdpa" (fused kernel) or "explicit" (softmax(QKᵀ/√D + M) by hand)
    causal: bool = True  # False removes the mask M: for demonstrating leakage only
    gelu: str = "tanh"  # GELU's form: "tanh" (GPT-2's) or "exact" (erf, nanoGPT's nn.GELU())

    def __post_init__(self) -> None:
        if self.attention not in ATTENTIONS:
            raise ConfigError(f"unknown attention {self.attention!r}; choose one of "
                              f"{', '.join(ATTENTIONS)}")
        if self.gelu not in GELUS:
            raise ConfigError(f"unknown gelu {self.gelu!r}; choose one of {', '.join(GELUS)}")
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "d_model"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"transformer: {name} must be at least 1, not {getattr(self, name)}")
        if self.d_model % self.n_head:
            raise ConfigError(f"d_model ({self.d_model}) must be a multiple of n_head "
                              f"({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), not {self.dropout}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head


def causal_mask(t: int, s: int, offset: int = 0, device=None) -> Tensor:
    """The additive mask M (t, s) for t queries at positions offset..offset+t-1 over s keys at
    positions 0..s-1: 0 where key j ≤ query position, -inf above that diagonal."""
    q_pos = torch.arange(offset, offset + t, device=device)[:, None]  # (t, 1)
    k_pos = torch.arange(s, device=device)[None, :]  # (1, s)
    zeros = torch.zeros(t, s, device=device)
    return zeros.masked_fill(k_pos > q_pos, float("-inf"))  # (t, s)


# ---------------------------------------------------------------------------------------------
# The KV cache
# ---------------------------------------------------------------------------------------------


class KVCache:
    """Keys and values of every layer for positions 0..length-1, preallocated to block_size.

    ``k``, ``v``: (n_layer, B, n_head, block_size, head_dim). ``step`` writes into them in place and
    returns the same object, so keep a ``select``-ed copy if you need an older state.
    """

    def __init__(self, k: Tensor, v: Tensor, length: int = 0) -> None:
        self.k, self.v, self.length = k, v, length
        self._layers: tuple[Tensor, Tensor, list[tuple[Tensor, Tensor]]] | None = None  # see layers()

    @classmethod
    def allocate(cls, config: TransformerConfig, batch_size: int, dtype: torch.dtype,
                 device: torch.device) -> KVCache:
        shape = (config.n_layer, batch_size, config.n_head, config.block_size, config.head_dim)
        return cls(torch.zeros(shape, dtype=dtype, device=device),
                   torch.zeros(shape, dtype=dtype, device=device))

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    @property
    def capacity(self) -> int:
        return self.k.shape[3]

    def layers(self) -> list[tuple[Tensor, Tensor]]:
        """Each layer's (K, V) buffers, (B, nh, block_size, hs) views of ``k`` and ``v``, made once per
        cache (a decoding step that indexed ``k[layer]`` per layer and token would pay for it each time)
        and made again if ``k`` or ``v`` is replaced."""
        if self._layers is None or self._layers[0] is not self.k or self._layers[1] is not self.v:
            self._layers = (self.k, self.v, list(zip(self.k.unbind(0), self.v.unbind(0), strict=True)))
        return self._layers[2]

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write k, v (B, nh, t, hs) at positions length..length+t-1 of ``layer``; return the keys
        and values of positions 0..length+t-1, (B, nh, length+t, hs). ``length`` is advanced by
        :meth:`advance` once all layers are written."""
        end = self.length + k.shape[2]
        self.k[layer, :, :, self.length : end] = k
        self.v[layer, :, :, self.length : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, t: int) -> None:
        self.length += t

    def select(self, index: Tensor) -> KVCache:
        """Rows ``index`` of the batch (a new cache; the copy is what beam search needs).

        Only the filled positions ``[:length]`` are copied into a fresh preallocated buffer: beam
        search selects every step, and copying the empty tail of the block would dominate its cost.
        """
        index = index.to(self.k.device)
        L = self.length
        n_layer, _, n_head, block, head_dim = self.k.shape
        k = self.k.new_empty(n_layer, len(index), n_head, block, head_dim)
        v = self.v.new_empty(k.shape)
        k[:, :, :, :L] = self.k[:, :, :, :L].index_select(1, index)
        v[:, :, :, :L] = self.v[:, :, :, :L].index_select(1, index)
        return KVCache(k, v, L)

    def crop(self, length: int) -> KVCache:
        """Forget positions ≥ length (in place; e.g. to undo rejected draft tokens)."""
        if not 0 <= length <= self.length:
            raise ConfigError(f"cannot crop a cache of length {self.length} to {length}")
        self.length = length
        return self


# ---------------------------------------------------------------------------------------------
# The blocks
# ---------------------------------------------------------------------------------------------


class CausalSelfAttention(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.c_attn = nn.Linear(config.d_model, 3 * config.d_model, bias=config.bias)  # Q, K, V
        self.c_proj = nn.Linear(config.d_model, config.d_model, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        """x (B, T, C) -> (B, T, C). With a cache, x holds positions cache.length.. only."""
        cfg = self.config
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, cfg.n_head, cfg.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, cfg.n_head, cfg.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, cfg.n_head, cfg.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        offset = 0
        if cache is not None:
            offset = cache.length
            k, v = cache.update(layer, k, v)  # (B, nh, S, hs), S = offset + T
        S = k.shape[2]
        p = cfg.dropout if self.training else 0.0

        if cfg.attention == "sdpa" and sdpa_pays(q):
            if not cfg.causal or T == 1:  # one new query may see every cached key
                y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
            elif offset == 0:
                y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
            else:  # a prefill after cached positions: the mask's diagonal is shifted by offset
                mask = causal_mask(T, S, offset, x.device).to(q.dtype)
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        else:  # A = softmax(QKᵀ/√D + M), written out
            att = (q @ k.transpose(-2, -1)) / math.sqrt(cfg.head_dim)  # (B, nh, T, S)
            if cfg.causal:
                att = att + causal_mask(T, S, offset, x.device).to(att.dtype)  # + M
            # A, the softmax in fp32 whatever the products' precision (as SDPA's kernels compute it)
            att = self.attn_dropout(F.softmax(att, dim=-1, dtype=torch.float32).to(v.dtype))
            y = att @ v  # (B, nh, T, hs)

        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side
        return self.resid_dropout(self.c_proj(y))


def sdpa_pays(q: Tensor) -> bool:
    """Whether ``attention="sdpa"`` takes the fused kernel for queries ``q``: everywhere but a bf16 pass
    that will be differentiated on the CPU, which takes the explicit products instead. There torch's
    flash-attention backward in bf16 took ~4 ms a layer against ~0.5 ms for the explicit products (the
    products in bf16, the softmax in fp32 as the fused kernel computes it): nanoGPT's baby config at
    2 threads trained at 38 against 24.5 ms a step (torch 2.13, AVX-512 with native bf16;
    docs/training.md, "Mixed precision on the CPU")."""
    return not (q.dtype == torch.bfloat16 and q.device.type == "cpu" and q.requires_grad)


def gelu_as_sigmoid(h: Tensor) -> Tensor:
    """GPT-2's tanh GELU, 0.5 h (1 + tanh z) with z = √(2/π) (h + 0.044715 h³), written as h σ(2z) (the
    same function). Used under torch.compile: TorchInductor's CPU tanh (like ATen's tanh-GELU kernel)
    is a slow vector routine, its exp (in σ) a fast one."""
    return h * torch.sigmoid(GELU_2K * (h + 0.044715 * (h * h * h)))


class MLP(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.d_model, 4 * config.d_model, bias=config.bias)
        self.gelu = nn.GELU(approximate=GELUS[config.gelu])  # GPT-2's tanh form, or the exact one
        self.c_proj = nn.Linear(4 * config.d_model, config.d_model, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)
        self.tanh_gelu = config.gelu == "tanh"

    def forward(self, x: Tensor) -> Tensor:
        h = self.c_fc(x)  # (B, T, 4C)
        h = gelu_as_sigmoid(h) if self.tanh_gelu and _compiling() else self.gelu(h)
        return self.dropout(self.c_proj(h))  # (B, T, C)


class Block(nn.Module):
    """Pre-LN block: z + Attn(LN_1(z)), then z + MLP(LN_2(z))."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.d_model, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer)  # (B, T, C)
        return x + self.mlp(self.ln_2(x))  # (B, T, C)


# ---------------------------------------------------------------------------------------------
# The lean forward: the blocks' arithmetic without module calls, for the fast decoding paths
# ---------------------------------------------------------------------------------------------

# attend(layer, qkv): a layer's Q, K, V side by side, (N, 3C) -> the attention output, heads side by
# side, (N, C). The caller's part: how K and V are cached and which keys each query sees.
Attend = Callable[[int, Tensor], Tensor]


# id(weight) -> (the weight, weakly; its version when copied; Wᵀ row-major): a copy made once per weight
# and value, reused by every later lean forward (a server builds a decoder per request); the entry goes
# with the weight (keyed by id: tensors compare elementwise, so they cannot be dictionary keys)
_ROW_MAJOR_T: dict[int, tuple[weakref.ref, int, Tensor]] = {}


def row_major_t(weight: Tensor) -> Tensor:
    """Wᵀ (C_in, C_out) of a Linear weight W (C_out, C_in), row-major: a copy, remembered while W lives
    and holds the same values (an in-place change — a training step, ``load_state_dict`` — bumps W's
    version and makes a new copy). A weight made in inference mode has no version to follow: its copy
    is made anew each time."""
    if weight.is_inference():
        return weight.detach().t().contiguous()
    key, version = id(weight), weight._version
    cached = _ROW_MAJOR_T.get(key)
    if cached is None or cached[0]() is not weight or cached[1] != version:
        if cached is None or cached[0]() is not weight:
            weakref.finalize(weight, _ROW_MAJOR_T.pop, key, None)
        cached = (weakref.ref(weight), version, weight.detach().t().contiguous())
        _ROW_MAJOR_T[key] = cached
    return cached[2]


# how a lean forward multiplies (N, C_in) rows by a Linear's Wᵀ: see rows_linear
GEMVS = ("view", "row_major", "numpy", "einsum")


def rows_linear(module: nn.Module, gemv: str = "view") -> Callable[[Tensor], Tensor]:
    """A Linear layer for (N, C_in) rows, its Wᵀ (C_in, C_out) taken once; any other layer (an int8
    dynamically quantized Linear) as its own forward. ``gemv`` says how the rows are multiplied:

    * ``"view"``: ``torch.addmm(b, x, Wᵀ)`` over the transposed view of W (C_out, C_in), the kernel
      ``F.linear`` itself dispatches to (the same numbers, less dispatch per call); any device.
    * ``"row_major"``: the same over a row-major copy of Wᵀ (:func:`row_major_t`), GPT-2's ``Conv1D``
      layout, the one HF's GPT-2 multiplies by; on this project's CPUs MKL's GEMV reads it faster than
      the view. The copy costs the layer's memory once more.
    * ``"numpy"``: numpy's BLAS (OpenBLAS) over that row-major copy (:mod:`arlm.models.numpy_gemv`);
      CPU, fp32: on this project's CPUs its one-row GEMV reads weights faster than MKL's.
    * ``"einsum"``: the same, but one row by numpy's ``einsum`` loop, which keeps up with the memory
      where ``sgemv`` does not: for weights too large for the CPU's cache
      (:func:`~arlm.models.numpy_gemv.weights_stream`).
    """
    if gemv not in GEMVS:
        raise ConfigError(f"gemv must be one of {', '.join(GEMVS)}, not {gemv!r}")
    if type(module) is not nn.Linear:
        return module.forward
    weight_t = module.weight.detach().t() if gemv == "view" else row_major_t(module.weight)  # (C_in, C_out)
    bias = None if module.bias is None else module.bias.detach()  # (C_out,)
    if gemv in ("numpy", "einsum"):
        return numpy_rows_linear(weight_t, bias, one_row="einsum" if gemv == "einsum" else "blas")
    if bias is None:
        return lambda x: torch.mm(x, weight_t)
    return lambda x: torch.addmm(bias, x, weight_t)


class LeanBlock:
    """A :class:`Block` over (N, C) rows in eval mode, its weights fetched once: LN_1, the QKV and
    output projections, LN_2, the MLP. The residual is added in place to each sub-layer's fresh
    output (the same numbers as ``x + f(x)``, one tensor fewer). ``gemv``: how the four Linear
    layers multiply (see :func:`rows_linear`)."""

    def __init__(self, block: Block, layer: int, gemv: str = "view") -> None:
        self.layer = layer
        self.shape = (block.ln_1.normalized_shape[0],)  # (C,)
        self.ln_1 = (block.ln_1.weight, block.ln_1.bias, block.ln_1.eps)
        self.ln_2 = (block.ln_2.weight, block.ln_2.bias, block.ln_2.eps)
        self.qkv = rows_linear(block.attn.c_attn, gemv)
        self.attn_out = rows_linear(block.attn.c_proj, gemv)
        self.mlp_in = rows_linear(block.mlp.c_fc, gemv)
        self.mlp_out = rows_linear(block.mlp.c_proj, gemv)
        self.gelu = block.mlp.gelu.approximate  # F.gelu's `approximate`: "tanh" or "none"

    def __call__(self, x: Tensor, attend: Attend) -> Tensor:
        """x (N, C) -> (N, C): z + Attn(LN_1(z)), then z + MLP(LN_2(z))."""
        h = torch.layer_norm(x, self.shape, *self.ln_1)
        x = self.attn_out(attend(self.layer, self.qkv(h))).add_(x)  # (N, C)
        h = torch.layer_norm(x, self.shape, *self.ln_2)
        return self.mlp_out(F.gelu(self.mlp_in(h), approximate=self.gelu)).add_(x)  # (N, C)


class LeanTransformer:
    """A :class:`TransformerLM`'s forward without module calls: tokens at given positions -> final
    hidden states, every block a :class:`LeanBlock`, the attention the caller's ``attend``.

    The input is E[x] plus the model's position tables read left to right
    (:meth:`TransformerLM.lean_position_tables`: P, and σ-GPT's Q after it), added in the order the
    model adds them, so the numbers are the model's own. The model must stay in eval mode with its
    weights unchanged while this is used (they are fetched once; int8 Linear layers are called as the
    modules they have become). ``gemv``: how the blocks multiply (see :func:`rows_linear`)."""

    def __init__(self, model: TransformerLM, gemv: str = "view") -> None:
        t = model.transformer
        self.wte = t.wte.weight  # E (V, C)
        self.position_tables = model.lean_position_tables()  # each (block_size, C)
        self.shape = (model.config.d_model,)  # (C,)
        self.ln_f = (t.ln_f.weight, t.ln_f.bias, t.ln_f.eps)
        self.blocks = [LeanBlock(block, i, gemv) for i, block in enumerate(t.h)]

    def __call__(self, tokens: Tensor, positions: Tensor, attend: Attend) -> Tensor:
        """tokens (B, t) at ``positions`` (t,) -> LN_f(z) (B·t, C), row b·t + i for tokens[b, i]."""
        x = torch.embedding(self.wte, tokens)  # (B, t, C)
        for table in self.position_tables:
            x = x + torch.embedding(table, positions)  # (B, t, C)
        x = x.view(-1, self.shape[0])  # (B·t, C): z_0 = E[x] + P[pos] (+ Q[pos] for σ-GPT)
        for block in self.blocks:
            x = block(x, attend)  # (B·t, C)
        return torch.layer_norm(x, self.shape, *self.ln_f)


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------


class TransformerLM(NeuralLM):
    family = "transformer"
    config_class = TransformerConfig
    # The input is E[x_t] + P[t] and the parameters are GPT-2's, nothing more: what reads a model by
    # that layout (attention maps, GPT-2 export) takes it. σ-GPT, a subclass with a second position
    # table, is not (the lean forward takes every subclass: see lean_position_tables).
    gpt2_layout: ClassVar[bool] = True

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__(config)
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.d_model),  # E
            **self._position_tables(config),  # P
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.d_model, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.transformer.wte.weight  # one (V, C) matrix, two uses
        # GPT-2 initialisation: N(0, 0.02), residual projections scaled by 1/√(2 n_layer)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _position_tables(self, config: TransformerConfig) -> dict[str, nn.Module]:
        """The learned position tables, made right after E (the order draws the initial weights)."""
        return {"wpe": nn.Embedding(config.block_size, config.d_model)}  # P

    def lean_position_tables(self) -> tuple[Tensor, ...]:
        """The position tables whose rows at positions 0..T-1 :meth:`_run` adds to E[x] when reading
        left to right, in that order (here P): what :class:`LeanTransformer` adds."""
        return (self.transformer.wpe.weight,)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def _check_length(self, length: int) -> None:
        """A ConfigError when a sequence of ``length`` tokens would not fit the learned positions."""
        if length > self.config.block_size:
            raise ConfigError(f"the sequence would be {length} tokens long but the model's "
                              f"block_size is {self.config.block_size}; feed at most "
                              f"{self.config.block_size} tokens (crop the context)")

    def _run(self, tokens: Tensor, cache: KVCache | None = None) -> Tensor:
        """tokens (B, T) at positions offset..offset+T-1 -> final hidden states (B, T, C)."""
        T = tokens.shape[1]  # tokens: (B, T)
        offset = 0 if cache is None else cache.length
        self._check_length(offset + T)
        pos = torch.arange(offset, offset + T, device=tokens.device)  # (T,)
        x = self.transformer.wte(tokens) + self.transformer.wpe(pos)  # (B, T, C)
        return self._blocks(x, cache)

    def _blocks(self, x: Tensor, cache: KVCache | None) -> Tensor:
        """Input vectors z_0 (B, T, C) -> final hidden states LN_f(z) (B, T, C); the cache (if any)
        is written at positions cache.length.. and advanced by T."""
        x = self.transformer.drop(x)
        for i, block in enumerate(self.transformer.h):
            x = block(x, cache, i)  # (B, T, C)
        if cache is not None:
            cache.advance(x.shape[1])
        return self.transformer.ln_f(x)  # (B, T, C)

    def features(self, tokens: Tensor) -> Tensor:
        """tokens (B, T) -> final hidden states LN_f(z) (B, T, C)."""
        return self._run(tokens)

    def forward(self, tokens: Tensor, state: KVCache | None = None) -> tuple[Tensor, KVCache | None]:
        """tokens (B, T), cache or None -> (logits (B, T, V), the cache, advanced by T in place).

        Without a cache this is teacher forcing from position 0; with one, the tokens continue what
        the cache holds and every new position gets its logits (a speculative verifier's prefill).
        """
        return self.head(self._run(self._tokens(tokens), state)), state

    def head(self, features: Tensor) -> Tensor:
        """(..., C) -> logits (..., V) = LN_f(z) Eᵀ."""
        return mask_unpredictable(self.lm_head(features))

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Parameters (tied ones once); ``non_embedding`` leaves out the position embeddings."""
        n = super().num_parameters()
        return n - self.transformer.wpe.weight.numel() if non_embedding else n

    # ----- incremental decoding ----------------------------------------------------------------

    def start(self, batch_size: int) -> KVCache:
        """An empty cache, allocated once for block_size positions."""
        p = self.transformer.wte.weight
        return KVCache.allocate(self.config, batch_size, p.dtype, p.device)

    def step(self, tokens: Tensor, state: KVCache) -> tuple[Tensor, KVCache]:
        """tokens (B, t) -> (log p(next | all fed so far) (B, V), the cache, updated in place)."""
        tokens = self._tokens(tokens)
        if tokens.shape[0] != state.batch_size:
            raise ConfigError(f"step got {tokens.shape[0]} rows but the cache holds "
                              f"{state.batch_size}; select the cache rows first")
        x = self._run(tokens, state)  # (B, t, C)
        return F.log_softmax(self.head(x[:, -1]).float(), dim=-1), state  # (B, V)

    def step_all(self, tokens: Tensor, state: KVCache) -> tuple[Tensor, KVCache]:
        """Like :meth:`step`, but the log-probs after *every* fed token: (B, t, V), ``out[:, i]`` =
        log p(next | all fed before, tokens[:, :i+1]). Speculative decoding verifies k draft tokens
        with it in one pass (:mod:`arlm.decode.speculative`)."""
        tokens = self._tokens(tokens)
        if tokens.shape[0] != state.batch_size:
            raise ConfigError(f"step_all got {tokens.shape[0]} rows but the cache holds "
                              f"{state.batch_size}; select the cache rows first")
        logits, state = self(tokens, state)  # (B, t, V): the step interface with a cache
        return F.log_softmax(logits.float(), dim=-1), state

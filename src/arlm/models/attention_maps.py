"""What a Transformer's tokens look at: the attention weights A of every layer and head, and the mask M.

Each head of :class:`~arlm.models.transformer.CausalSelfAttention` computes

    A = softmax(Q Kᵀ / √D + M),        M_ij = 0 if j ≤ i, -inf if j > i

so row i of A is a distribution over the positions j ≤ i that token i may read (the causal mask M
sets the others to exactly 0). The fused kernel the model uses by default never materialises A;
:func:`attention_weights` runs the same blocks and writes A out, layer by layer, for pictures
(the server's causal-mask view) and for teaching. :func:`causal_grid` is M itself as booleans.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from arlm.errors import ConfigError
from arlm.models.transformer import TransformerLM, causal_mask


def causal_grid(t: int) -> Tensor:
    """(t, t) bool: ``grid[i, j]`` is True when position i may attend to position j (j ≤ i)."""
    return torch.isfinite(causal_mask(t, t))


@torch.inference_mode()
def attention_weights(model: TransformerLM, tokens: Tensor) -> Tensor:
    """tokens (T,) or (1, T) -> A (n_layer, n_head, T, T) float32: every head's attention weights.

    ``A[l, h, i, j]`` is how much position i reads position j in head h of layer l; each row sums
    to 1 and is 0 above the diagonal (for a model with ``causal=False``, everywhere dense).
    The hidden states are the model's own (each block runs as in ``forward``); only the softmax of
    each head is recomputed explicitly from that block's queries and keys.
    """
    if not isinstance(model, TransformerLM) or not model.gpt2_layout:
        raise ConfigError(f"attention weights need a Transformer, not a {type(model).__name__}")
    tokens = model._tokens(tokens.reshape(1, -1))  # (1, T)
    cfg = model.config
    T = tokens.shape[1]
    if cfg.block_size < T:
        raise ConfigError(f"{T} tokens do not fit the model's block_size {cfg.block_size}; "
                          "shorten the text")
    pos = torch.arange(T, device=tokens.device)  # (T,)
    x = model.transformer.wte(tokens) + model.transformer.wpe(pos)  # (1, T, C)
    maps = []
    for block in model.transformer.h:
        h = block.ln_1(x)  # (1, T, C)
        q, k, _ = block.attn.c_attn(h).split(cfg.d_model, dim=2)  # 2 x (1, T, C)
        q = q.view(1, T, cfg.n_head, cfg.head_dim).transpose(1, 2)  # (1, nh, T, hs)
        k = k.view(1, T, cfg.n_head, cfg.head_dim).transpose(1, 2)  # (1, nh, T, hs)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(cfg.head_dim)  # (1, nh, T, T)
        if cfg.causal:
            att = att + causal_mask(T, T, 0, x.device).to(att.dtype)  # + M
        maps.append(F.softmax(att.float(), dim=-1)[0])  # (nh, T, T)
        x = block(x)  # (1, T, C): the block's real output feeds the next layer
    return torch.stack(maps)  # (n_layer, nh, T, T)

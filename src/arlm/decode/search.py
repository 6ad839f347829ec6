"""Generation loops written once against the ARModel interface (start / step / State.select).

Ancestral sampling (F19) draws x_{t+1} ~ p(· | x_≤t) from [SOS] until [EOS] or a length limit; the
temperature τ reshapes the distribution, p_τ(w) ∝ p(w)^{1/τ} (τ → 0 tends to greedy, τ = 1 is the model).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from arlm.errors import ConfigError
from arlm.models.base import EOS_ID, PAD_ID, SOS_ID, ARModel


@dataclass
class Samples:
    """tokens (N, ≤max_new) after [SOS], right-padded with [PAD]; per-token log-probs under the model;
    why each row stopped: "eos" or "length"."""

    tokens: Tensor  # (N, L) int64
    log_probs: Tensor  # (N, L) float, 0 where padded
    stop_reason: list[str]


@torch.inference_mode()
def ancestral_sample(
    model: ARModel,
    num_samples: int = 1,
    max_new_tokens: int = 100,
    temperature: float = 1.0,
    seed: int | None = 0,
) -> Samples:
    """Sample ``num_samples`` sequences in one batch; rows that emit [EOS] stop, the rest go on."""
    if num_samples < 1:
        raise ConfigError(f"num_samples must be ≥ 1, got {num_samples}")
    if max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be ≥ 1, got {max_new_tokens}")
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0 for sampling, got {temperature}")
    gen = torch.Generator().manual_seed(seed) if seed is not None else None

    N = num_samples
    tokens = torch.full((N, max_new_tokens), PAD_ID, dtype=torch.long)  # (N, L)
    token_logp = torch.zeros(N, max_new_tokens, dtype=torch.float64)  # (N, L)
    alive = torch.arange(N)  # rows of the output still generating
    state = model.start(N)
    logp, state = model.step(torch.full((N, 1), SOS_ID, dtype=torch.long), state)  # (N, V)
    for t in range(max_new_tokens):
        probs = torch.softmax(logp.double() / temperature, dim=-1)  # (n, V)
        nxt = torch.multinomial(probs, 1, generator=gen).squeeze(1)  # (n,)
        tokens[alive, t] = nxt
        token_logp[alive, t] = logp.double().gather(1, nxt[:, None]).squeeze(1)
        keep = nxt != EOS_ID
        if not keep.all():
            idx = keep.nonzero().squeeze(1)
            alive, nxt, state = alive[idx], nxt[idx], state.select(idx)
        if alive.numel() == 0 or t == max_new_tokens - 1:
            break
        logp, state = model.step(nxt[:, None], state)
    reasons = ["eos" if (tokens[i] == EOS_ID).any() else "length" for i in range(N)]
    return Samples(tokens, token_logp, reasons)

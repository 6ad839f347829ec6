"""Linear interpolation of two models over one vocabulary, per token (Liu et al. 2024's ∞-gram + neural):

    p(w | x_≤t) = (1 - λ) p_A(w | x_≤t) + λ p_B(w | x_≤t),      0 ≤ λ ≤ 1

computed in log space, log p = logaddexp(log(1-λ) + log p_A, log λ + log p_B), so a token that one
model gives probability 0 (an ∞-gram's unseen continuation) keeps the other's share (1-λ) p_A, and the
mixture is finite wherever A is. A mixture is an :class:`~arlm.models.base.ARModel` itself (scores,
full distributions, incremental decoding with both states carried), so every evaluator and decoder
works on it. :func:`choose_lambda` picks λ on a grid from per-token log-probs of held-out text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from arlm.errors import ConfigError

LAMBDA_GRID = tuple(round(0.05 * i, 2) for i in range(21))  # 0, 0.05, …, 1


def check_lambda(lam: float) -> float:
    """λ as a float in [0, 1] (ConfigError otherwise)."""
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0.0 <= float(lam) <= 1.0:
        raise ConfigError(f"the mixture weight λ must be a number in [0, 1], got {lam!r}; e.g. --lambda 0.3")
    return float(lam)


def mix_log_probs(a: np.ndarray | Tensor, b: np.ndarray | Tensor, lam: float):
    """log((1-λ) e^a + λ e^b), elementwise (numpy or torch, float64); λ = 0 gives a, λ = 1 gives b."""
    if lam == 0.0:
        return a
    if lam == 1.0:
        return b
    if isinstance(a, Tensor):
        return torch.logaddexp(a + math.log1p(-lam), b + math.log(lam))
    return np.logaddexp(a + math.log1p(-lam), b + math.log(lam))


@dataclass(frozen=True)
class LambdaChoice:
    """λ chosen on held-out tokens: the grid, the NLL per token (nats) at each point, the best one."""

    grid: tuple[float, ...]
    nll_per_token: tuple[float, ...]
    lam: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; an infinite NLL (a λ that trusts a model giving some token 0) is None."""
        return {"lambda": self.lam, "grid": list(self.grid),
                "nll_per_token": [x if math.isfinite(x) else None for x in self.nll_per_token]}


def choose_lambda(a: np.ndarray, b: np.ndarray, grid: Sequence[float] = LAMBDA_GRID) -> LambdaChoice:
    """The λ of ``grid`` whose mixture gives the lowest mean NLL of per-token log-probs ``a`` and ``b``
    (the same tokens, (N,) each); ties go to the smaller λ."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.size == 0:
        raise ConfigError(f"λ is chosen on the same held-out tokens under both models; got {a.shape} and "
                          f"{b.shape} log-probs")
    grid = tuple(check_lambda(x) for x in grid)
    nll = tuple(float(-mix_log_probs(a, b, lam).mean()) for lam in grid)
    best = min(range(len(grid)), key=lambda i: (nll[i], grid[i]))
    return LambdaChoice(grid, nll, grid[best])


@dataclass
class MixtureState:
    """Both models' states, rows in step."""

    a: Any
    b: Any

    def select(self, index: Tensor) -> MixtureState:
        return MixtureState(self.a.select(index), self.b.select(index))


class MixtureModel:
    """(1-λ) A + λ B, per token, as one ARModel (log-probs in float64 on the CPU)."""

    family = "mixture"

    def __init__(self, a, b, lam: float):
        if a.vocab_size != b.vocab_size:
            raise ConfigError(f"a mixture needs one vocabulary; the models have {a.vocab_size} and "
                              f"{b.vocab_size} tokens")
        self.a, self.b, self.lam = a, b, check_lambda(lam)
        self.vocab_size = a.vocab_size

    @staticmethod
    def _cpu(x: Tensor) -> Tensor:
        return x.detach().to("cpu", torch.float64)

    def score(self, tokens: Tensor) -> Tensor:
        """tokens (B, T) -> (B, T-1) log p_mix of the next tokens."""
        return mix_log_probs(self._cpu(self.a.score(tokens)), self._cpu(self.b.score(tokens)), self.lam)

    def log_probs(self, tokens: Tensor) -> Tensor:
        """tokens (B, T) -> (B, T, V) log p_mix of every next token."""
        return mix_log_probs(self._cpu(self.a.log_probs(tokens)), self._cpu(self.b.log_probs(tokens)),
                             self.lam)

    def start(self, batch_size: int) -> MixtureState:
        return MixtureState(self.a.start(batch_size), self.b.start(batch_size))

    def step(self, tokens: Tensor, state: MixtureState) -> tuple[Tensor, MixtureState]:
        """Feed tokens (B, t) to both -> (log p_mix (B, V), both new states)."""
        out_a, state_a = self.a.step(tokens, state.a)
        out_b, state_b = self.b.step(tokens, state.b)
        return mix_log_probs(self._cpu(out_a), self._cpu(out_b), self.lam), MixtureState(state_a, state_b)

    def eval(self) -> MixtureModel:
        for m in (self.a, self.b):
            if hasattr(m, "eval"):
                m.eval()
        return self

    def __repr__(self) -> str:
        return f"MixtureModel({self.a!r}, {self.b!r}, lam={self.lam})"

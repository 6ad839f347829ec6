"""Tiny hand-made ARModels for testing the code written against the interface."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from arlm.models.base import gather_scores
from arlm.streams import PAD_ID, SOS_ID


@dataclass
class LastTokenState:
    last: Tensor  # (B,) the last token fed, or -1 before any

    def select(self, index: Tensor) -> LastTokenState:
        return LastTokenState(self.last[index])


class BigramTable:
    """p(x_{t+1} | x_t) from a fixed random table; [SOS] and [PAD] are never predicted."""

    def __init__(self, vocab_size: int, seed: int = 0, broken_step: bool = False):
        g = torch.Generator().manual_seed(seed)
        logits = torch.randn(vocab_size, vocab_size, generator=g, dtype=torch.float64)
        logits[:, [PAD_ID, SOS_ID]] = -torch.inf
        self.table = logits.log_softmax(-1)  # (V, V): row = previous token
        self.vocab_size = vocab_size
        self.broken_step = broken_step

    def log_probs(self, tokens: Tensor) -> Tensor:
        return self.table[tokens]  # (B, T, V)

    def score(self, tokens: Tensor) -> Tensor:
        return gather_scores(self.log_probs(tokens), tokens)  # (B, T-1)

    def start(self, batch_size: int) -> LastTokenState:
        return LastTokenState(torch.full((batch_size,), -1))

    def step(self, tokens: Tensor, state: LastTokenState) -> tuple[Tensor, LastTokenState]:
        last = tokens[:, -1]
        if self.broken_step:  # forgets what it was fed: always conditions on [SOS]
            last = torch.full_like(last, SOS_ID)
        return self.table[last], LastTokenState(last)

"""Shared helpers for the model tests (tests/models)."""

import torch

from arlm.streams import EOS_ID, SOS_ID


def random_tokens(vocab_size: int, B: int = 3, T: int = 9, seed: int = 0) -> torch.Tensor:
    """(B, T) seeded random ids in [2, vocab_size), each row starting with [SOS]."""
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(2, vocab_size, (B, T), generator=g)
    t[:, 0] = SOS_ID
    return t


def training_losses(model, lr: float, steps: int) -> list[float]:
    """Adam on one repeating sequence for `steps` steps; the loss before each step."""
    tokens = torch.tensor([[SOS_ID, 4, 5, 6, 4, 5, 6, 4, 5, 6, EOS_ID]])
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = -model.score(tokens).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def save_and_load(model, folder):
    """`model.save(folder)`, then the same class's `load(folder)`: the round trip under test."""
    model.save(folder)
    return type(model).load(folder)

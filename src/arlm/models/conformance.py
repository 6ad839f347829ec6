"""A conformance check that every ARModel family runs (and that a user's own model can run).

It checks what the interface promises, raising :class:`ConformanceError` (an ``AssertionError``, so
test runners report it as a failure; raised, not asserted, so it holds under ``python -O`` too):

1. every next-token distribution sums to one (over all V tokens, in float64);
2. ``score`` equals ``log_probs`` gathered at the next tokens;
3. ``step`` fed one token at a time gives the same log-probs as teacher-forced ``log_probs``,
   and a prefill (many tokens in one ``step``) gives the same as feeding them one by one;
4. ``State.select`` reorders rows: stepping a reordered state equals reordering the stepped outputs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from arlm.models.base import ARModel, target_mask


class ConformanceError(AssertionError):
    """A model breaks a promise of the ARModel interface; the message names the check and the numbers."""


def _close(a: Tensor, b: Tensor, atol: float, what: str) -> None:
    """Raise ConformanceError unless ``a`` and ``b`` agree within ``atol`` (two -inf agree)."""
    a, b = a.double(), b.double()
    both_inf = torch.isneginf(a) & torch.isneginf(b)
    diff = torch.where(both_inf, torch.zeros_like(a), (a - b).abs())
    worst = float(diff.max()) if diff.numel() else 0.0
    if not worst <= atol:  # also catches NaN
        raise ConformanceError(f"{what}: max abs difference {worst:.3g} > {atol:g}")


def check_conformance(model: ARModel, tokens: Tensor, atol: float = 1e-5) -> None:
    """Run all interface checks on ``tokens`` (B, T), rows starting with [SOS]; raises ConformanceError
    naming the first check that fails."""
    tokens = torch.as_tensor(tokens).long()
    B, T = tokens.shape
    V = model.vocab_size

    lp = model.log_probs(tokens)  # (B, T, V)
    if lp.shape != (B, T, V):
        raise ConformanceError(f"log_probs shape {tuple(lp.shape)} != {(B, T, V)}")

    # 1. distributions sum to one
    sums = lp.double().exp().sum(-1)  # (B, T)
    _close(sums, torch.ones_like(sums), 1e-6 if lp.dtype == torch.float64 else 1e-4,
           "sum of next-token probabilities")

    # 2. score == gathered log_probs (where the target is not padding)
    sc = model.score(tokens)  # (B, T-1)
    if sc.shape != (B, T - 1):
        raise ConformanceError(f"score shape {tuple(sc.shape)} != {(B, T - 1)}")
    gathered = lp[:, :-1].gather(-1, tokens[:, 1:].unsqueeze(-1)).squeeze(-1)
    mask = target_mask(tokens)
    _close(sc[mask], gathered[mask], atol, "score vs log_probs")

    # 3. step one token at a time == teacher forcing; prefill == one by one
    state = model.start(B)
    for t in range(T):
        out, state = model.step(tokens[:, t : t + 1], state)  # (B, V)
        _close(out, lp[:, t], atol, f"step at position {t} vs log_probs")
    if T > 2:
        half = T // 2
        state = model.start(B)
        out, state = model.step(tokens[:, :half], state)
        _close(out, lp[:, half - 1], atol, "prefill vs log_probs")
        out, state = model.step(tokens[:, half : half + 1], state)
        _close(out, lp[:, half], atol, "step after prefill vs log_probs")

    # 4. select reorders rows: feed T-1 tokens, reverse the rows, feed the last token
    if T >= 2:
        perm = torch.arange(B - 1, -1, -1)
        state = model.start(B)
        _, state = model.step(tokens[:, : T - 1], state)
        out, _ = model.step(tokens[perm, T - 1 : T], state.select(perm))
        _close(out, lp[perm, T - 1], atol, "step after State.select vs reordered log_probs")

"""Shared helpers for the training tests (tests/train)."""

import numpy as np
import pytest
import torch

from arlm.streams import EOS_ID, SOS_ID


def counting_corpus(n: int, seed: int) -> np.ndarray:
    """[SOS] a run of counting tokens [EOS] …: easy to learn, so the loss must drop."""
    rng = np.random.default_rng(seed)
    out: list[int] = []
    while len(out) < n:
        start, length = rng.integers(4, 12), rng.integers(2, 8)
        out += [SOS_ID, *range(start, start + length), EOS_ID]
    return np.array(out[:n], dtype=np.uint16)


def poison_one_step(trainer, step: int) -> dict[int, list[torch.Tensor]]:
    """Make the trainer's model output NaN at training step ``step`` only. Returns, filled in as
    training runs, the weights each step's forward pass began with (step -> copies)."""
    model = trainer.model
    weights: dict[int, list[torch.Tensor]] = {}
    model.lm_head.register_forward_pre_hook(
        lambda m, a: weights.update({trainer.step: [p.detach().clone() for p in model.parameters()]}))
    model.lm_head.register_forward_hook(lambda m, a, out: out * float("nan") if trainer.step == step else out)
    return weights


def only_the_poisoned_step_was_skipped(weights: dict[int, list[torch.Tensor]], model, step: int) -> bool:
    """Whether the update of ``step`` changed nothing (the weights now are those it began with) while
    the step before it did change the weights."""
    unchanged = all(torch.equal(p, q) for p, q in zip(weights[step], model.parameters(), strict=True))
    before_moved = not all(torch.equal(p, q) for p, q in zip(weights[step - 1], weights[step], strict=True))
    return unchanged and before_moved


def steps_agree(eager, compiled, steps: int) -> None:
    """Run two trainers ``steps`` steps each; their losses, gradient norms and weights must agree to
    rounding (a compiled step computes what the eager step computes)."""
    for _ in range(steps):
        a, b = eager.train_step(), compiled.train_step()
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
    for (name, p), q in zip(eager.model.named_parameters(), compiled.model.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=name)

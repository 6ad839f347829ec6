"""Schedules: the learning rate over training steps, and the teacher-forcing ratio of scheduled sampling.

Both are pure functions of the step number i (0-based, one step = one optimizer update), so a run
resumed from a checkpoint at step i continues on exactly the same curve.

**Learning rate** (F14): a linear warmup over W steps, then a decay to ``min_lr`` at step S
(``max_steps``); with p = (i - W) / (S - W) clipped to [0, 1]:

    warmup    (i < W):  lr_i = lr · (i + 1) / W
    cosine:             lr_i = min_lr + ½ (1 + cos(π p)) (lr - min_lr)
    linear:             lr_i = lr - p (lr - min_lr)
    constant:           lr_i = lr

Warmup keeps the first updates small while Adam's second-moment estimates are still noisy.

**Teacher-forcing ratio** (F11, Bengio, Vinyals, Jaitly & Shazeer 2015, "Scheduled Sampling"):
ε_i is the probability of feeding the *true* previous token at step i; with probability 1 - ε_i the
model's own prediction is fed instead. ε starts near 1 (pure teacher forcing) and decays:

    linear:           ε_i = max(ε_min, k - c·i)          (k ≤ 1, slope c > 0)
    exponential:      ε_i = k^i                          (k < 1)
    inverse sigmoid:  ε_i = k / (k + exp(i / k))         (k ≥ 1: larger k, slower decay)
"""

from __future__ import annotations

import math

from arlm.errors import ConfigError

LR_SCHEDULES = ("cosine", "linear", "constant")
RATIO_SCHEDULES = ("linear", "exponential", "inverse_sigmoid")


def learning_rate(step: int, *, lr: float, warmup_steps: int, max_steps: int,
                  schedule: str = "cosine", min_lr: float = 0.0) -> float:
    """lr_i of the module docstring: linear warmup, then cosine / linear decay to ``min_lr``, or constant."""
    if schedule not in LR_SCHEDULES:
        raise ConfigError(f"unknown learning-rate schedule {schedule!r}; choose one of "
                          f"{', '.join(LR_SCHEDULES)}")
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return lr
    p = min(1.0, max(0.0, (step - warmup_steps) / max(1, max_steps - warmup_steps)))
    if schedule == "cosine":
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * p)) * (lr - min_lr)
    return lr - p * (lr - min_lr)  # linear


def teacher_forcing_ratio(step: int, schedule: str, k: float, c: float = 0.0,
                          min_ratio: float = 0.0) -> float:
    """ε_i of the module docstring: the probability of feeding the true previous token at step i."""
    if schedule == "linear":
        if not c > 0:
            raise ConfigError(f"the linear teacher-forcing schedule needs a slope c > 0, not {c}")
        return max(min_ratio, min(1.0, k - c * step))
    if schedule == "exponential":
        if not 0 < k < 1:
            raise ConfigError(f"the exponential teacher-forcing schedule needs 0 < k < 1, not {k}")
        return max(min_ratio, k**step)
    if schedule == "inverse_sigmoid":
        if not k >= 1:
            raise ConfigError(f"the inverse-sigmoid teacher-forcing schedule needs k ≥ 1, not {k}")
        z = step / k
        return max(min_ratio, k / (k + math.exp(z)) if z < 700 else 0.0)
    raise ConfigError(f"unknown teacher-forcing schedule {schedule!r}; choose one of "
                      f"{', '.join(RATIO_SCHEDULES)}")

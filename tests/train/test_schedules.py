"""Schedules: values at known steps, derived by hand from the formulas in the docstrings."""

import math

import pytest

from arlm.errors import ConfigError
from arlm.train.schedules import learning_rate, teacher_forcing_ratio


def lr(step, schedule="cosine", **kw):
    args = {"lr": 1.0, "warmup_steps": 10, "max_steps": 110, "min_lr": 0.1, **kw}
    return learning_rate(step, schedule=schedule, **args)


def test_warmup_is_linear_up_to_the_peak():
    assert lr(0) == pytest.approx(0.1)  # 1.0 · 1/10
    assert lr(4) == pytest.approx(0.5)
    assert lr(9) == pytest.approx(1.0)


def test_cosine_decays_from_peak_to_min_lr():
    assert lr(10) == pytest.approx(1.0)  # p = 0
    assert lr(60) == pytest.approx(0.55)  # p = 1/2: 0.1 + ½(1 + cos π/2)(0.9)
    assert lr(35) == pytest.approx(0.1 + 0.5 * (1 + math.cos(math.pi / 4)) * 0.9)  # p = 1/4
    assert lr(110) == pytest.approx(0.1)
    assert lr(500) == pytest.approx(0.1)  # past max_steps it stays at min_lr


def test_linear_and_constant():
    assert lr(35, "linear") == pytest.approx(1.0 - 0.25 * 0.9)
    assert lr(110, "linear") == pytest.approx(0.1)
    assert lr(3, "constant") == pytest.approx(0.4)  # warmup still applies
    assert lr(100, "constant") == 1.0


def test_no_warmup_starts_at_the_peak():
    assert lr(0, warmup_steps=0) == 1.0


def test_unknown_lr_schedule():
    with pytest.raises(ConfigError, match="unknown learning-rate schedule"):
        lr(0, "exotic")


def test_teacher_forcing_linear():
    assert teacher_forcing_ratio(0, "linear", k=1.0, c=0.1) == 1.0
    assert teacher_forcing_ratio(3, "linear", k=1.0, c=0.1) == pytest.approx(0.7)
    assert teacher_forcing_ratio(30, "linear", k=1.0, c=0.1, min_ratio=0.2) == 0.2


def test_teacher_forcing_exponential():
    assert teacher_forcing_ratio(0, "exponential", k=0.9) == 1.0
    assert teacher_forcing_ratio(10, "exponential", k=0.9) == pytest.approx(0.9**10)


def test_teacher_forcing_inverse_sigmoid():
    assert teacher_forcing_ratio(0, "inverse_sigmoid", k=10) == pytest.approx(10 / 11)
    # ε = ½ where exp(i/k) = k, i.e. i = k ln k
    assert teacher_forcing_ratio(10 * math.log(10), "inverse_sigmoid", k=10) == pytest.approx(0.5)
    assert teacher_forcing_ratio(10**6, "inverse_sigmoid", k=10) == 0.0  # no overflow


@pytest.mark.parametrize(("schedule", "k", "c"), [("linear", 1.0, 0.0), ("exponential", 1.5, 0.0),
                                                  ("inverse_sigmoid", 0.5, 0.0), ("cubic", 1.0, 0.0)])
def test_teacher_forcing_bad_settings(schedule, k, c):
    with pytest.raises(ConfigError):
        teacher_forcing_ratio(1, schedule, k=k, c=c)

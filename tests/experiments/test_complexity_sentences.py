"""The complexity report's sentences follow its numbers: the Transformer's training step against the
LSTM's is called slower, faster or mixed from the measured times (synthetic results flip it), and the
fit's interval uses Student's t at its own degrees of freedom."""

from __future__ import annotations

import numpy as np
import pytest

from arlm.experiments.complexity import _against_the_lstm, fit_power_law


def _results(lstm: list[float], transformer: list[float]) -> dict:
    lengths = [64, 128, 256]
    return {"series": {"train_rnn": {"lengths": lengths, "seconds": lstm},
                       "train_transformer": {"lengths": lengths, "seconds": transformer}}}


@pytest.mark.parametrize(("lstm", "transformer", "words"), [
    ([1.0, 2.0, 4.0], [3.0, 8.0, 30.0],
     "does not make it faster here: at every length its step takes 3.0–7.5×"),
    ([3.0, 8.0, 30.0], [1.0, 2.0, 4.0], "0.13–0.33× the LSTM's at every length: all L positions at once pay"),
    ([1.0, 2.0, 4.0], [0.5, 2.0, 8.0], "0.50–2.00× the LSTM's: faster at some lengths, slower at others"),
])
def test_the_transformer_against_the_lstm_is_said_from_the_numbers(lstm, transformer, words):
    assert words in _against_the_lstm(_results(lstm, transformer))


def test_the_fit_interval_uses_t_at_its_degrees_of_freedom():
    """13 points: 11 degrees of freedom, t = 2.201 (the old table rounded up to 15's 2.131)."""
    rng = np.random.default_rng(0)
    lengths = [2 ** (i / 2 + 3) for i in range(13)]
    times = [n ** 1.5 * float(rng.lognormal(0, 0.1)) for n in lengths]
    fit = fit_power_law(lengths, times)
    half = (fit["ci"][1] - fit["ci"][0]) / 2
    x, y = np.log(lengths), np.log(times)
    b, a = np.polyfit(x, y, 1)
    residuals = y - (a + b * x)
    se = np.sqrt((residuals ** 2).sum() / (len(x) - 2) / ((x - x.mean()) ** 2).sum())
    assert half == pytest.approx(2.200985 * se, rel=1e-5)

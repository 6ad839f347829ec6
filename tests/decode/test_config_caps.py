"""Sizes have caps that the error names, and penalties a range that keeps the scores finite."""

from __future__ import annotations

import math

import pytest
import torch

from arlm.decode.config import (
    MAX_BEAMS,
    MAX_NEW_TOKENS,
    MAX_SEQUENCES,
    MAX_TOTAL_TOKENS,
    REPETITION_PENALTY_RANGE,
    DecodingConfig,
    DecodingError,
)


@pytest.mark.parametrize(("fields", "field", "cap"), [
    ({"max_new_tokens": 10**12}, "max_new_tokens", MAX_NEW_TOKENS),
    ({"num_samples": 10**12}, "num_samples", MAX_SEQUENCES),
    ({"strategy": "beam", "num_beams": 10**12}, "num_beams", MAX_BEAMS),
])
def test_a_size_past_its_cap_names_the_cap(fields, field, cap):
    with pytest.raises(DecodingError, match=f"{field} must be an integer ≥ 1 and ≤ {cap:,}") as info:
        DecodingConfig(**fields)
    assert info.value.field == field


def test_the_caps_themselves_are_accepted():
    DecodingConfig(max_new_tokens=MAX_NEW_TOKENS)
    DecodingConfig(num_samples=MAX_SEQUENCES, max_new_tokens=MAX_TOTAL_TOKENS // MAX_SEQUENCES)


def test_sequences_times_length_past_the_buffer_cap_is_refused():
    with pytest.raises(DecodingError, match="more than the 100,000,000 new tokens") as info:
        DecodingConfig(num_samples=10_000, max_new_tokens=100_000)
    assert info.value.field == "max_new_tokens"


@pytest.mark.parametrize("penalty", [1e-320, 5e-324, 1e-4, 1e4, 1e300, math.inf, math.nan])
def test_a_repetition_penalty_outside_its_range_is_refused(penalty):
    with pytest.raises(DecodingError, match=r"repetition_penalty must be > 0, in \[0\.001, 1000\]"):
        DecodingConfig(repetition_penalty=penalty)


@pytest.mark.parametrize("penalty", REPETITION_PENALTY_RANGE)
def test_penalties_at_the_ends_of_the_range_keep_probabilities_finite(penalty):
    config = DecodingConfig(repetition_penalty=penalty)
    history = torch.arange(8)[None, :]  # (1, 8): every token seen
    logits = torch.linspace(-80.0, 80.0, 8)[None, :].log_softmax(-1) * 30  # (1, V) extreme scores
    shaped = config.processors()(history, logits)
    probs = shaped.softmax(-1)
    assert torch.isfinite(probs).all() and math.isclose(float(probs.sum()), 1.0, rel_tol=1e-5)

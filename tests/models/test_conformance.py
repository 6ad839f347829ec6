"""The conformance check itself: it passes correct models and catches a model broken in each promise,
with a ConformanceError naming that promise (raised, not asserted: it holds under ``python -O``)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

from arlm.models.base import gather_scores
from arlm.models.conformance import ConformanceError, check_conformance
from arlm.streams import PAD_ID, SOS_ID
from model_helpers import random_tokens
from toy_models import BigramTable

V = 9


def _tokens(seed: int = 1) -> Tensor:
    return random_tokens(V, B=3, T=7, seed=seed)  # (3, 7)


def _sum_tokens() -> Tensor:
    """(3, 7) tokens whose first and last rows' prefix sums differ mod V after [SOS]: reversing the
    rows of a PrefixSum state changes what those rows predict."""
    return _tokens(seed=2)


@dataclass
class SumState:
    total: Tensor  # (B,) the sum of the tokens fed so far

    def select(self, index: Tensor) -> SumState:
        return SumState(self.total[index])


class PrefixSum:
    """p(x_{t+1} | x_{≤t}) from a fixed random table row picked by (x_1 + … + x_t) mod V: a model whose
    state matters (unlike a bigram's), so a broken prefill state or ``select`` shows. Each ``broken``
    flag breaks one promise of the interface."""

    def __init__(self, broken: str | None = None) -> None:
        g = torch.Generator().manual_seed(0)
        logits = torch.randn(V, V, generator=g, dtype=torch.float64)
        logits[:, [PAD_ID, SOS_ID]] = -torch.inf
        self.table = logits.log_softmax(-1)  # (V, V): row = prefix sum mod V
        self.vocab_size = V
        self.broken = broken

    def log_probs(self, tokens: Tensor) -> Tensor:
        lp = self.table[tokens.cumsum(1) % V]  # (B, T, V)
        if self.broken == "log_probs shape":
            return lp[:, 1:]
        if self.broken == "unnormalized":
            return lp + 0.1
        return lp

    def score(self, tokens: Tensor) -> Tensor:
        scores = gather_scores(self.log_probs(tokens), tokens)  # (B, T-1)
        if self.broken == "score shape":
            return scores[:, 1:]
        if self.broken == "score":
            return scores + 0.01
        return scores

    def start(self, batch_size: int) -> SumState:
        return SumState(torch.zeros(batch_size, dtype=torch.long))

    def step(self, tokens: Tensor, state: SumState) -> tuple[Tensor, SumState]:
        total = state.total + tokens.sum(1)  # (B,)
        seen = total
        if self.broken == "step" and tokens.shape[1] == 1:
            seen = total - tokens[:, -1]  # answers as if the new token were not there
        if self.broken == "prefill" and tokens.shape[1] > 1:
            seen = state.total + tokens[:, -1]  # answers from the last token of a prefill only
        if self.broken == "prefill state" and tokens.shape[1] > 1:
            total = state.total + tokens[:, -1]  # answers right, but keeps the last token only
        new_state = SumState(total)
        if self.broken == "select":
            new_state.select = lambda index: new_state  # ignores the order it is given
        return self.table[seen % V], new_state  # (B, V)


def test_correct_models_pass():
    check_conformance(BigramTable(V), _tokens())
    check_conformance(PrefixSum(), _sum_tokens())


def test_step_that_ignores_its_input_is_caught():
    with pytest.raises(ConformanceError, match="step"):
        check_conformance(BigramTable(V, broken_step=True), _tokens())


@pytest.mark.parametrize(("broken", "message"), [
    ("log_probs shape", r"log_probs shape \(3, 6, 9\) != \(3, 7, 9\)"),
    ("unnormalized", "sum of next-token probabilities"),
    ("score shape", r"score shape \(3, 5\) != \(3, 6\)"),
    ("score", "score vs log_probs"),
    ("step", "step at position 0 vs log_probs"),
    ("prefill", "^prefill vs log_probs"),
    ("prefill state", "step after prefill vs log_probs"),
    ("select", "step after State.select vs reordered log_probs"),
])
def test_each_broken_promise_is_caught_by_name(broken, message):
    with pytest.raises(ConformanceError, match=message):
        check_conformance(PrefixSum(broken), _sum_tokens())


def test_a_conformance_error_is_an_assertion_error():  # test runners report it as a failure
    with pytest.raises(AssertionError, match="score vs log_probs"):
        check_conformance(PrefixSum("score"), _sum_tokens())

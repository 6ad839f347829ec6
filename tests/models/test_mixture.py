"""The per-token mixture (1-λ) p_A + λ p_B: an ARModel, finite where one side is 0, λ chosen on held-out
tokens; and per-token scores that line up with the likelihood report."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tests.models.test_infinigram import VOCAB, sequences

from arlm.errors import ConfigError
from arlm.evaluate.likelihood import evaluate_likelihood, pad_batch
from arlm.evaluate.token_scores import token_log_probs
from arlm.models.conformance import check_conformance
from arlm.models.infinigram import InfiniGramModel
from arlm.models.mixture import MixtureModel, choose_lambda, mix_log_probs
from arlm.models.ngram import NGramModel


@pytest.fixture(scope="module")
def pair():
    train = np.concatenate(sequences(0, 80, 10))
    kn = NGramModel.fit(train, 3, VOCAB, "mkn", discount_fallback=True)
    return kn, InfiniGramModel.fit(train, VOCAB)


def test_the_mixture_is_an_armodel(pair):
    check_conformance(MixtureModel(*pair, 0.3), torch.from_numpy(pad_batch(sequences(1, 5, 12))))


def test_mixture_equals_the_weighted_sum_and_stays_finite(pair):
    kn, inf = pair
    tokens = torch.from_numpy(pad_batch(sequences(2, 20, 14)))
    a, b = kn.score(tokens), inf.score(tokens)
    mixed = MixtureModel(kn, inf, 0.25).score(tokens)
    assert torch.allclose(mixed.exp(), 0.75 * a.exp() + 0.25 * b.exp())
    scored = tokens[:, 1:] != 0
    assert torch.isneginf(b[scored]).any() and torch.isfinite(mixed[scored]).all()
    assert torch.equal(MixtureModel(kn, inf, 0.0).score(tokens), a.double())


def test_lambda_is_the_grid_point_with_the_lowest_held_out_nll(pair):
    rng = np.random.default_rng(3)
    a, b = np.log(rng.uniform(0.05, 1, 500)), np.log(rng.uniform(0.05, 1, 500))
    choice = choose_lambda(a, b)
    dense = [-(mix_log_probs(a, b, lam)).mean() for lam in choice.grid]
    assert choice.lam == choice.grid[int(np.argmin(dense))]
    assert choice.nll_per_token == pytest.approx(dense)
    assert choose_lambda(a, np.full(500, -np.inf)).lam == 0.0  # B gives every token 0: no weight
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        MixtureModel(*pair, 1.5)


def test_token_scores_line_up_with_the_likelihood_report(pair):
    kn, inf = pair
    test = sequences(4, 30, 20)
    for context in (None, 6):
        logp = token_log_probs(kn, test, context=context)
        assert len(logp) == sum(len(s) - 1 for s in test)
        report = evaluate_likelihood(kn, test, context=context, show_progress=False)
        assert -logp.sum() == pytest.approx(report.nll)
    whole = token_log_probs(inf, test)  # no window: each row's targets in stream order
    first = inf.score(torch.from_numpy(test[0][None])).numpy()[0]
    assert np.array_equal(whole[: len(first)], first)
    assert not math.isnan(whole.sum())

"""Ancestral sampling on a toy model: reproducible, stops on [EOS], frequencies follow the model."""

import numpy as np
import pytest
import torch

from arlm.decode.search import ancestral_sample
from arlm.errors import ConfigError
from arlm.models.base import EOS_ID, PAD_ID, SOS_ID
from toy_models import BigramTable


def test_same_seed_same_samples_and_eos_stops_rows():
    model = BigramTable(8, seed=2)
    a = ancestral_sample(model, num_samples=16, max_new_tokens=30, seed=5)
    b = ancestral_sample(model, num_samples=16, max_new_tokens=30, seed=5)
    assert torch.equal(a.tokens, b.tokens)
    for row, reason in zip(a.tokens, a.stop_reason, strict=True):
        ids = row.tolist()
        if reason == "eos":
            end = ids.index(EOS_ID)
            assert all(i == PAD_ID for i in ids[end + 1 :])
        assert SOS_ID not in ids


def test_first_token_frequencies_follow_the_model():
    model = BigramTable(6, seed=4)
    n = 20000
    s = ancestral_sample(model, num_samples=n, max_new_tokens=1, seed=0)
    counts = np.bincount(s.tokens[:, 0].numpy(), minlength=6)
    expected = model.table[SOS_ID].exp().numpy() * n
    support = expected > 0
    chi2 = (((counts - expected) ** 2)[support] / expected[support]).sum()
    assert counts[~support].sum() == 0
    assert chi2 < 20.5  # 99.9% quantile of chi-square with 3 degrees of freedom is 16.3


def test_log_probs_are_the_models():
    model = BigramTable(7, seed=1)
    s = ancestral_sample(model, num_samples=4, max_new_tokens=10, seed=3)
    for row, lp in zip(s.tokens, s.log_probs, strict=True):
        prev = SOS_ID
        for tok, v in zip(row.tolist(), lp.tolist(), strict=True):
            if tok == PAD_ID:
                break
            assert v == pytest.approx(float(model.table[prev, tok]))
            prev = tok


@pytest.mark.parametrize("kw", [{"num_samples": 0}, {"max_new_tokens": 0}, {"temperature": 0}])
def test_bad_settings(kw):
    with pytest.raises(ConfigError):
        ancestral_sample(BigramTable(5), **kw)

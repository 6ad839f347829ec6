"""The conformance check itself: it passes a correct model and catches a broken one."""

import pytest
import torch

from arlm.models.base import SOS_ID
from arlm.models.conformance import check_conformance
from toy_models import BigramTable


def _tokens(B=3, T=7, V=9, seed=1):
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(2, V, (B, T), generator=g)
    t[:, 0] = SOS_ID
    return t


def test_correct_model_passes():
    check_conformance(BigramTable(9), _tokens())


def test_step_that_ignores_its_input_is_caught():
    with pytest.raises(AssertionError, match="step"):
        check_conformance(BigramTable(9, broken_step=True), _tokens())

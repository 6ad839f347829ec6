"""The conformance check itself: it passes a correct model and catches a broken one."""

import pytest

from arlm.models.conformance import check_conformance
from model_helpers import random_tokens
from toy_models import BigramTable


def _tokens():
    return random_tokens(9, B=3, T=7, seed=1)


def test_correct_model_passes():
    check_conformance(BigramTable(9), _tokens())


def test_step_that_ignores_its_input_is_caught():
    with pytest.raises(AssertionError, match="step"):
        check_conformance(BigramTable(9, broken_step=True), _tokens())

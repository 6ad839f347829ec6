"""Fixed-window neural LM (Bengio et al. 2003): interface, the k-token window, files."""

import functools

import pytest
import torch

from arlm.errors import ConfigError, MismatchError
from arlm.models import neural
from arlm.models.base import gather_scores
from arlm.models.conformance import check_conformance
from arlm.models.registry import load_family_model
from arlm.models.window import WindowConfig, WindowLM
from arlm.streams import PAD_ID, SOS_ID
from model_helpers import random_tokens, save_and_load, training_losses

V = 13


_tokens = functools.partial(random_tokens, V)


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(vocab_size=V, context=3, d_embed=5, d_hidden=7) | kw
    return WindowLM(WindowConfig(**cfg)).double().eval()


@pytest.mark.parametrize("kw", [{}, {"direct": True}, {"activation": "relu", "context": 1},
                                {"context": 12}])
def test_conformance(kw):
    with torch.no_grad():
        check_conformance(_model(**kw), _tokens(), atol=1e-9)


def test_sos_and_pad_are_never_predicted():
    lp = _model().log_probs(_tokens())  # (B, T, V)
    assert torch.isneginf(lp[..., [PAD_ID, SOS_ID]]).all()
    assert torch.isfinite(lp[..., 2:]).all()


def test_output_depends_on_exactly_the_last_k_tokens():
    k = 3
    model, tokens = _model(context=k), _tokens(B=1, T=9)
    base = model.log_probs(tokens)[0]  # (T, V)
    t = 7
    older = tokens.clone()
    older[0, t - k] = 2 if tokens[0, t - k] != 2 else 3  # just outside the window of position t
    inside = tokens.clone()
    inside[0, t - k + 1] = 2 if tokens[0, t - k + 1] != 2 else 3  # the oldest token inside it
    assert torch.equal(model.log_probs(older)[0, t], base[t])
    assert not torch.allclose(model.log_probs(inside)[0, t], base[t])


def test_missing_predecessors_are_pad_with_zero_embedding():
    """The documented start convention: position 0 sees [PAD]*(k-1) + [SOS], and [PAD] adds zero."""
    model = _model(context=3)
    assert torch.count_nonzero(model.embed.weight[PAD_ID]) == 0
    tokens = _tokens(B=1, T=4)
    explicit = torch.cat([torch.full((1, 2), PAD_ID), tokens], dim=1)  # left-padded by hand
    assert torch.allclose(model.log_probs(explicit)[0, 2:], model.log_probs(tokens)[0])


def test_direct_connection_changes_the_output():
    torch.manual_seed(0)
    model = _model(direct=True)
    tokens = _tokens()
    before = model.log_probs(tokens)
    with torch.no_grad():
        model.direct.weight.zero_()
    after = model.log_probs(tokens)
    assert not torch.allclose(before, after)
    assert _model(direct=False).direct is None


def test_score_in_small_chunks_equals_gathered_log_probs(monkeypatch):
    model, tokens = _model(), _tokens()
    monkeypatch.setattr(neural, "SCORE_CHUNK", 2 * V)  # two positions per chunk
    assert torch.allclose(model.score(tokens), gather_scores(model.log_probs(tokens), tokens))


def test_save_load_gives_identical_log_probs(tmp_path):
    model, tokens = _model(direct=True), _tokens()
    loaded = save_and_load(model, tmp_path / "m")
    assert loaded.config == model.config
    assert torch.equal(loaded.log_probs(tokens), model.log_probs(tokens))
    assert load_family_model(tmp_path / "m").config == model.config


def test_load_refuses_another_family(tmp_path):
    from arlm.models.rnn import RNNLM, RNNConfig

    RNNLM(RNNConfig(V, d_embed=4, d_hidden=4)).save(tmp_path / "r")
    with pytest.raises(MismatchError, match="rnn"):
        WindowLM.load(tmp_path / "r")


def test_training_lowers_the_loss():
    model = _model().float().train()
    losses = training_losses(model, lr=0.05, steps=30)
    assert losses[-1] < 0.2 * losses[0]


@pytest.mark.parametrize("kw", [{"activation": "sigmoidish"}, {"context": 0}, {"dropout": 1.0}])
def test_bad_config_is_a_config_error(kw):
    with pytest.raises(ConfigError):
        WindowConfig(vocab_size=V, **kw)

"""RNN LM (Elman, LSTM, GRU): interface, carried hidden state (truncated BPTT), tying, files."""

import functools

import pytest
import torch

from arlm.errors import ConfigError
from arlm.models.conformance import check_conformance
from arlm.models.rnn import RNNLM, RNNConfig, RNNState
from arlm.streams import PAD_ID, SOS_ID
from model_helpers import random_tokens, save_and_load, training_losses

V = 13


_tokens = functools.partial(random_tokens, V)


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(vocab_size=V, cell="lstm", d_embed=6, d_hidden=6, n_layers=2) | kw
    return RNNLM(RNNConfig(**cfg)).double().eval()


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("n_layers", [1, 2])
def test_conformance(cell, n_layers):
    with torch.no_grad():
        check_conformance(_model(cell=cell, n_layers=n_layers), _tokens(), atol=1e-9)


def test_conformance_float32():
    with torch.no_grad():
        check_conformance(_model(tie_weights=True).float(), _tokens(), atol=1e-5)


def test_sos_and_pad_are_never_predicted():
    lp = _model().log_probs(_tokens())
    assert torch.isneginf(lp[..., [PAD_ID, SOS_ID]]).all()
    assert torch.isfinite(lp[..., 2:]).all()


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_carried_hidden_state_continues_the_stream(cell):
    """Truncated BPTT: two batches with the hidden state carried give the one long batch's logits."""
    model, tokens = _model(cell=cell), _tokens(T=10)
    full, _ = model(tokens)  # (B, T, V)
    first, hidden = model(tokens[:, :4])
    second, _ = model(tokens[:, 4:], hidden.detach())
    assert torch.allclose(torch.cat([first, second], dim=1), full)
    fresh, _ = model(tokens[:, 4:])  # without the carried state the second half differs
    assert not torch.allclose(fresh, full[:, 4:])


def test_detach_cuts_the_graph():
    model = _model().train()
    _, hidden = model(_tokens())
    assert hidden.h.requires_grad and hidden.c.requires_grad
    cut = hidden.detach()
    assert not cut.h.requires_grad and not cut.c.requires_grad
    assert torch.equal(cut.h, hidden.h) and torch.equal(cut.c, hidden.c)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_state_shapes_and_select_on_dim_1(cell):
    model = _model(cell=cell, n_layers=2, d_hidden=5, d_embed=4)
    state = model.start(3)
    assert state.h.shape == (2, 3, 5)
    assert (state.c is not None) == (cell == "lstm")
    _, state = model.step(_tokens(B=3, T=4), state)
    picked = state.select(torch.tensor([2, 2, 0, 1]))
    assert isinstance(picked, RNNState)
    assert torch.equal(picked.h, state.h[:, [2, 2, 0, 1]])
    if cell == "lstm":
        assert torch.equal(picked.c, state.c[:, [2, 2, 0, 1]])


def test_tied_weights_share_storage():
    model = _model(tie_weights=True)
    assert model.lm_head.weight is model.embed.weight
    assert model.lm_head.weight.data_ptr() == model.embed.weight.data_ptr()
    untied = _model(tie_weights=False)
    assert untied.lm_head.weight.data_ptr() != untied.embed.weight.data_ptr()
    assert model.num_parameters() == untied.num_parameters() - V * 6


def test_tying_needs_equal_sizes():
    with pytest.raises(ConfigError, match="d_embed == d_hidden"):
        RNNConfig(V, d_embed=4, d_hidden=6, tie_weights=True)


@pytest.mark.parametrize("tie", [False, True])
def test_save_load_gives_identical_log_probs(tmp_path, tie):
    model, tokens = _model(tie_weights=tie, cell="gru"), _tokens()
    loaded = save_and_load(model, tmp_path / "m")
    assert loaded.config == model.config
    assert torch.equal(loaded.double().log_probs(tokens), model.log_probs(tokens))
    if tie:
        assert loaded.lm_head.weight.data_ptr() == loaded.embed.weight.data_ptr()


def test_training_lowers_the_loss():
    model = _model(n_layers=1).float().train()
    losses = training_losses(model, lr=0.05, steps=40)
    assert losses[-1] < 0.2 * losses[0]


@pytest.mark.parametrize("kw", [{"cell": "transformer"}, {"n_layers": 0}, {"dropout": -0.1}])
def test_bad_config_is_a_config_error(kw):
    with pytest.raises(ConfigError):
        RNNConfig(vocab_size=V, **kw)

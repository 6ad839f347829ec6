"""attention_weights: each head's softmax(QKᵀ/√D + M), checked against the attention the model runs."""

import pytest
import torch

from arlm.errors import ConfigError
from arlm.models.attention_maps import attention_weights, causal_grid
from arlm.models.rnn import RNNLM, RNNConfig
from arlm.models.transformer import TransformerConfig, TransformerLM
from model_helpers import random_tokens


def _model(causal: bool = True) -> TransformerLM:
    torch.manual_seed(0)
    return TransformerLM(TransformerConfig(vocab_size=11, block_size=12, n_layer=2, n_head=2, d_model=8,
                                           causal=causal)).eval()


def test_weights_reproduce_each_attention_layer():
    model = _model()
    tokens = random_tokens(11, B=1, T=9)
    A = attention_weights(model, tokens)  # (L, H, T, T)
    assert A.shape == (2, 2, 9, 9)
    assert torch.allclose(A.sum(-1), torch.ones(2, 2, 9), atol=1e-6)
    assert (A.triu(1) == 0).all()
    with torch.no_grad():  # A V, heads joined and projected, is what the layer's attention outputs
        x = model.transformer.wte(tokens) + model.transformer.wpe(torch.arange(9))
        for layer, block in enumerate(model.transformer.h):
            h = block.ln_1(x)
            v = block.attn.c_attn(h).split(8, dim=2)[2].view(1, 9, 2, 4).transpose(1, 2)  # (1, nh, T, hs)
            y = (A[layer][None] @ v).transpose(1, 2).reshape(1, 9, 8)
            assert torch.allclose(block.attn.c_proj(y), block.attn(h), atol=1e-5)
            x = block(x)


def test_without_the_mask_every_position_is_read():
    A = attention_weights(_model(causal=False), random_tokens(11, B=1, T=6))
    above = ~causal_grid(6)  # (T, T): the positions the causal mask would hide
    assert (A[..., above] > 0).all()


def test_grid_and_bad_input():
    assert causal_grid(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]
    with pytest.raises(ConfigError, match="block_size"):
        attention_weights(_model(), torch.ones(13, dtype=torch.long))
    with pytest.raises(ConfigError, match="Transformer"):
        attention_weights(RNNLM(RNNConfig(vocab_size=11)), torch.ones(3, dtype=torch.long))

"""int8 dynamic quantization: Linear layers become int8, the model stays close, bad input is refused."""

import pytest
import torch

from arlm.errors import ConfigError
from arlm.models.quantize import check_quantize, quantize_int8, quantize_model
from arlm.models.transformer import TransformerConfig, TransformerLM
from toy_models import BigramTable

pytestmark = pytest.mark.usefixtures("one_thread")


def _model():
    torch.manual_seed(0)
    config = TransformerConfig(vocab_size=30, block_size=32, n_layer=2, n_head=2, d_model=64)
    return TransformerLM(config).eval()


def test_linear_layers_become_int8_and_the_distribution_stays_close():
    model = _model()
    q = quantize_int8(model)
    assert type(model.transformer.h[0].mlp.c_fc) is torch.nn.Linear  # the original is untouched
    kinds = {type(m).__name__ for m in q.modules()}
    assert "Linear" in kinds and not any(type(m) is torch.nn.Linear for m in q.modules())
    tokens = torch.randint(3, 30, (2, 20), generator=torch.Generator().manual_seed(0))
    lp, lq = model.log_probs(tokens), q.log_probs(tokens)
    assert torch.allclose(lq.exp().sum(-1), torch.ones(2, 20), atol=1e-5)  # still distributions
    diff = (lq - lp)[..., 2:].abs()  # [PAD] and [SOS] stay -inf in both
    assert diff.max() < 0.05 and diff.max() > 0  # close, not equal
    assert torch.allclose(q.score(tokens), lq[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0], atol=1e-5)


def test_bad_input_is_a_config_error():
    with pytest.raises(ConfigError, match="int8"):
        check_quantize("int4")
    with pytest.raises(ConfigError, match="CPU"):
        check_quantize("int8", "cuda")
    with pytest.raises(ConfigError, match="CPU"):
        quantize_int8(_model().to("meta"))  # any non-CPU device
    with pytest.raises(ConfigError, match="neural"):
        quantize_int8(BigramTable(5))  # a count-based toy model
    with pytest.raises(ConfigError, match="fp32"):
        quantize_int8(_model().to(torch.bfloat16))
    model = _model()
    assert quantize_model(model, None) is model

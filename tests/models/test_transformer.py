"""Decoder-only Transformer: interface, the causal mask at work, the KV cache, tying, files."""

import functools

import pytest
import torch
import torch.nn.functional as F

from arlm.errors import ConfigError, FormatError
from arlm.models.conformance import check_conformance
from arlm.models.transformer import KVCache, TransformerConfig, TransformerLM, causal_mask
from arlm.streams import PAD_ID, SOS_ID
from model_helpers import random_tokens, save_and_load, training_losses

V = 13


_tokens = functools.partial(random_tokens, V)


def _config(**kw):
    return TransformerConfig(**(dict(vocab_size=V, block_size=16, n_layer=2, n_head=2, d_model=8)
                                | kw))


def _model(seed=0, dtype=torch.float64, **kw):
    torch.manual_seed(seed)
    return TransformerLM(_config(**kw)).to(dtype).eval()


def _twin(model, **kw):
    """The same weights under another configuration (e.g. the other attention path)."""
    other = TransformerLM(_config(**kw)).to(next(model.parameters()).dtype).eval()
    other.load_state_dict(model.state_dict())
    return other


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-9), (torch.float32, 1e-5)])
def test_conformance(attention, dtype, atol):
    with torch.no_grad():
        check_conformance(_model(attention=attention, dtype=dtype), _tokens(), atol=atol)


def test_sos_and_pad_are_never_predicted():
    lp = _model().log_probs(_tokens())
    assert torch.isneginf(lp[..., [PAD_ID, SOS_ID]]).all()
    assert torch.isfinite(lp[..., 2:]).all()


def test_mask_is_upper_triangular_minus_infinity():
    m = causal_mask(4, 4)
    assert torch.equal(torch.isneginf(m), torch.ones(4, 4, dtype=torch.bool).triu(1))
    assert (m[~torch.isneginf(m)] == 0).all()
    shifted = causal_mask(2, 5, offset=3)  # queries at positions 3, 4 over keys 0..4
    assert torch.equal(torch.isneginf(shifted), torch.tensor([[0, 0, 0, 0, 1], [0, 0, 0, 0, 0]]).bool())


@pytest.mark.parametrize("causal", [True, False])
def test_explicit_path_equals_sdpa(causal):
    sdpa = _model(dtype=torch.float32, causal=causal)
    explicit = _twin(sdpa, attention="explicit", causal=causal)
    tokens = _tokens()
    a, b = sdpa.log_probs(tokens), explicit.log_probs(tokens)
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(a, _twin(sdpa, causal=not causal).log_probs(tokens), atol=1e-3)


def test_a_bf16_training_pass_on_the_cpu_takes_the_explicit_products(monkeypatch):
    # sdpa_pays: torch's CPU flash-attention backward in bf16 is slow, so a bf16 pass that will be
    # differentiated computes softmax(QKᵀ/√D + M) V itself; the fused kernel still serves every other pass
    calls = []
    fused = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or fused(*a, **k))
    model = _model(dtype=torch.float32).train()
    tokens = _tokens()

    def grads(dtype):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            logits, _ = model(tokens)
        logits.float().logsumexp(-1).mean().backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    exact = grads(torch.float32)
    assert len(calls) == 2  # the fp32 pass: one fused call a layer
    mixed = grads(torch.bfloat16)
    assert len(calls) == 2  # the bf16 pass made none
    assert torch.allclose(mixed, exact, atol=2e-2, rtol=5e-2) and not torch.equal(mixed, exact)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(tokens)
    assert len(calls) == 4  # a bf16 pass without gradients keeps the fused kernel


def test_the_compiled_gelu_form_equals_the_eager_gelu(monkeypatch):
    # under torch.compile the MLP writes GPT-2's tanh GELU as h·σ(2z): the same function and gradient
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(vocab_size=8, block_size=4, d_model=16, n_head=2))
    mlp = model.transformer.h[0].mlp
    x = (torch.randn(3, 5, 16) * 4).requires_grad_()
    eager = mlp(x)
    (g_eager,) = torch.autograd.grad(eager.square().sum(), x)
    monkeypatch.setattr("arlm.models.transformer._compiling", lambda: True)
    sigmoid_form = mlp(x)
    (g_sigmoid,) = torch.autograd.grad(sigmoid_form.square().sum(), x)
    assert not torch.equal(eager, sigmoid_form)  # the other code path ran
    torch.testing.assert_close(sigmoid_form, eager, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g_sigmoid, g_eager, rtol=1e-5, atol=1e-5)


def test_the_exact_gelu_is_erf_in_the_model_the_compiled_form_and_the_lean_step(monkeypatch):
    """gelu="exact" (nanoGPT's nn.GELU()) computes h Φ(h), unlike GPT-2's tanh form, eagerly, under
    compile (which keeps erf) and in the lean decoding step."""
    from arlm.decode.fast import FastDecoder

    torch.manual_seed(0)
    model = TransformerLM(_config(d_model=16, gelu="exact")).eval()
    mlp = model.transformer.h[0].mlp
    x = torch.randn(3, 5, 16) * 4
    erf_form = mlp.c_proj(F.gelu(mlp.c_fc(x)))  # (3, 5, 16)
    torch.testing.assert_close(mlp(x), erf_form)
    assert not torch.allclose(mlp.gelu(x), F.gelu(x, approximate="tanh"), atol=1e-4)  # not the tanh form
    monkeypatch.setattr("arlm.models.transformer._compiling", lambda: True)
    torch.testing.assert_close(mlp(x), erf_form)
    monkeypatch.undo()
    tokens = _tokens()
    fast = FastDecoder(model)
    logp, _ = fast.step(tokens, fast.start(tokens.shape[0]))
    torch.testing.assert_close(logp, model.log_probs(tokens)[:, -1], rtol=1e-5, atol=1e-5)


def _changed_at(tokens, j):
    other = tokens.clone()
    other[:, j] = torch.where(tokens[:, j] == 2, 3, 2)
    return other


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
def test_with_the_mask_future_tokens_never_change_the_past(attention):
    model, tokens = _model(attention=attention), _tokens(B=2, T=8)
    base = model.log_probs(tokens)
    for j in range(1, 8):
        out = model.log_probs(_changed_at(tokens, j))
        assert torch.allclose(out[:, :j], base[:, :j], atol=1e-12), f"token {j} leaked backwards"
        assert not torch.allclose(out[:, j], base[:, j])  # but it does change its own position


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
def test_without_the_mask_future_tokens_leak(attention):
    model = _model(attention=attention, causal=False)
    tokens = _tokens(B=2, T=8)
    base = model.log_probs(tokens)
    out = model.log_probs(_changed_at(tokens, 7))  # change only the last token
    for i in range(7):
        assert not torch.allclose(out[:, i], base[:, i]), f"position {i} did not see the future"


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
@pytest.mark.parametrize("chunks", [[1] * 9, [4, 1, 1, 3], [3, 2, 4], [1, 5, 3]])
def test_cached_decoding_in_chunks_equals_full_forward(attention, chunks):
    """Prefills after cached positions use a causal mask shifted by the cache length."""
    model, tokens = _model(attention=attention), _tokens()
    full = model.log_probs(tokens)  # (B, T, V)
    cache, pos = model.start(3), 0
    for t in chunks:
        out, cache = model.step(tokens[:, pos : pos + t], cache)
        pos += t
        assert cache.length == pos
        assert torch.allclose(out, full[:, pos - 1], atol=1e-12), f"after position {pos - 1}"


def test_cache_is_preallocated_and_written_in_place():
    model = _model(n_layer=3, n_head=2, d_model=8, block_size=16)
    cache = model.start(4)
    assert isinstance(cache, KVCache)
    assert cache.k.shape == cache.v.shape == (3, 4, 2, 16, 4)
    ptr = cache.k.data_ptr()
    _, cache2 = model.step(_tokens(B=4, T=3), cache)
    _, cache2 = model.step(_tokens(B=4, T=1), cache2)
    assert cache2 is cache and cache.k.data_ptr() == ptr and cache.length == 4
    assert cache.k[:, :, :, :4].abs().sum() > 0 and cache.k[:, :, :, 4:].abs().sum() == 0


def test_select_repeats_and_reorders_rows():
    model, tokens = _model(), _tokens(B=2, T=6)
    full = model.log_probs(tokens)
    cache = model.start(2)
    _, cache = model.step(tokens[:, :5], cache)
    index = torch.tensor([1, 1, 0])
    out, picked = model.step(tokens[index, 5:6], cache.select(index))
    assert torch.allclose(out, full[index, 5], atol=1e-12)
    assert picked.batch_size == 3 and cache.batch_size == 2


def test_crop_rewinds_the_cache():
    model, tokens = _model(), _tokens(B=2, T=7)
    alt = _changed_at(tokens, 5)
    cache = model.start(2)
    _, cache = model.step(tokens[:, :6], cache)
    out, cache = model.step(alt[:, 5:7], cache.crop(5))  # replace position 5, then add 6
    assert torch.allclose(out, model.log_probs(alt)[:, 6], atol=1e-12)
    with pytest.raises(ConfigError):
        cache.crop(9)


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
def test_step_all_gives_every_positions_log_probs(attention):
    model, tokens = _model(attention=attention), _tokens(B=2, T=9)
    full = model.log_probs(tokens)  # (B, T, V)
    cache = model.start(2)
    first, cache = model.step_all(tokens[:, :4], cache)  # a prefill from position 0
    rest, cache = model.step_all(tokens[:, 4:], cache)  # k+1 positions after cached ones
    assert first.shape == (2, 4, V) and rest.shape == (2, 5, V) and cache.length == 9
    assert torch.allclose(torch.cat([first, rest], 1), full, atol=1e-12)
    with pytest.raises(ConfigError, match="select"):
        model.step_all(tokens[:1, :1], cache)


def test_exceeding_block_size_is_a_config_error():
    model = _model(block_size=8)
    cache = model.start(1)
    _, cache = model.step(_tokens(B=1, T=8), cache)
    with pytest.raises(ConfigError, match="block_size is 8"):
        model.step(_tokens(B=1, T=1), cache)
    assert cache.length == 8  # the failed step left the cache as it was
    with pytest.raises(ConfigError, match="block_size"):
        model.log_probs(_tokens(B=1, T=9))
    with pytest.raises(ConfigError, match="block_size"):
        model.step(_tokens(B=1, T=9), model.start(1))


def test_tied_weights_share_storage():
    model = _model()
    assert model.lm_head.weight is model.transformer.wte.weight
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    untied = _model(tie_weights=False)
    assert untied.lm_head.weight.data_ptr() != untied.transformer.wte.weight.data_ptr()
    assert untied.num_parameters() - model.num_parameters() == V * 8


def test_parameter_names_follow_gpt2():
    names = set(_model(n_layer=1).state_dict())
    block = {f"transformer.h.0.{n}" for n in (
        "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
        "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
        "mlp.c_proj.weight", "mlp.c_proj.bias")}
    expected = block | {"transformer.wte.weight", "transformer.wpe.weight", "transformer.ln_f.weight",
                        "transformer.ln_f.bias", "lm_head.weight"}
    assert names == expected
    no_bias = set(_model(n_layer=1, bias=False).state_dict())
    assert not any(n.endswith(".bias") for n in no_bias)


@pytest.mark.parametrize("tie", [True, False])
def test_save_load_gives_identical_log_probs(tmp_path, tie):
    model, tokens = _model(tie_weights=tie, attention="explicit"), _tokens()
    loaded = save_and_load(model, tmp_path / "m")
    assert loaded.config == model.config
    assert torch.equal(loaded.log_probs(tokens), model.log_probs(tokens))
    shared = loaded.lm_head.weight.data_ptr() == loaded.transformer.wte.weight.data_ptr()
    assert shared == tie


def test_damaged_folder_is_a_format_error(tmp_path):
    _model().save(tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    with pytest.raises(FormatError, match=r"model\.safetensors"):
        TransformerLM.load(tmp_path / "m")
    _model(d_model=12).save(tmp_path / "other")  # weights of another shape
    (tmp_path / "m" / "model.safetensors").write_bytes(
        (tmp_path / "other" / "model.safetensors").read_bytes())
    with pytest.raises(FormatError, match="does not fit"):
        TransformerLM.load(tmp_path / "m")


def test_step_with_a_cache_of_other_rows_is_a_config_error():
    model = _model()
    with pytest.raises(ConfigError, match="select"):
        model.step(_tokens(B=3, T=1), model.start(2))


def test_dropout_only_in_training():
    model, tokens = _model(dropout=0.5), _tokens()
    assert torch.equal(model.log_probs(tokens), model.log_probs(tokens))
    model.train()
    assert not torch.equal(model.log_probs(tokens), model.log_probs(tokens))


def test_training_lowers_the_loss():
    model = _model(dtype=torch.float32).train()
    losses = training_losses(model, lr=0.02, steps=40)
    assert losses[-1] < 0.3 * losses[0]


@pytest.mark.parametrize("kw", [{"d_model": 10, "n_head": 3}, {"attention": "flash"},
                                {"block_size": 0}, {"gelu": "relu"}])
def test_bad_config_is_a_config_error(kw):
    with pytest.raises(ConfigError):
        _config(**kw)


def test_kv_cache_layers_are_views_that_follow_a_replaced_buffer():
    config = TransformerConfig(vocab_size=8, block_size=6, n_layer=3, n_head=2, d_model=8)
    cache = KVCache.allocate(config, batch_size=2, dtype=torch.float32, device=torch.device("cpu"))
    layers = cache.layers()
    assert len(layers) == 3 and cache.layers() is layers  # made once
    layers[1][0][0, 0, 2] = 1.0  # a write through a view is a write into k
    assert cache.k[1, 0, 0, 2].eq(1.0).all()
    cache.k = torch.zeros_like(cache.k)  # replaced (as a caller may): the views are made again
    assert cache.layers()[1][0].data_ptr() == cache.k[1].data_ptr()

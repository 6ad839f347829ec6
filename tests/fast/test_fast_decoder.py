"""FastDecoder: the lean and the static (CUDA-graph-shaped) steps give the model's own log-probs and
tokens — greedy, sampling, beam search, speculative verification, GPT-2's unmasked head, int8."""

import pytest
import torch

import arlm.models.numpy_gemv as numpy_gemv
from arlm.decode.fast import FastDecoder, fast_decoder
from arlm.decode.search import beam_search, generate
from arlm.decode.speculative import PromptLookupDraft, speculative_generate
from arlm.errors import ConfigError
from arlm.models.gpt2 import GPT2LM
from arlm.models.quantize import quantize_int8
from arlm.models.rnn import RNNLM, RNNConfig
from arlm.models.sigma_gpt import SigmaGPT, SigmaGPTConfig
from arlm.models.transformer import TransformerConfig, TransformerLM, row_major_t

pytestmark = pytest.mark.usefixtures("one_thread")

V = 20


def _model(cls=TransformerLM, seed=0, **kw):
    torch.manual_seed(seed)
    config_class = SigmaGPTConfig if cls is SigmaGPT else TransformerConfig
    cfg = config_class(vocab_size=V, block_size=48, n_layer=2, n_head=2, d_model=32, **kw)
    model = cls(cfg).eval()
    with torch.no_grad():  # large weights: peaked distributions, varied greedy text
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3)
    return model


PROMPTS = torch.tensor([[1, 5, 6, 7, 5, 6], [1, 9, 4, 4, 3, 8]])


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("cls", [TransformerLM, SigmaGPT])
def test_steps_give_the_models_log_probs(static, cls):
    model = _model(cls)  # σ-GPT read left to right: E + P + Q, its second table in the lean forward
    fast = FastDecoder(model, static=static)
    ref_state, state = model.start(2), fast.start(2)
    ref, _ = model.step(PROMPTS, ref_state)
    out, _ = fast.step(PROMPTS, state)  # a prefill (lean path)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    tok = ref.argmax(-1, keepdim=True)
    for _ in range(10):  # one-token steps
        ref, _ = model.step(tok, ref_state)
        out, _ = fast.step(tok, state)
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
        assert state.length == ref_state.length
        tok = ref.argmax(-1, keepdim=True)
    # the caches hold the same keys and values
    L = state.length
    torch.testing.assert_close(state.k[:, :, :, :L], ref_state.k[:, :, :, :L], rtol=0, atol=1e-5)


def test_one_token_attention_in_numpy_reads_only_the_filled_cache():
    """On a CPU in fp32 one new token attends in numpy over the filled positions only (NaN in every
    unwritten one changes nothing), with the log-probs of SDPA's attention."""
    model = _model()
    fast, sdpa = FastDecoder(model), FastDecoder(model)
    assert not fast.numpy_attention  # 32 wide: SDPA (numpy's pays from NUMPY_ATTENTION_MIN_WIDTH)
    fast.numpy_attention, sdpa.numpy_attention = True, False
    state, ref_state = fast.start(2), sdpa.start(2)
    state.k.fill_(float("nan")), state.v.fill_(float("nan"))
    out, _ = fast.step(PROMPTS, state)
    ref, _ = sdpa.step(PROMPTS, ref_state)
    for _ in range(12):
        tok = ref.argmax(-1, keepdim=True)  # (2, 1)
        out, _ = fast.step(tok, state)
        ref, _ = sdpa.step(tok, ref_state)
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
        assert torch.isfinite(out[:, 3:]).all()  # the head masks [PAD], [SOS] (-inf); the rest is finite
    L = state.length
    torch.testing.assert_close(state.v[:, :, :, :L], ref_state.v[:, :, :, :L], rtol=0, atol=1e-5)
    assert torch.isnan(state.k[:, :, :, L:]).all()  # nothing was written past the filled positions


def _decodes_as_the_model(fast: FastDecoder, model) -> None:
    """Greedy, sampling with rows finishing early (the cache rows selected), beam search and a
    speculative verification every round (several rows at once) through ``fast``: the model's tokens."""
    for settings in (dict(temperature=0), dict(temperature=1.0, seed=0, num_samples=3, eos_id=2)):
        settings = {"eos_id": None, **settings}
        ref = generate(model, PROMPTS, max_new_tokens=25, **settings)
        out = generate(fast, PROMPTS, max_new_tokens=25, **settings)
        assert torch.equal(out.tokens, ref.tokens) and out.stop_reason == ref.stop_reason
        torch.testing.assert_close(out.log_probs, ref.log_probs, rtol=0, atol=1e-5)
    ref_b = beam_search(model, PROMPTS, num_beams=3, max_new_tokens=12)
    assert torch.equal(beam_search(fast, PROMPTS, num_beams=3, max_new_tokens=12).tokens, ref_b.tokens)
    prompt = [[1, 5, 6, 7, 5, 6, 7, 5]]
    plain = generate(model, prompt, temperature=0, max_new_tokens=20, eos_id=None).rows()[0]
    spec = speculative_generate(fast, PromptLookupDraft(), prompt, temperature=0, max_new_tokens=20,
                                eos_id=None, k=3, adaptive=False)  # k every round: the verifying path
    assert spec.tokens.tolist() == plain


@pytest.mark.parametrize("cls", [TransformerLM, GPT2LM, SigmaGPT])
def test_decoding_with_the_numpy_attention_follows_the_model(cls):
    fast = FastDecoder(_model(cls, seed=1))
    fast.numpy_attention = True  # one new token attending in numpy
    _decodes_as_the_model(fast, fast.model)


@pytest.mark.parametrize("cls", [TransformerLM, GPT2LM, SigmaGPT])
def test_decoding_with_one_row_by_einsum_follows_the_model(cls):
    """One row by numpy's einsum (what weights that stream from memory get); several (a prefill, a
    verifying pass) by BLAS."""
    model = _model(cls, seed=2)
    assert FastDecoder(model).one_row == "blas"  # 2 × 32: hot in any cache
    fast = FastDecoder(model, one_row="einsum")
    assert fast.one_row == "einsum"
    _decodes_as_the_model(fast, model)


def test_the_one_row_kernel_follows_the_weights_size_against_the_cache(monkeypatch):
    model = _model()
    weight_bytes = sum(p.numel() * 4 for p in model.parameters())
    monkeypatch.setattr(numpy_gemv, "last_level_cache_bytes", lambda: 3 * weight_bytes)
    assert FastDecoder(model).one_row == "blas"  # a third of the cache: read from it
    monkeypatch.setattr(numpy_gemv, "last_level_cache_bytes", lambda: weight_bytes)
    assert FastDecoder(model).one_row == "einsum"  # all of it: streamed from memory
    assert FastDecoder(model, one_row="blas").one_row == "blas"  # asked for
    with pytest.raises(ConfigError, match="one_row must be one of"):
        FastDecoder(model, one_row="gemv")


def test_step_all_gives_every_positions_log_probs():
    model = _model()
    fast = FastDecoder(model)
    a, b = model.start(1), fast.start(1)
    model.step(PROMPTS[:1], a)
    fast.step(PROMPTS[:1], b)
    ref, _ = model.step_all(torch.tensor([[3, 4, 5, 6]]), a)
    out, _ = fast.step_all(torch.tensor([[3, 4, 5, 6]]), b)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(out[0], model.log_probs(torch.cat([PROMPTS[:1], torch.tensor([[3, 4, 5, 6]])],
                                                                 1))[0, -4:], rtol=0, atol=1e-5)


def test_verifying_passes_at_moving_positions_give_the_models_log_probs():
    """A verifier's passes of t tokens at ever other positions, cropped back and forth: the causal
    mask (a kept buffer per t, its block moved to each position) is the model's at every one."""
    model = _model()
    fast = FastDecoder(model)
    a, b = model.start(1), fast.start(1)
    model.step(PROMPTS[:1], a)
    fast.step(PROMPTS[:1], b)
    for t, crop in ((3, 0), (5, 1), (3, 2), (3, 0), (5, 4), (20, 0), (3, 3)):
        tokens = torch.arange(2, 2 + t)[None] % V  # (1, t)
        a.crop(a.length - crop), b.crop(b.length - crop)
        ref, _ = model.step_all(tokens, a)
        out, _ = fast.step_all(tokens, b)
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("cls", [TransformerLM, GPT2LM, SigmaGPT])
def test_greedy_and_sampling_give_the_same_tokens(static, cls):
    model = _model(cls)
    fast = FastDecoder(model, static=static)
    for settings in (dict(temperature=0), dict(temperature=1.0, seed=3, num_samples=3)):
        ref = generate(model, PROMPTS, max_new_tokens=30, eos_id=None, **settings)
        out = generate(fast, PROMPTS, max_new_tokens=30, eos_id=None, **settings)
        assert torch.equal(out.tokens, ref.tokens)
        torch.testing.assert_close(out.log_probs, ref.log_probs, rtol=0, atol=1e-5)


def test_rows_finishing_early_and_beam_search_follow_the_model():
    model = _model(seed=1)
    fast = FastDecoder(model)
    ref = generate(model, PROMPTS, temperature=1.0, seed=0, num_samples=4, max_new_tokens=25, eos_id=2)
    out = generate(fast, PROMPTS, temperature=1.0, seed=0, num_samples=4, max_new_tokens=25, eos_id=2)
    assert torch.equal(out.tokens, ref.tokens) and out.stop_reason == ref.stop_reason
    assert "eos" in ref.stop_reason  # some rows stopped early: the cache rows were selected
    ref_b = beam_search(model, PROMPTS, num_beams=3, max_new_tokens=12)
    out_b = beam_search(fast, PROMPTS, num_beams=3, max_new_tokens=12)
    assert torch.equal(out_b.tokens, ref_b.tokens)
    torch.testing.assert_close(out_b.scores, ref_b.scores, rtol=0, atol=1e-5)


def test_speculative_with_the_fast_target_and_draft_equals_plain_greedy():
    target, draft = _model(seed=2), _model(seed=3)
    prompt = [[1, 5, 6, 7, 5, 6, 7, 5]]
    plain = generate(target, prompt, temperature=0, max_new_tokens=30, eos_id=None).rows()[0]
    for d in (FastDecoder(draft), PromptLookupDraft()):
        spec = speculative_generate(FastDecoder(target), d, prompt, temperature=0, max_new_tokens=30, k=3,
                                    eos_id=None, adaptive=False)  # k every round: the verifying path
        assert spec.tokens.tolist() == plain
        assert spec.stats.target_forwards == spec.stats.rounds  # one verifying pass a round
        assert spec.stats.accepted > 0 and spec.stats.target_forwards < 30


def test_int8_weights_run_in_the_lean_step():
    model = _model()
    q = quantize_int8(model)
    ref = generate(q, PROMPTS, temperature=0, max_new_tokens=20, eos_id=None)
    out = generate(FastDecoder(q), PROMPTS, temperature=0, max_new_tokens=20, eos_id=None)
    assert torch.equal(out.tokens, ref.tokens)
    torch.testing.assert_close(out.log_probs, ref.log_probs, rtol=0, atol=1e-5)


def test_bad_input():
    with pytest.raises(ConfigError, match="Transformer"):
        FastDecoder(RNNLM(RNNConfig(vocab_size=V)))
    with pytest.raises(ConfigError, match="explicit"):
        FastDecoder(_model(attention="explicit"))
    with pytest.raises(ConfigError, match="CUDA"):
        FastDecoder(_model(), cuda_graphs=True)  # the model is on the CPU
    fast = FastDecoder(_model())
    state = fast.start(1)
    with pytest.raises(ConfigError, match="block_size"):
        fast.step(torch.ones(1, 49, dtype=torch.long), state)
    with pytest.raises(ConfigError, match="rows"):
        fast.step(torch.ones(2, 1, dtype=torch.long), state)
    # fast_decoder wraps only what the lean step supports
    rnn = RNNLM(RNNConfig(vocab_size=V)).eval()
    assert fast_decoder(rnn) is rnn and isinstance(fast_decoder(_model()), FastDecoder)
    assert not isinstance(fast_decoder(_model(), enabled=False), FastDecoder)
    # σ-GPT takes the lean step, and is verified one token at a time as without it
    sigma = fast_decoder(_model(SigmaGPT))
    assert isinstance(sigma, FastDecoder) and sigma.step_all is None
    assert not isinstance(fast_decoder(_model().train()), FastDecoder)


def test_row_major_copies_are_made_once_and_follow_the_weights():
    """The lean step multiplies by row-major Wᵀ copies on a CPU, made once per weight (a server builds a
    decoder per request) and made again after the weights change in place (a training step)."""
    model = _model()
    weight = model.transformer.h[0].attn.c_attn.weight
    first = row_major_t(weight)
    assert first.is_contiguous() and torch.equal(first, weight.detach().t())
    FastDecoder(model)
    assert row_major_t(weight) is first  # reused, not copied again
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model.train()
    model.log_probs(PROMPTS).sum().backward()
    opt.step()
    model.eval()
    assert row_major_t(weight) is not first and torch.equal(row_major_t(weight), weight.detach().t())
    fast = FastDecoder(model)
    state, ref_state = fast.start(1), model.start(1)
    out, _ = fast.step(PROMPTS[:1], state)
    ref, _ = model.step(PROMPTS[:1], ref_state)
    # (log-probs of ~-800 after that step: numpy's BLAS sums in another order than torch's, so 1e-6 of them)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_a_model_made_in_inference_mode_decodes_through_the_lean_step():
    """Weights made under torch.inference_mode() have no version counter; the lean step copies them
    each time instead of remembering the copy (it used to raise RuntimeError)."""
    with torch.inference_mode():
        model = _model()
        out = generate(FastDecoder(model), PROMPTS, temperature=0, max_new_tokens=10, eos_id=None)
        ref = generate(model, PROMPTS, temperature=0, max_new_tokens=10, eos_id=None)
    assert torch.equal(out.tokens, ref.tokens)

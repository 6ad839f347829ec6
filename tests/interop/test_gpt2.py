"""GPT-2 interop against HF transformers: weights, logits, greedy and beam search, export round trip."""

import pytest
import torch

from extras import require

transformers = require(
    "transformers", reason="the GPT-2 interop tests compare with HF transformers; pip install transformers")

from arlm.decode.fast import FastDecoder, fast_decoder  # noqa: E402
from arlm.decode.search import beam_search, generate  # noqa: E402
from arlm.errors import ConfigError, MismatchError  # noqa: E402
from arlm.interop.gpt2 import (  # noqa: E402
    GPT2LM,
    config_from_hf,
    from_hf,
    load_gpt2,
    save_gpt2,
    state_dict_from_hf,
    state_dict_to_hf,
    to_hf,
)
from arlm.models.transformer import TransformerConfig, TransformerLM  # noqa: E402
from arlm.streams import SOS_ID  # noqa: E402

V, EOS, PAD = 24, 8, 7  # a tiny vocabulary; ids 0 and 1 are ordinary tokens, as in GPT-2's


@pytest.fixture(scope="module")
def hf():
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=V, n_positions=40, n_embd=32, n_layer=2, n_head=4,
                                  initializer_range=0.3, bos_token_id=EOS, eos_token_id=EOS,
                                  pad_token_id=PAD)
    return transformers.GPT2LMHeadModel(cfg).eval()


@pytest.fixture(scope="module")
def ours(hf):
    return from_hf(hf)


PROMPT = torch.tensor([[3, 0, 9, 1], [11, 2, 4, 17]])  # ids 0 and 1 included on purpose


def test_imported_logits_equal_hf(hf, ours):
    assert isinstance(ours, GPT2LM)
    with torch.no_grad():
        ref = hf(PROMPT).logits  # (B, T, V)
        got, _ = ours(PROMPT)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.log_probs(PROMPT), ref.log_softmax(-1), atol=1e-5, rtol=1e-5)


def test_cached_and_uncached_decoding_agree(hf, ours):
    seq = torch.tensor([[3, 0, 9, 1, 12, 13, 0, 1, 20, 21]])
    with torch.no_grad():
        full = ours.log_probs(seq)[0]  # (T, V) teacher forcing, no cache
        state = ours.start(1)
        lp, state = ours.step(seq[:, :4], state)  # prefill, then one token at a time (KV cache)
        steps = [lp[0]]
        for t in range(4, seq.shape[1]):
            lp, state = ours.step(seq[:, t : t + 1], state)
            steps.append(lp[0])
    torch.testing.assert_close(torch.stack(steps), full[3:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_equals_hf_generate(hf, ours, use_cache):
    n = 12
    with torch.no_grad():
        ref = hf.generate(PROMPT, attention_mask=torch.ones_like(PROMPT), max_new_tokens=n,
                          do_sample=False, num_beams=1, eos_token_id=EOS, pad_token_id=PAD,
                          use_cache=use_cache)
    got = generate(ours, PROMPT, temperature=0, max_new_tokens=n, eos_id=EOS, pad_id=PAD)
    for b in range(PROMPT.shape[0]):
        m = int(got.lengths[b])
        assert got.tokens[b, :m].tolist() == ref[b, 4 : 4 + m].tolist()
        assert (ref[b, 4 + m :] == PAD).all()  # HF stopped there too
    assert got.stop_reason == ["length", "eos"]  # [EOS] handling is covered


def test_the_lean_step_of_arlm_generate_gives_hf_greedy_tokens(hf, ours):
    """`arlm generate` decodes an imported GPT-2 (biases, tanh GELU, unmasked head) through the lean
    step over row-major Wᵀ copies (fast_decoder): the tokens of HF's greedy generate, one row at a time."""
    fast = fast_decoder(ours)
    assert isinstance(fast, FastDecoder)
    n = 30
    for row in PROMPT:
        prompt = row[None]  # (1, 4): batch 1, as the CLI decodes
        with torch.no_grad():
            ref = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n,
                              min_new_tokens=n, do_sample=False, num_beams=1, eos_token_id=None,
                              pad_token_id=PAD)
        got = generate(fast, prompt, temperature=0, max_new_tokens=n, eos_id=None, pad_id=PAD)
        assert got.tokens[0].tolist() == ref[0, 4:].tolist()


def test_imported_model_saves_and_loads_in_arlm_format(ours, tmp_path):
    ours.save(tmp_path / "m")
    back = GPT2LM.load(tmp_path / "m")
    with torch.no_grad():
        torch.testing.assert_close(back(PROMPT)[0], ours(PROMPT)[0])


@pytest.mark.parametrize(("max_new", "eos", "alpha", "early", "reasons"), [
    (3, EOS, 1.0, True, {"eos", "length"}), (10, EOS, 1.0, True, {"eos", "length"}),
    (10, 14, 1.0, True, {"eos", "length"}), (10, 18, 1.0, True, {"eos", "length"}),
    (10, EOS, 0.5, False, {"eos", "length"}), (10, 14, 2.0, "never", {"length"}),
])
def test_beam_search_equals_hf(hf, ours, max_new, eos, alpha, early, reasons):
    K = 4
    with torch.no_grad():
        ref = hf.generate(PROMPT, attention_mask=torch.ones_like(PROMPT), max_new_tokens=max_new,
                          do_sample=False, num_beams=K, num_return_sequences=K, length_penalty=alpha,
                          early_stopping=early, eos_token_id=eos, pad_token_id=PAD,
                          output_scores=True, return_dict_in_generate=True)
    got = beam_search(ours, PROMPT, num_beams=K, max_new_tokens=max_new, length_penalty=alpha,
                      early_stopping=early, eos_id=eos, pad_id=PAD)
    seqs = ref.sequences.view(2, K, -1)[:, :, 4:]
    torch.testing.assert_close(got.scores.float(), ref.sequences_scores.view(2, K), atol=1e-5, rtol=1e-5)
    for b in range(2):
        for r in range(K):
            m = int(got.lengths[b, r])
            assert got.tokens[b, r, :m].tolist() == seqs[b, r, :m].tolist()
    # the cases cover [EOS] handling, not just the budget
    assert {x for row in got.stop_reason for x in row} == reasons


def test_state_dict_mapping_transposes_conv1d(hf):
    sd = state_dict_from_hf(hf.state_dict())
    w = hf.state_dict()["transformer.h.0.attn.c_attn.weight"]  # (in, out)
    assert torch.equal(sd["transformer.h.0.attn.c_attn.weight"], w.t())
    assert torch.equal(sd["transformer.wte.weight"], hf.state_dict()["transformer.wte.weight"])


def test_export_loads_in_transformers(tmp_path):
    torch.manual_seed(1)
    model = TransformerLM(TransformerConfig(vocab_size=30, block_size=16, n_layer=2, n_head=2,
                                            d_model=16)).eval()
    x = torch.tensor([[SOS_ID, 4, 8, 15, 16, 23]])
    with torch.no_grad():
        ref, _ = model(x)  # arlm logits: [PAD], [SOS] masked to -inf
    save_gpt2(model, tmp_path / "gpt2", eos_token_id=2, bos_token_id=1, pad_token_id=0)
    hf2 = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "gpt2").eval()
    with torch.no_grad():
        logits = hf2(x).logits
    torch.testing.assert_close(logits[..., 2:], ref[..., 2:], atol=1e-5, rtol=1e-5)
    # ... and back: the folder and a live HF model import to the same weights
    for back in (load_gpt2(tmp_path / "gpt2"), from_hf(to_hf(model))):
        for k, v in model.state_dict().items():
            torch.testing.assert_close(back.state_dict()[k], v)
    sd = state_dict_to_hf(model)
    hf3 = transformers.GPT2LMHeadModel(transformers.GPT2Config(**{
        k: v for k, v in hf2.config.to_dict().items() if k in ("vocab_size", "n_positions", "n_embd",
                                                               "n_layer", "n_head")}))
    hf3.load_state_dict(sd, strict=False)
    torch.testing.assert_close(hf3.eval()(x).logits, logits)


def test_a_model_without_biases_exports_as_gpt2_with_zero_biases(tmp_path):
    torch.manual_seed(2)
    model = TransformerLM(TransformerConfig(vocab_size=30, block_size=16, n_layer=2, n_head=2, d_model=16,
                                            bias=False)).eval()
    with torch.no_grad():  # LayerNorm weights away from 1, so a lost weight would show
        for name, p in model.named_parameters():
            if "ln_" in name:
                p.uniform_(0.5, 1.5)
    x = torch.tensor([[SOS_ID, 4, 8, 15, 16, 23]])
    with torch.no_grad():
        ref, _ = model(x)
    sd = state_dict_to_hf(model)
    assert not sd["transformer.h.0.mlp.c_fc.bias"].any() and sd["transformer.ln_f.bias"].shape == (16,)
    hf = to_hf(model, eos_token_id=2, bos_token_id=1, pad_token_id=0)
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits[..., 2:], ref[..., 2:], atol=1e-5, rtol=1e-5)
    save_gpt2(model, tmp_path / "gpt2", eos_token_id=2, bos_token_id=1, pad_token_id=0)
    back = load_gpt2(tmp_path / "gpt2")  # a GPT-2 with biases, all zero: the same function
    with torch.no_grad():
        torch.testing.assert_close(back(x)[0][..., 2:], ref[..., 2:], atol=1e-5, rtol=1e-5)


def test_the_exact_gelu_exports_as_hf_gelu_and_imports_back():
    """gelu="exact" is HF's activation_function "gelu" (erf) both ways: the same logits in HF."""
    torch.manual_seed(3)
    model = TransformerLM(TransformerConfig(vocab_size=30, block_size=16, n_layer=2, n_head=2, d_model=16,
                                            gelu="exact")).eval()
    x = torch.tensor([[SOS_ID, 4, 8, 15, 16, 23]])
    hf = to_hf(model, eos_token_id=2, bos_token_id=1, pad_token_id=0)
    assert hf.config.activation_function == "gelu"
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits[..., 2:], model(x)[0][..., 2:], atol=1e-5, rtol=1e-5)
    assert from_hf(hf).config.gelu == "exact"


def test_bad_imports_are_clear_errors(hf):
    with pytest.raises(ConfigError):
        from_hf(hf.state_dict())  # no config
    with pytest.raises(ConfigError):
        config_from_hf({**hf.config.to_dict(), "activation_function": "relu"})
    wrong = {**hf.config.to_dict(), "n_embd": 64, "n_head": 4}
    with pytest.raises(MismatchError):
        from_hf(hf.state_dict(), wrong)

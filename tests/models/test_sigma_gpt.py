"""σ-GPT: identity order == the Transformer, every order a distribution, sampling and infilling
that follow log_prob, the left-to-right ARModel interface, random-order training, files."""

import itertools
import json

import pytest
import torch

from arlm.decode.search import greedy_search
from arlm.errors import ConfigError, DataError
from arlm.models.conformance import check_conformance
from arlm.models.sigma_gpt import (
    SigmaGPT,
    SigmaGPTConfig,
    full_order,
    random_order_batch,
    random_order_loss,
    random_orders,
)
from arlm.models.transformer import TransformerConfig, TransformerLM
from arlm.streams import EOS_ID, PAD_ID, SOS_ID
from model_helpers import random_tokens, save_and_load

V = 13
SMALL = dict(block_size=16, n_layer=2, n_head=2, d_model=8)


def _model(seed=0, dtype=torch.float64, vocab_size=V, sharpen=False, **kw):
    """A tiny σ-GPT; ``sharpen`` redraws every weight with std 0.5 so that its distributions are
    far from uniform (at GPT-2's std 0.02 a wrong conditional would still sum to about one)."""
    torch.manual_seed(seed)
    model = SigmaGPT(SigmaGPTConfig(vocab_size=vocab_size, **(SMALL | kw))).to(dtype).eval()
    if sharpen:
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, 0.5)
    return model


def _sequences(B=3, n=6, vocab_size=V, seed=0):
    """(B, n+2) rows [SOS] x_1 … x_n [EOS] with content ids in [3, vocab_size)."""
    g = torch.Generator().manual_seed(seed)
    content = torch.randint(3, vocab_size, (B, n), generator=g)
    return torch.cat([torch.full((B, 1), SOS_ID), content, torch.full((B, 1), EOS_ID)], dim=1)


def _copy_of_transformer(seed=0, **kw):
    """A TransformerLM and a σ-GPT holding its weights, with Q (wpe_next) = 0."""
    torch.manual_seed(seed)
    transformer = TransformerLM(TransformerConfig(vocab_size=V, **(SMALL | kw))).double().eval()
    sigma = _model(seed=seed + 1, **kw)
    missing, unexpected = sigma.load_state_dict(transformer.state_dict(), strict=False)
    assert missing == ["transformer.wpe_next.weight"] and unexpected == []
    with torch.no_grad():
        sigma.transformer.wpe_next.weight.zero_()
    return transformer, sigma


# ----- the identity order is the left-to-right Transformer --------------------------------------


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
def test_identity_order_with_zero_second_table_is_the_transformer(attention):
    transformer, sigma = _copy_of_transformer(attention=attention)
    tokens = _sequences()
    expected, _ = transformer(tokens)  # (B, T, V) float64 logits
    assert torch.allclose(sigma.forward_ordered(tokens, torch.arange(6)), expected, atol=1e-12)
    # the ARModel interface (log-probs in float32, as every NeuralLM gives them)
    assert torch.allclose(sigma.log_probs(tokens), transformer.log_probs(tokens), atol=1e-6)
    # and the second table matters once it is not zero
    with torch.no_grad():
        sigma.transformer.wpe_next.weight.normal_(0.0, 0.5)
    assert not torch.allclose(sigma.forward_ordered(tokens, torch.arange(6)), expected, atol=1e-3)


def test_greedy_decoding_of_the_copy_matches_the_transformer():
    transformer, sigma = _copy_of_transformer()
    a = greedy_search(transformer, max_new_tokens=10)
    b = greedy_search(sigma, max_new_tokens=10)
    assert torch.equal(a.tokens, b.tokens)
    assert torch.allclose(a.log_probs, b.log_probs, atol=1e-6)


def test_identity_order_without_known_length_is_the_sum_of_scores():
    model, tokens = _model(sharpen=True), _sequences()
    joint = model.log_prob(tokens, torch.arange(6), known_length=False)
    assert torch.allclose(joint, model.score(tokens).double().sum(dim=1), atol=1e-5)  # score: float32


# ----- every order is a proper distribution over sequences of length n ---------------------------


ORDERS_3 = [(0, 1, 2), (2, 1, 0), (1, 2, 0), (2, 0, 1)]


def _all_sequences(n, vocab_size):
    """All (vocab_size - 3)^n rows [SOS] x [EOS] with content ids 3..vocab_size-1 ([UNK] included)."""
    content = torch.tensor(list(itertools.product(range(3, vocab_size), repeat=n)))
    B = content.shape[0]
    return torch.cat([torch.full((B, 1), SOS_ID), content, torch.full((B, 1), EOS_ID)], dim=1)


@pytest.mark.parametrize("order", ORDERS_3)
def test_each_order_sums_to_one_over_all_sequences(order):
    model = _model(vocab_size=6, sharpen=True)  # 3 content tokens: [UNK], 4, 5
    tokens = _all_sequences(3, 6)  # 27 sequences
    with torch.no_grad():
        total = model.log_prob(tokens, torch.tensor(order)).exp().sum()
    assert abs(float(total) - 1.0) < 1e-5


def test_random_orders_per_row_also_sum_to_one():
    """A different order for every row still gives one distribution per order."""
    model, tokens = _model(vocab_size=6, sharpen=True), _all_sequences(3, 6)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        order = random_orders(1, 3, g).expand(27, 3)
        with torch.no_grad():
            assert abs(float(model.log_prob(tokens, order).exp().sum()) - 1.0) < 1e-5


def test_without_the_causal_mask_the_orders_no_longer_sum_to_one():
    """The brute-force sum can fail: a model that sees the tokens it predicts is not a distribution."""
    model, tokens = _model(vocab_size=6, sharpen=True, causal=False), _all_sequences(3, 6)
    with torch.no_grad():
        totals = [float(model.log_prob(tokens, torch.tensor(o)).exp().sum()) for o in ORDERS_3]
    assert max(abs(t - 1.0) for t in totals) > 1e-3


def test_orders_give_different_joints_and_a_spread():
    model, tokens = _model(sharpen=True), _sequences(B=2)
    a = model.log_prob(tokens, torch.arange(6))
    b = model.log_prob(tokens, torch.arange(5, -1, -1))
    assert not torch.allclose(a, b)  # an untrained model is not order-consistent
    mean, spread = model.log_prob_orders(tokens, num_orders=5, seed=1)
    assert mean.shape == spread.shape == (2,) and (spread > 0).all()
    again = model.log_prob_orders(tokens, num_orders=5, seed=1)
    assert torch.equal(mean, again[0]) and torch.equal(spread, again[1])
    one = model.log_prob_orders(tokens, num_orders=1, seed=1)
    assert torch.equal(one[1], torch.zeros(2, dtype=one[1].dtype))


# ----- sampling and infilling ------------------------------------------------------------------


def _frequencies(rows, n, vocab_size):
    """Empirical probability of each of the (vocab_size - 3)^n content sequences, in product order."""
    K = vocab_size - 3
    index = torch.zeros(rows.shape[0], dtype=torch.long)
    for j in range(1, n + 1):
        index = index * K + (rows[:, j] - 3)
    return torch.bincount(index, minlength=K**n).double() / rows.shape[0]


def test_samples_follow_log_prob_in_the_given_order():
    model, order = _model(vocab_size=6, sharpen=True), torch.tensor([1, 0])
    rows = model.sample(2, batch_size=20000, order=order, seed=0)
    exact = model.log_prob(_all_sequences(2, 6), order).exp().detach()
    assert (_frequencies(rows, 2, 6) - exact).abs().max() < 0.015  # 4 standard errors at worst


def test_infill_follows_the_conditional_of_the_known_first_order():
    """Known x_2, unknown x_1 and x_3 filled left to right: the order is (x_2, x_1, x_3), and the
    filled pairs follow p(x_1, x_3 | x_2) = p(x) / Σ_{x_1, x_3} p(x) under that order."""
    model = _model(vocab_size=6, sharpen=True)
    tokens = torch.tensor([[SOS_ID, PAD_ID, 5, PAD_ID, EOS_ID]]).expand(20000, 5)
    known = torch.tensor([True, False, True, False, True])
    rows = model.infill(tokens, known.expand(20000, 5), seed=0, order="l2r")
    assert (rows[:, 2] == 5).all()
    candidates = _all_sequences(3, 6)
    candidates = candidates[candidates[:, 2] == 5]  # x_1, x_3 in product order
    joint = model.log_prob(candidates, torch.tensor([1, 0, 2])).exp().detach()
    freq = _frequencies(rows[:, [0, 1, 3, 4]], 2, 6)
    assert (freq - joint / joint.sum()).abs().max() < 0.015


@pytest.mark.parametrize("order", ["random", "l2r"])
def test_infill_keeps_known_slots_and_fills_content_ids(order):
    model = _model(sharpen=True)
    tokens = _sequences(B=4, n=7)
    g = torch.Generator().manual_seed(3)
    known = torch.rand(tokens.shape, generator=g) < 0.4
    known[3, 1:-1] = True  # a row with nothing to fill
    known[2, 1:-1] = False  # a row with everything to fill
    out = model.infill(tokens, known, seed=1, order=order)
    assert out.shape == tokens.shape
    assert torch.equal(out[known], tokens[known])
    assert torch.equal(out[3], tokens[3])
    assert (out[:, 0] == SOS_ID).all() and (out[:, -1] == EOS_ID).all()
    filled = out[:, 1:-1]
    assert ((filled >= 3) & (filled < V)).all()  # content ids only: no [PAD], [SOS], [EOS]
    assert torch.equal(out, model.infill(tokens, known, seed=1, order=order))


def test_sampling_is_seeded():
    model = _model(sharpen=True)
    a = model.sample(6, batch_size=4, seed=7)
    assert torch.equal(a, model.sample(6, batch_size=4, seed=7))
    assert not torch.equal(a, model.sample(6, batch_size=4, seed=8))
    assert (a[:, 0] == SOS_ID).all() and (a[:, -1] == EOS_ID).all()
    assert ((a[:, 1:-1] >= 3) & (a[:, 1:-1] < V)).all()
    greedy = model.sample(6, batch_size=2, order=torch.arange(6), temperature=0.0)
    assert torch.equal(greedy, model.sample(6, batch_size=2, order=torch.arange(6), temperature=0.0,
                                            seed=99))


# ----- the left-to-right ARModel interface ------------------------------------------------------


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-9), (torch.float32, 1e-5)])
def test_conformance(attention, dtype, atol):
    with torch.no_grad():
        check_conformance(_model(attention=attention, dtype=dtype, sharpen=True),
                          random_tokens(V), atol=atol)


# ----- training in random orders ---------------------------------------------------------------


def test_random_order_batch_shuffles_content_and_keeps_sos_eos_and_padding():
    tokens = torch.tensor([[SOS_ID, 4, 5, 6, 7, 8, EOS_ID],
                           [SOS_ID, 9, 10, EOS_ID, PAD_ID, PAD_ID, PAD_ID]])
    g = torch.Generator().manual_seed(0)
    inputs, pos, nxt, targets = random_order_batch(tokens, g)
    assert inputs.shape == pos.shape == nxt.shape == targets.shape == (2, 6)
    assert torch.equal(inputs, tokens.gather(1, pos)) and torch.equal(targets, tokens.gather(1, nxt))
    assert torch.equal(pos[:, 1:], nxt[:, :-1])  # one order, read and predicted
    full = torch.cat([pos, nxt[:, -1:]], dim=1)  # π (B, T)
    assert torch.equal(full.sort(dim=1).values, torch.arange(7).expand(2, 7))
    assert torch.equal(full[0, [0, 6]], torch.tensor([0, 6]))  # [SOS] first, [EOS] last
    assert torch.equal(full[1, [0, 3, 4, 5, 6]], torch.tensor([0, 3, 4, 5, 6]))  # padding in place
    orders = {tuple(random_order_batch(tokens, g)[1][0].tolist()) for _ in range(20)}
    assert len(orders) > 10  # fresh permutations
    again = random_order_batch(tokens, torch.Generator().manual_seed(0))
    assert torch.equal(again[1], pos)
    with pytest.raises(DataError):
        random_order_batch(tokens[:, 1:], g)


def test_a_sequence_cut_by_its_row_reads_positions_the_model_has():
    """Rows are block_size + 1 tokens: a longer line is cut, and its last token stays last, so the
    positions read (π(i), i < T-1) index the block_size position embeddings (an IndexError before)."""
    tokens = torch.tensor([[SOS_ID, 4, 5, 6, 7, 8, 9]])  # no [EOS]: cut
    model = _model(block_size=6)
    for seed in range(20):
        inputs, pos, nxt, _ = random_order_batch(tokens, torch.Generator().manual_seed(seed))
        assert int(pos.max()) <= 5 and int(nxt[0, -1]) == 6
        assert model.forward_positions(inputs, pos, nxt).shape == (1, 6, model.vocab_size)


def test_full_order_puts_sos_first_and_eos_last():
    assert full_order(torch.tensor([[2, 0, 1]])).tolist() == [[0, 3, 1, 2, 4]]


def _language():
    """All strings a^k b^m with 1 ≤ k + m ≤ 5 (a = 4, b = 5), one padded row each."""
    rows = [[SOS_ID] + [4] * k + [5] * (length - k) + [EOS_ID]
            for length in range(1, 6) for k in range(length + 1)]
    return torch.tensor([r + [PAD_ID] * (7 - len(r)) for r in rows])


def _train(model, tokens, steps=200):
    """A plain loop: Adam on random_order_loss, a fresh order per sequence and step; then eval mode."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        g = torch.Generator().manual_seed(0)
        for _ in range(steps):
            loss = random_order_loss(model, tokens, g)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
    finally:
        torch.set_num_threads(threads)


def test_training_in_random_orders_lowers_the_loss():
    model = _model(dtype=torch.float32, vocab_size=7, d_model=16)
    tokens = _language()

    def held_out_loss():
        with torch.no_grad():
            g = torch.Generator().manual_seed(123)
            return float(sum(random_order_loss(model, tokens, g) for _ in range(10)) / 10)

    before = held_out_loss()
    _train(model, tokens)
    after = held_out_loss()
    assert after < 0.5 * before  # about 1.55 -> 0.53 nats per token


def _in_language(rows):
    """Fraction of (B, T) rows [SOS] a^k b^m [EOS] (a = 4, b = 5)."""
    content = rows[:, 1:-1]
    ab = ((content == 4) | (content == 5)).all(dim=1)
    return float((ab & (content[:, 1:] >= content[:, :-1]).all(dim=1)).float().mean())


def test_trained_model_infills_inside_the_language():
    """Given a _ _ _ b, the gaps of a^k b^m must be a…ab…b: an untrained model rarely does it."""
    model = _model(dtype=torch.float32, vocab_size=7, d_model=16)
    tokens = torch.tensor([[SOS_ID, 4, PAD_ID, PAD_ID, PAD_ID, 5, EOS_ID]]).expand(100, 7)
    known = torch.tensor([True, True, False, False, False, True, True]).expand(100, 7)
    untrained = _in_language(model.infill(tokens, known, seed=0))
    _train(model, _language())
    assert untrained < 0.2
    assert _in_language(model.infill(tokens, known, seed=0)) > 0.8  # 0.93 when written


# ----- files and errors ------------------------------------------------------------------------


@pytest.mark.parametrize("tie", [True, False])
def test_save_load_round_trip(tmp_path, tie):
    model, tokens = _model(sharpen=True, tie_weights=tie), _sequences()
    loaded = save_and_load(model, tmp_path / "m")
    assert isinstance(loaded, SigmaGPT) and loaded.config == model.config
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["family"] == "sigma_gpt"
    order = torch.tensor([3, 1, 5, 0, 2, 4])
    assert torch.equal(loaded.forward_ordered(tokens, order), model.forward_ordered(tokens, order))
    assert torch.equal(loaded.log_probs(tokens), model.log_probs(tokens))


def test_bad_inputs_are_clear_errors():
    model, tokens = _model(), _sequences(B=2, n=4)
    with pytest.raises(ConfigError, match="permutation"):
        model.log_prob(tokens, torch.tensor([0, 0, 1, 2]))
    with pytest.raises(ConfigError, match="shape"):
        model.log_prob(tokens, torch.arange(5))
    with pytest.raises(DataError, match=r"\[EOS\]"):
        model.log_prob(tokens[:, :-1], torch.arange(4))
    with pytest.raises(ConfigError, match="block_size"):
        model.sample(15)
    with pytest.raises(ConfigError, match="temperature"):
        model.sample(3, temperature=-1.0)
    with pytest.raises(ConfigError, match="known_mask"):
        model.infill(tokens, torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ConfigError, match="infill order"):
        model.infill(tokens, torch.ones_like(tokens, dtype=torch.bool), order="r2l")
    with pytest.raises(ConfigError):
        SigmaGPTConfig(vocab_size=V, d_model=10, n_head=3)


def test_a_transformer_subclass_that_the_gpt2_layout_readers_refuse():
    """σ-GPT is a TransformerLM (E + P + Q): what reads a model by GPT-2's layout (attention maps)
    refuses it; fast decoding takes it read left to right (Q in the lean forward), with its log-probs."""
    from arlm.decode.fast import FastDecoder, fast_decoder
    from arlm.models.attention_maps import attention_weights

    model = _model()
    assert isinstance(model, TransformerLM) and not model.gpt2_layout and model.step_all is None
    fast = fast_decoder(model)
    assert isinstance(fast, FastDecoder) and fast.step_all is None
    tokens = torch.tensor([[1, 5, 6, 7]])
    ref, _ = model.step(tokens, model.start(1))
    out, _ = fast.step(tokens, fast.start(1))
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    with pytest.raises(ConfigError, match="Transformer"):
        attention_weights(model, torch.tensor([1, 5, 6]))

"""Sampling and greedy search on toy models and every model family: reproducible, stops per row,
frequencies follow the (processed) model, log-probs are the model's, streaming, bad settings."""

import string

import numpy as np
import pytest
import torch

from arlm.decode.search import Step, ancestral_sample, generate, greedy_search, stream
from arlm.errors import ConfigError
from arlm.models.infinigram import InfiniGramModel
from arlm.models.mixture import MixtureModel
from arlm.models.ngram import NGramModel
from arlm.models.rnn import RNNLM, RNNConfig
from arlm.models.transformer import TransformerConfig, TransformerLM
from arlm.models.window import WindowConfig, WindowLM
from arlm.streams import EOS_ID, PAD_ID, SOS_ID
from toy_models import BigramTable

# 99.9% quantiles of chi-square with df degrees of freedom (a correct sampler fails 1 run in 1000)
CHI2_999 = {1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52, 6: 22.46, 7: 24.32}


def test_same_seed_same_samples_and_eos_stops_rows():
    model = BigramTable(8, seed=2)
    a = ancestral_sample(model, num_samples=16, max_new_tokens=30, seed=5)
    b = ancestral_sample(model, num_samples=16, max_new_tokens=30, seed=5)
    c = ancestral_sample(model, num_samples=16, max_new_tokens=30, seed=6)
    assert torch.equal(a.tokens, b.tokens)
    assert not torch.equal(a.tokens, c.tokens)
    for row, reason, n in zip(a.tokens, a.stop_reason, a.lengths.tolist(), strict=True):
        ids = row.tolist()
        if reason == "eos":
            assert ids.index(EOS_ID) == n - 1
        else:
            assert reason == "length" and n == 30 and EOS_ID not in ids
        assert all(i == PAD_ID for i in ids[n:])
        assert SOS_ID not in ids


def test_a_generator_gives_the_same_samples_as_its_seed():
    model = BigramTable(8, seed=2)
    a = generate(model, num_samples=8, max_new_tokens=10, seed=11)
    b = generate(model, num_samples=8, max_new_tokens=10, generator=torch.Generator().manual_seed(11))
    assert torch.equal(a.tokens, b.tokens)


def _first_token_counts(model, n, **kw):
    s = generate(model, num_samples=n, max_new_tokens=1, seed=0, **kw)
    return np.bincount(s.tokens[:, 0].numpy(), minlength=model.vocab_size)


def _chi2(counts, p):
    expected = p * counts.sum()
    support = expected > 0
    assert counts[~support].sum() == 0, "a token outside the support was sampled"
    chi2 = (((counts - expected) ** 2)[support] / expected[support]).sum()
    return chi2, int(support.sum()) - 1


def _truncated(p, keep):
    q = np.where(keep, p, 0.0)
    return q / q.sum()


@pytest.mark.parametrize("kind", ["plain", "temperature", "top_k", "top_p"])
def test_sampling_frequencies_follow_the_processed_distribution(kind):
    model = BigramTable(8, seed=4)
    p = model.table[SOS_ID].exp().numpy()  # (V,) the distribution after [SOS]
    order = np.argsort(-p, kind="stable")
    if kind == "plain":
        kw, q = {}, p
    elif kind == "temperature":  # p_τ ∝ p^{1/τ}
        kw, q = {"temperature": 0.5}, p**2 / (p**2).sum()
    elif kind == "top_k":  # the 3 most probable, renormalised
        kw, q = {"top_k": 3}, _truncated(p, np.isin(np.arange(8), order[:3]))
    else:  # smallest set with mass ≥ 0.7
        mass_before = np.concatenate([[0.0], np.cumsum(p[order])[:-1]])
        kw, q = {"top_p": 0.7}, _truncated(p, np.isin(np.arange(8), order[mass_before < 0.7]))
    chi2, df = _chi2(_first_token_counts(model, 20000, **kw), q)
    assert df > 0 and chi2 < CHI2_999[df]
    if kind == "temperature":  # the check has power: the untempered samples are rejected
        chi2_p, _ = _chi2(_first_token_counts(model, 20000), q)
        assert chi2_p > CHI2_999[df]
    elif kind != "plain":  # the truncation removed tokens (sampling one of them fails the test)
        assert (q > 0).sum() < (p > 0).sum()


def test_log_probs_are_the_models():
    model = BigramTable(7, seed=1)
    s = generate(model, num_samples=4, max_new_tokens=10, seed=3, temperature=0.7, top_k=4)
    for row, lp, n in zip(s.tokens, s.log_probs, s.lengths.tolist(), strict=True):
        prev = SOS_ID
        for tok, v in zip(row[:n].tolist(), lp[:n].tolist(), strict=True):
            assert v == pytest.approx(float(model.table[prev, tok]))
            prev = tok
        assert (lp[n:] == 0).all()


def test_greedy_is_top_k_1_is_temperature_0():
    model = BigramTable(9, seed=5)
    prompt = [[SOS_ID, 4, 6], [SOS_ID, 7, 3]]
    g = greedy_search(model, prompt, max_new_tokens=12)
    k1 = generate(model, prompt, max_new_tokens=12, top_k=1, seed=123)
    t0 = generate(model, prompt, max_new_tokens=12, temperature=0)
    assert torch.equal(g.tokens, k1.tokens) and torch.equal(g.tokens, t0.tokens)
    for row, p in zip(g.rows(), prompt, strict=True):  # by hand: argmax after the last token
        prev = p[-1]
        for tok in row:
            assert tok == int(model.table[prev].argmax())
            prev = tok


def test_stop_reasons_eos_length_and_stop_string():
    model = BigramTable(6, seed=0)
    model.table[:, EOS_ID] = -1e9  # never [EOS] ...
    model.table[4, EOS_ID] = 5.0  # ... except right after token 4
    model.table = model.table.log_softmax(-1)
    def text(ids):
        return "".join(string.ascii_lowercase[i] for i in ids)

    s = generate(model, num_samples=64, max_new_tokens=6, seed=1, stop_strings=["dd"], decode=text)
    seen = set()
    for row, reason in zip(s.rows(), s.stop_reason, strict=True):
        seen.add(reason)
        if reason == "eos":
            assert row[-1] == EOS_ID and row[-2] == 4
        elif reason == "stop_string":
            assert text(row).endswith("dd") and "dd" not in text(row[:-1])
        else:
            assert len(row) == 6 and "dd" not in text(row) and EOS_ID not in row
    assert seen == {"eos", "stop_string", "length"}


def test_streaming_yields_every_token_in_order():
    model = BigramTable(8, seed=3)
    steps: list[Step] = []
    s = generate(model, num_samples=5, max_new_tokens=9, seed=2, on_token=steps.append)
    rebuilt = [[] for _ in range(5)]
    for st in steps:
        for r, t in zip(st.rows.tolist(), st.tokens.tolist(), strict=True):
            rebuilt[r].append(t)
    assert rebuilt == s.rows()
    it = stream(model, num_samples=5, max_new_tokens=9, seed=2)
    assert [t.tokens.tolist() for t in it] == [t.tokens.tolist() for t in steps]
    assert sum(int(st.finished.sum()) for st in steps) == 5


# --------------------------------------------------------------------------- every family, one loop


def _ngram():
    rng = np.random.default_rng(0)
    vocab = ["[PAD]", "[SOS]", "[EOS]", "[UNK]", *string.ascii_lowercase[:8]]
    data = [np.array([SOS_ID, *rng.integers(4, 12, size=rng.integers(2, 9)), EOS_ID]) for _ in range(60)]
    return NGramModel.fit(data, 3, vocab, "mkn", discount_fallback=True)


def _infinigram():
    rng = np.random.default_rng(0)
    vocab = ["[PAD]", "[SOS]", "[EOS]", "[UNK]", *string.ascii_lowercase[:8]]
    data = [np.array([SOS_ID, *rng.integers(4, 12, size=rng.integers(2, 9)), EOS_ID]) for _ in range(60)]
    return InfiniGramModel.fit(data, vocab)


def _neural(cls, cfg):
    torch.manual_seed(0)
    return cls(cfg).eval()


FAMILIES = {
    "ngram": _ngram,
    "infinigram": _infinigram,
    "ngram + infinigram": lambda: MixtureModel(_ngram(), _infinigram(), 0.4),
    "window": lambda: _neural(WindowLM, WindowConfig(vocab_size=12, context=3, d_embed=8, d_hidden=16)),
    "rnn": lambda: _neural(RNNLM, RNNConfig(vocab_size=12, cell="lstm", d_embed=8, d_hidden=16)),
    "transformer": lambda: _neural(TransformerLM, TransformerConfig(vocab_size=12, block_size=32,
                                                                    n_layer=2, n_head=2, d_model=16)),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("settings", [{"temperature": 1.0}, {"temperature": 0.0},
                                      {"temperature": 0.8, "top_k": 4, "top_p": 0.9}])
def test_every_family_generates_through_the_same_loop(family, settings):
    model = FAMILIES[family]()
    prompt = [[SOS_ID, 5, 6], [SOS_ID, 7, 8]]
    s = generate(model, prompt, num_samples=3, max_new_tokens=10, seed=4, **settings)
    assert s.tokens.shape[0] == 6 and len(s.stop_reason) == 6
    for i, (row, n) in enumerate(zip(s.tokens, s.lengths.tolist(), strict=True)):
        full = torch.tensor([[*prompt[i // 3], *row[:n].tolist()]])
        with torch.no_grad():
            ref = model.score(full)[0, 2:].double()  # the model's log-prob of every new token
        torch.testing.assert_close(s.log_probs[i, :n], ref, atol=1e-4, rtol=1e-5)
    again = generate(model, prompt, num_samples=3, max_new_tokens=10, seed=4, **settings)
    assert torch.equal(s.tokens, again.tokens)


@pytest.mark.parametrize("kw", [
    {"num_samples": 0}, {"max_new_tokens": 0}, {"max_new_tokens": -3}, {"temperature": -1.0},
    {"top_k": -1}, {"top_p": 0.0}, {"stop_strings": ["x"]}, {"stop_strings": [""], "decode": str},
])
def test_bad_settings(kw):
    with pytest.raises(ConfigError):
        generate(BigramTable(5), **kw)


def test_ancestral_sample_refuses_temperature_0():
    with pytest.raises(ConfigError):
        ancestral_sample(BigramTable(5), temperature=0)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_prompts_of_different_lengths_continue_as_if_alone(family):
    model = FAMILIES[family]()
    prompts = [[SOS_ID, 5], [SOS_ID, 7, 8, 9, 4], [SOS_ID, 6, 6, 10]]
    together = greedy_search(model, prompts, max_new_tokens=7, eos_id=None)
    sampled = generate(model, prompts, num_samples=2, max_new_tokens=7, seed=3)
    for i, p in enumerate(prompts):
        alone = greedy_search(model, [p], max_new_tokens=7, eos_id=None)
        assert together.rows()[i] == alone.rows()[0]
        torch.testing.assert_close(together.log_probs[i], alone.log_probs[0], atol=1e-5, rtol=1e-5)
        for j in (2 * i, 2 * i + 1):  # sampled rows: log-probs are the model's given their own prompt
            n = int(sampled.lengths[j])
            with torch.no_grad():
                ref = model.score(torch.tensor([[*p, *sampled.rows()[j]]]))[0, len(p) - 1 :].double()
            torch.testing.assert_close(sampled.log_probs[j, :n], ref, atol=1e-4, rtol=1e-5)


def test_empty_prompts_and_all_banned_rows_are_clear_errors():
    with pytest.raises(ConfigError, match="empty"):
        generate(BigramTable(5), [[SOS_ID, 3], []])
    with pytest.raises(ConfigError, match="excluded"):
        generate(BigramTable(5), banned=[2, 3, 4])

"""Beam search: exhaustive on tiny vocabularies, n-best bookkeeping, EOS handling, bad settings."""

import itertools

import pytest
import torch

from arlm.decode.search import beam_search, greedy_search
from arlm.errors import ConfigError
from arlm.models.rnn import RNNLM, RNNConfig
from arlm.models.transformer import TransformerConfig, TransformerLM
from arlm.streams import EOS_ID, PAD_ID, SOS_ID
from toy_models import BigramTable


def _tiny_transformer(V: int, seed: int = 0) -> TransformerLM:
    torch.manual_seed(seed)
    m = TransformerLM(TransformerConfig(vocab_size=V, block_size=16, n_layer=2, n_head=2, d_model=16))
    for p in m.parameters():  # larger weights: a peaked distribution, no near-ties
        p.data.mul_(20)
    return m.eval()


def _tiny_rnn(V: int, seed: int = 0) -> RNNLM:
    torch.manual_seed(seed)
    return RNNLM(RNNConfig(vocab_size=V, cell="gru", d_embed=8, d_hidden=8)).eval()


MODELS = {
    "bigram": lambda: BigramTable(5, seed=3),
    "transformer": lambda: _tiny_transformer(5, seed=1),
    "rnn": lambda: _tiny_rnn(5, seed=2),
}


def _exhaustive(model, prompt: list[int], L: int, alpha: float):
    """Every complete continuation (ends in [EOS], or reaches L tokens), scored by teacher forcing."""
    words = [w for w in range(model.vocab_size) if w not in (PAD_ID, SOS_ID, EOS_ID)]
    seqs = [(*body, EOS_ID) for n in range(L - 1) for body in itertools.product(words, repeat=n)]
    seqs += [s for s in itertools.product([*words, EOS_ID], repeat=L) if EOS_ID not in s[:-1]]
    out = []
    for s in seqs:
        full = torch.tensor([[*prompt, *s]])
        with torch.no_grad():
            lp = float(model.score(full)[0, len(prompt) - 1 :].double().sum())
        out.append((lp / len(s) ** alpha, lp, s))
    return sorted(out, key=lambda x: -x[0])


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("alpha", [0.0, 1.0, 0.6])
@pytest.mark.parametrize("early_stopping", [True, False, "never"])
def test_wide_beam_is_exhaustive_search(name, alpha, early_stopping):
    model = MODELS[name]()
    L, prompt = 3, [SOS_ID, 4]
    ref = _exhaustive(model, prompt, L, alpha)
    K = model.vocab_size**L  # ≥ every hypothesis: nothing is ever pruned
    with torch.no_grad():
        b = beam_search(model, [prompt], num_beams=K, max_new_tokens=L, length_penalty=alpha,
                        early_stopping=early_stopping)
    n = len(ref)
    assert torch.isfinite(b.scores[0, :n]).all() and not torch.isfinite(b.scores[0, n:]).any()
    got = [tuple(b.tokens[0, r, : b.lengths[0, r]].tolist()) for r in range(n)]
    assert got == [s for _, _, s in ref]
    tol = {"atol": 1e-4, "rtol": 1e-5}  # float32 models: step-by-step vs teacher-forced rounding
    ref_scores = torch.tensor([x[0] for x in ref], dtype=torch.float64)
    torch.testing.assert_close(b.scores[0, :n], ref_scores, **tol)
    ref_lp = torch.tensor([x[1] for x in ref], dtype=torch.float64)
    torch.testing.assert_close(b.log_probs[0, :n], ref_lp, **tol)
    for r, s in enumerate(got):
        assert b.stop_reason[0][r] == ("eos" if s[-1] == EOS_ID else "length")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_one_beam_is_greedy(name):
    model = MODELS[name]()
    g = greedy_search(model, [[SOS_ID, 3]], max_new_tokens=6)
    b = beam_search(model, [[SOS_ID, 3]], num_beams=1, max_new_tokens=6)
    assert b.tokens[0, 0, : b.lengths[0, 0]].tolist() == g.rows()[0]
    assert float(b.log_probs[0, 0]) == pytest.approx(float(g.log_probs[0].sum()), abs=1e-6)


def test_nbest_is_sorted_scored_and_batched():
    model = BigramTable(9, seed=7)
    prompts = [[SOS_ID, 4], [SOS_ID, 7]]
    b = beam_search(model, prompts, num_beams=5, max_new_tokens=8, length_penalty=1.0,
                    num_samples=3)
    assert b.tokens.shape[:2] == (2, 3) and b.scores.shape == (2, 3)
    for i, p in enumerate(prompts):
        assert (b.scores[i, :-1] >= b.scores[i, 1:]).all()
        one = beam_search(model, [p], num_beams=5, max_new_tokens=8, num_samples=3)
        assert torch.equal(one.scores[0], b.scores[i])  # rows of a batch are independent
        for r in range(3):
            n = int(b.lengths[i, r])
            seq = torch.tensor([[*p, *b.tokens[i, r, :n].tolist()]])
            lp = float(model.score(seq)[0, 1:].sum())
            assert float(b.log_probs[i, r]) == pytest.approx(lp)
            assert float(b.scores[i, r]) == pytest.approx(lp / n)
            assert all(t == PAD_ID for t in b.tokens[i, r, n:].tolist())
            assert EOS_ID not in b.tokens[i, r, : n - 1].tolist()


def test_early_stopping_true_stops_once_k_hypotheses_are_finished():
    # [EOS] is almost certain after every token: the first step finishes K hypotheses at once
    model = BigramTable(6, seed=0)
    model.table[:, EOS_ID] = 10.0
    model.table = model.table.log_softmax(-1)
    b = beam_search(model, None, num_beams=2, max_new_tokens=20)
    assert b.lengths.max() <= 2
    assert b.stop_reason[0] == ["eos", "eos"]


@pytest.mark.parametrize("kw", [
    {"num_beams": 0}, {"num_beams": 2.5}, {"max_new_tokens": 0}, {"max_new_tokens": -1},
    {"num_samples": 5}, {"num_samples": 0}, {"early_stopping": "sometimes"},
    {"length_penalty": float("nan")},
])
def test_bad_settings(kw):
    with pytest.raises(ConfigError):
        beam_search(BigramTable(5), **({"num_beams": 4} | kw))


def test_ragged_prompts_are_refused():
    with pytest.raises(ConfigError, match="different lengths"):
        beam_search(BigramTable(5), [[SOS_ID, 3], [SOS_ID]])

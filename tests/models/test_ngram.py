"""N-gram counting, the four estimators, the ARModel interface, and the model folder format.

Expected values are derived by hand (fractions in the docstrings) or by brute force in plain Python.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from fractions import Fraction as F

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from arlm.errors import ConfigError, DataError, FormatError, MismatchError
from arlm.models import ngram as ngram_module
from arlm.models.base import ARModel
from arlm.models.conformance import check_conformance
from arlm.models.ngram import (
    NGramModel,
    adjusted_counts,
    count_of_counts,
    kneser_ney_discounts,
)
from arlm.models.ngram_counts import KeyIndex, count_ngrams
from arlm.streams import EOS_ID, PAD_ID, SOS_ID, UNK_ID

SPECIALS = ["[PAD]", "[SOS]", "[EOS]", "[UNK]"]
TOY_VOCAB = [*SPECIALS, "a", "b", "c"]
A, B, C = 4, 5, 6
TOY = ["a b c", "a b a", "b c a b", "c a"]


def encode(sentences, vocab=TOY_VOCAB):
    index = {w: i for i, w in enumerate(vocab)}
    return np.array([i for s in sentences for i in [SOS_ID, *(index[w] for w in s.split()), EOS_ID]])


def toy(order, smoothing, **opts):
    return NGramModel.fit(encode(TOY), order, TOY_VOCAB, smoothing, **opts)


def p(model, word, *context):
    """p(word | context) as a float (context ids as given, e.g. starting with SOS_ID)."""
    return math.exp(model.logprob(word, list(context)))


def random_corpus(seed, vocab_size=12, sentences=300, max_len=12):
    """[SOS] w… [EOS] sentences of Zipf-ish random words (ids ≥ 4, [UNK] included sometimes)."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, vocab_size - 2)
    out = []
    for _ in range(sentences):
        n = int(rng.integers(0, max_len))
        words = rng.choice(np.arange(3, vocab_size), size=n, p=weights / weights.sum())
        out.append(np.array([SOS_ID, *words, EOS_ID]))
    return out


def random_vocab(v):
    return SPECIALS + [f"w{i}" for i in range(4, v)]


# --------------------------------------------------------------------------------------------
# counting
# --------------------------------------------------------------------------------------------


def brute_counts(sentences, order):
    """Counter of n-gram tuples, n ≤ order, never crossing a sentence start."""
    c = Counter()
    for s in sentences:
        for n in range(1, order + 1):
            for i in range(len(s) - n + 1):
                c[tuple(int(x) for x in s[i : i + n])] += 1
    return c


def as_dict(counts, n):
    words = counts.words(n)
    return {tuple(w): int(k) for w, k in zip(words.tolist(), counts.counts[n - 1], strict=True) if k}


@given(seed=st.integers(0, 10_000), order=st.integers(1, 5))
@settings(max_examples=25, deadline=None)
def test_counts_equal_brute_force(seed, order):
    sents = random_corpus(seed, sentences=20)
    counts = count_ngrams(sents, order, 12)
    expected = brute_counts(sents, order)
    for n in range(1, order + 1):
        assert as_dict(counts, n) == {k: v for k, v in expected.items() if len(k) == n}
    # the flat stream gives the same counts as the list of sentences
    flat = count_ngrams(np.concatenate(sents).astype(np.uint16), order, 12)
    for n in range(1, order + 1):
        assert np.array_equal(flat.keys[n - 1], counts.keys[n - 1])
        assert np.array_equal(flat.counts[n - 1], counts.counts[n - 1])


def test_toy_counts_by_hand():
    """Sentences <s> a b c </s> | <s> a b a </s> | <s> b c a b </s> | <s> c a </s>.

    c(a) = 5, c(b) = 4, c(c) = 3, c(</s>) = 4, c(<s>) = 4; c(a b) = 3, c(<s> a) = 2, c(b </s>) = 1;
    c(<s> a b) = 2, c(a b c) = 1; no n-gram holds <s> after its first word (e.g. "</s> <s>").
    """
    c = count_ngrams(encode(TOY), 3, 7)
    uni = c.counts[0]
    assert (uni[A], uni[B], uni[C], uni[EOS_ID], uni[SOS_ID], uni[PAD_ID]) == (5, 4, 3, 4, 4, 0)
    bi, tri = as_dict(c, 2), as_dict(c, 3)
    assert bi[(A, B)] == 3 and bi[(SOS_ID, A)] == 2 and bi[(B, EOS_ID)] == 1
    assert tri[(SOS_ID, A, B)] == 2 and tri[(A, B, C)] == 1
    assert len(bi) == 10 and len(tri) == 11  # as lmplz's ARPA header for this corpus
    assert not any(SOS_ID in k[1:] for k in list(bi) + list(tri))


def test_adjusted_counts_by_hand():
    """Order 3. Bigrams keep raw counts when they start with <s> (a(<s> a) = 2), others count
    distinct left extensions among the trigrams: a(a b) = |{<s>, c}| = 2, a(b c) = |{a, <s>}| = 2,
    a(c </s>) = |{b}| = 1, a(a </s>) = |{b, c}| = 2. Unigrams count left extensions among bigrams:
    a(a) = |{<s>, b, c}| = 3, a(b) = |{<s>, a}| = 2, a(</s>) = |{a, b, c}| = 3; a(<s>) = 0.
    Trigrams keep raw counts: a(<s> a b) = 2."""
    c = count_ngrams(encode(TOY), 3, 7)
    adj = adjusted_counts(c)
    uni = adj[0]
    assert (uni[A], uni[B], uni[C], uni[EOS_ID], uni[SOS_ID], uni[UNK_ID]) == (3, 2, 2, 3, 0, 0)
    bi = {tuple(w): int(a) for w, a in zip(c.words(2).tolist(), adj[1], strict=True)}
    assert bi[(SOS_ID, A)] == 2 and bi[(A, B)] == 2 and bi[(B, C)] == 2
    assert bi[(C, EOS_ID)] == 1 and bi[(A, EOS_ID)] == 2
    tri = {tuple(w): int(a) for w, a in zip(c.words(3).tolist(), adj[2], strict=True)}
    assert tri[(SOS_ID, A, B)] == 2


def test_adjusted_counts_equal_brute_force():
    sents = random_corpus(3, sentences=60)
    order = 4
    c = count_ngrams(sents, order, 12)
    raw = brute_counts(sents, order)
    adj = adjusted_counts(c)
    for n in range(1, order + 1):
        for w, a in zip(c.words(n).tolist(), adj[n - 1], strict=True):
            w = tuple(w)
            if raw.get(w, 0) == 0 or (n == 1 and w[0] == SOS_ID):
                assert a == 0
            elif n == order or w[0] == SOS_ID:
                assert a == raw[w]
            else:
                assert a == sum(1 for k in raw if len(k) == n + 1 and k[1:] == w)


def test_key_index_finds_present_and_absent_keys():
    rng = np.random.default_rng(0)
    keys = np.unique(rng.integers(0, 10**12, 5000))
    index = KeyIndex(keys)
    present = rng.choice(len(keys), 3000)
    absent = rng.integers(0, 10**12, 3000)
    absent = absent[~np.isin(absent, keys)]
    assert np.array_equal(index.find(keys[present]), present)
    assert (index.find(absent) == -1).all()
    assert (KeyIndex(keys[:0]).find(absent) == -1).all()
    # one key at a time (Python integers): the same positions
    assert [index.find_one(int(k)) for k in keys[present[:300]]] == present[:300].tolist()
    assert all(index.find_one(int(k)) == -1 for k in absent[:300])
    big = np.unique(rng.integers(0, 2**62, 20_000))  # keys whose hash products overflow 64 bits
    assert [KeyIndex(big).find_one(int(k)) for k in big[::97]] == list(range(0, len(big), 97))


# --------------------------------------------------------------------------------------------
# estimators, by hand
# --------------------------------------------------------------------------------------------


def test_discounts_from_count_of_counts_by_hand():
    """a = 1,1,1,1,2,2,3,4: t1=4, t2=2, t3=1, t4=1; Y = 4/(4+2·2) = 1/2;
    D1 = 1 - 2·Y·t2/t1 = 1/2, D2 = 2 - 3·Y·t3/t2 = 5/4, D3+ = 3 - 4·Y·t4/t3 = 1; KN: D = Y = 1/2."""
    a = np.array([1, 1, 1, 1, 2, 2, 3, 4, 0])
    assert count_of_counts(a)[1:].tolist() == [4, 2, 1, 1]
    (d,), used = kneser_ney_discounts([a], "mkn", None)
    assert d == pytest.approx([0.5, 1.25, 1.0], abs=1e-12) and used == [False]
    (d,), _ = kneser_ney_discounts([a], "kn", None)
    assert d == pytest.approx([0.5] * 3, abs=1e-12)


def test_mkn_bigram_probabilities_by_hand():
    """Order 2. Unigram adjusted counts a(a)=3, a(b)=2, a(c)=2, a(</s>)=3 have no count 1, so the
    unigram discounts fall back to 1/2, 1, 3/2: Σ a = 10, γ(ε) = (1·2 + 3/2·2)/10 = 1/2, |V| = 5
    (</s>, <unk>, a, b, c): p(a) = (3-3/2)/10 + (1/2)/5 = 1/4, p(b) = p(c) = (2-1)/10 + 1/10 = 1/5,
    p(</s>) = 1/4, p(<unk>) = 1/10.
    Bigrams (highest order: raw counts) t1 = 5 (<s> b, <s> c, c </s>, b a, b </s>), t2 = 4
    (<s> a, b c, a </s>, c a), t3 = 1 (a b), t4 = 0: Y = 5/13, D1 = 1 - 2·Y·4/5 = 5/13,
    D2 = 2 - 3·Y·1/4 = 89/52, D3+ = 3 - 4·Y·0 = 3.
    After a (b 3, </s> 2, Σ 5): γ(a) = (3 + 89/52)/5 = 49/52; p(b|a) = (3-3)/5 + 49/52·1/5 = 49/260,
    p(</s>|a) = (2-89/52)/5 + 49/52·1/4 = 61/208, p(c|a) = γ(a) p(c) = 49/260 (unseen: backoff).
    After <s> (a 2, b 1, c 1, Σ 4): γ(<s>) = (89/52 + 2·5/13)/4 = 129/208;
    p(a|<s>) = (2-89/52)/4 + 129/208·1/4 = 189/832, p(b|<s>) = (1-5/13)/4 + 129/208·1/5 = 289/1040.
    After c (</s> 1, a 2, Σ 3): γ(c) = (5/13 + 89/52)/3 = 109/156, p(a|c) = 5/52 + 109/624 = 13/48.
    """
    m = toy(2, "mkn", discount_fallback=True)
    assert m.discounts[0]["D"] == [0.5, 1.0, 1.5] and m.discounts[0]["fallback"]
    assert m.discounts[1]["D"] == pytest.approx([5 / 13, 89 / 52, 3.0], abs=1e-12)
    assert not m.discounts[1]["fallback"]
    expect = {
        (A,): F(1, 4), (B,): F(1, 5), (EOS_ID,): F(1, 4), (UNK_ID,): F(1, 10),
        (B, A): F(49, 260), (EOS_ID, A): F(61, 208), (C, A): F(49, 260),
        (A, SOS_ID): F(189, 832), (B, SOS_ID): F(289, 1040), (A, C): F(13, 48),
    }
    for (w, *ctx), value in expect.items():
        assert p(m, w, *ctx) == pytest.approx(float(value), abs=1e-12), (w, ctx)


def test_mkn_trigram_probability_by_hand():
    """Order 3, D = 1/2, 1, 3/2. Bigram b's children in adjusted counts: c 2 (<s> b c, a b c),
    a 1, </s> 1 (Σ 4), γ(b) = (1 + 1/2 + 1/2)/4 = 1/2, p(c|b) = (2-1)/4 + 1/2·1/5 = 7/20.
    Trigram context "a b": c 1, a 1, </s> 1 (raw), γ = 3·(1/2)/3 = 1/2,
    p(c | a b) = (1-1/2)/3 + 1/2·7/20 = 41/120 (lmplz writes -0.4663974 = log10 41/120).
    Context "<s> a": only b, raw count 2, γ = D2/2 = 1/2, p(b|<s> a) = (2-1)/2 + 1/2·p(b|a) with
    p(b|a) = (2-1)/4 + 1/2·1/5 = 7/20 (a b: 2, a </s>: 2), so 1/2 + 7/40 = 27/40 (lmplz:
    -0.17069621)."""
    m = toy(3, "mkn", discount_fallback=True)
    assert p(m, C, B) == pytest.approx(7 / 20, abs=1e-12)
    assert p(m, C, A, B) == pytest.approx(41 / 120, abs=1e-12)
    assert p(m, B, SOS_ID, A) == pytest.approx(27 / 40, abs=1e-12)


def test_kn_single_discount_by_hand():
    """Order 2, one discount per order. Unigrams have no adjusted count 1, so D falls back to the
    given 1/2: γ(ε) = (1/2·4)/10 = 1/5, p(a) = (3-1/2)/10 + (1/5)/5 = 29/100,
    p(b) = (2-1/2)/10 + 1/25 = 19/100. Bigrams: t1 = 5, t2 = 4, D = 5/(5+2·4) = 5/13.
    After a (b 3, </s> 2): γ(a) = (5/13·2)/5 = 2/13, p(b|a) = (3-5/13)/5 + 2/13·19/100 = 359/650."""
    m = toy(2, "kn", discount_fallback=0.5)
    assert [d["D"] for d in m.discounts] == [[0.5], [pytest.approx(5 / 13, abs=1e-12)]]
    assert p(m, A) == pytest.approx(29 / 100, abs=1e-12)
    assert p(m, B) == pytest.approx(19 / 100, abs=1e-12)
    assert p(m, B, A) == pytest.approx(359 / 650, abs=1e-12)


def test_mle_and_add_k_by_hand():
    """Raw counts: c(a)=5, c(b)=4, c(c)=3, c(</s>)=4 (Σ without <s> = 16); after a: b 3, </s> 2.
    MLE: p(b|a) = 3/5, p(c|a) = 0, p(a) = 5/16; [UNK] was never a context, so p(a|[UNK]) = p(a).
    Add-1 (|V| = 5): p(b|a) = 4/10, p(c|a) = 1/10, p(a) = 6/21, p([UNK]) = 1/21.
    Add-k, k = 1/2: p(b|a) = (3+1/2)/(5+5/2) = 7/15."""
    mle = toy(2, "mle")
    assert p(mle, B, A) == pytest.approx(3 / 5, abs=1e-12)
    assert mle.logprob(C, [A]) == -math.inf
    assert p(mle, A) == pytest.approx(5 / 16, abs=1e-12)
    assert p(mle, A, UNK_ID) == pytest.approx(5 / 16, abs=1e-12)
    lap = toy(2, "laplace")
    assert p(lap, B, A) == pytest.approx(4 / 10, abs=1e-12)
    assert p(lap, C, A) == pytest.approx(1 / 10, abs=1e-12)
    assert p(lap, A) == pytest.approx(6 / 21, abs=1e-12)
    assert p(lap, UNK_ID) == pytest.approx(1 / 21, abs=1e-12)
    assert p(toy(2, "add-k", k=0.5), B, A) == pytest.approx(7 / 15, abs=1e-12)


def test_mle_unseen_word_gives_infinite_perplexity():
    m = toy(2, "mle")
    assert m.perplexity("a c") == math.inf  # "a c" was never seen
    assert math.isfinite(toy(2, "mkn", discount_fallback=True).perplexity("a c"))


def test_sos_and_pad_are_never_predicted():
    for smoothing in ("mle", "laplace", "kn", "mkn"):
        m = toy(3, smoothing, **({"discount_fallback": True} if "kn" in smoothing else {}))
        lp = m.log_probs(torch.tensor([[SOS_ID, A, B]]))
        assert torch.isneginf(lp[..., SOS_ID]).all() and torch.isneginf(lp[..., PAD_ID]).all()


# --------------------------------------------------------------------------------------------
# every distribution sums to one; the interface
# --------------------------------------------------------------------------------------------

ESTIMATORS = [("mle", {}), ("add-k", {"k": 0.3}), ("laplace", {}),
              ("kn", {"discount_fallback": True}), ("mkn", {"discount_fallback": True})]


@pytest.mark.parametrize("smoothing,opts", ESTIMATORS)
@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
def test_distributions_sum_to_one(smoothing, opts, order):
    V = 14  # word 13 never occurs in training: an unseen vocabulary entry
    sents = random_corpus(order, vocab_size=13, sentences=200)
    m = NGramModel.fit(sents, order, random_vocab(V), smoothing, **opts)
    rng = np.random.default_rng(order)
    seen = [s[: rng.integers(1, len(s) + 1)] for s in sents[:40]]  # training prefixes
    unseen = [np.array([SOS_ID, *rng.integers(2, V, rng.integers(0, 8))]) for _ in range(40)]
    rows = [*seen, *unseen]
    T = max(len(r) for r in rows)
    tokens = torch.tensor(np.array([np.pad(r, (0, T - len(r))) for r in rows]))
    sums = m.log_probs(tokens).exp().sum(-1)  # (B, T), float64
    assert sums.dtype == torch.float64
    assert torch.allclose(sums, torch.ones_like(sums), rtol=0, atol=1e-9)
    out, _ = m.step(tokens, m.start(len(rows)))  # the same through step
    assert torch.allclose(out.exp().sum(-1), torch.ones(len(rows), dtype=torch.float64), atol=1e-9)


@pytest.mark.parametrize("smoothing,opts", ESTIMATORS)
@pytest.mark.parametrize("order", [2, 3, 5])
def test_one_row_steps_equal_the_batched_step(smoothing, opts, order):
    """A one-row step (scalar lookups) gives exactly the distribution of the same row in a batch (the
    vectorised core): from the start, fed one token or several at a time, over seen and unseen text,
    across a new sentence's [SOS]."""
    V = 14
    sents = random_corpus(order + 20, vocab_size=13, sentences=200)
    m = NGramModel.fit(sents, order, random_vocab(V), smoothing, **opts)
    rng = np.random.default_rng(order)
    feeds = [*sents[:6], np.array([SOS_ID, 13, 13, 4, 5, EOS_ID, SOS_ID, 6]), rng.integers(2, V, 9)]
    for seq in feeds:
        one, two = m.start(1), m.start(2)
        for piece in np.array_split(seq, max(1, len(seq) // 2)):
            if not len(piece):
                continue
            tokens = torch.from_numpy(piece.astype(np.int64))[None]  # (1, t)
            out_one, one = m.step(tokens, one)
            out_two, two = m.step(tokens.repeat(2, 1), two)  # (2, V): the batched path
            assert torch.equal(out_one[0], out_two[0])
            assert torch.equal(one.history[0], two.history[0])


@pytest.mark.parametrize("smoothing,opts", ESTIMATORS)
@pytest.mark.parametrize("order", [1, 2, 4])
def test_greedy_continuation_is_what_greedy_steps_choose(smoothing, opts, order):
    """greedy_continuation(context, k) equals k steps that feed back each argmax: from a short or a
    long context, unseen text, across [EOS]/[SOS], with a memo reused between calls, and stopping
    after ``stop``."""
    V = 14
    sents = random_corpus(order + 20, vocab_size=13, sentences=200)
    m = NGramModel.fit(sents, order, random_vocab(V), smoothing, **opts)
    rng = np.random.default_rng(order)
    contexts = [[SOS_ID], [int(x) for x in sents[0][:7]], [SOS_ID, 13, 13, 4, 5, EOS_ID, SOS_ID, 6],
                [int(x) for x in rng.integers(2, V, 9)]]
    memo: dict = {}
    for context in contexts:
        out, state = m.step(torch.tensor([context]), m.start(1))
        expected = []
        for _ in range(12):
            expected.append(int(out[0].argmax()))
            out, state = m.step(torch.tensor([[expected[-1]]]), state)
        assert m.greedy_continuation(context, 12) == expected
        assert m.greedy_continuation(context, 12, memo=memo) == expected  # fills the memo
        assert m.greedy_continuation(context, 12, memo=memo) == expected  # reads it
        stop = expected[3]
        assert m.greedy_continuation(context, 12, stop=stop) == expected[: expected.index(stop) + 1]
    assert memo and m.greedy_continuation([SOS_ID], 0) == []


def test_greedy_continuation_checks_its_ids():
    m = NGramModel.fit(random_corpus(3, vocab_size=13, sentences=50), 3, random_vocab(14), "kn",
                       discount_fallback=True)
    with pytest.raises(MismatchError, match="outside this model's vocabulary"):
        m.greedy_continuation([SOS_ID, 99], 3)


@pytest.mark.parametrize("smoothing,opts", ESTIMATORS)
@pytest.mark.parametrize("order", [1, 3, 5])
def test_conformance(smoothing, opts, order):
    sents = random_corpus(7, sentences=150)
    m = NGramModel.fit(sents, order, random_vocab(12), smoothing, **opts)
    assert isinstance(m, ARModel)
    rows = [sents[0], sents[1], np.array([SOS_ID, 5, 5, 5, 9, 9, EOS_ID]), np.array([SOS_ID, 3])]
    T = max(len(r) for r in rows)
    check_conformance(m, torch.tensor(np.array([np.pad(r, (0, T - len(r))) for r in rows])))


def test_score_in_chunks_equals_one_pass(monkeypatch):
    sents = random_corpus(11, sentences=50)
    m = NGramModel.fit(sents, 4, random_vocab(12), "mkn", discount_fallback=True)
    stream = torch.from_numpy(np.concatenate(sents))[None]  # (1, T): several sentences in a row
    whole = m.score(stream)
    monkeypatch.setattr(ngram_module, "CHUNK", 7)
    assert torch.equal(m.score(stream), whole)
    rows = torch.from_numpy(np.stack([s[:3] for s in sents if len(s) >= 3]))
    assert torch.equal(m.score(rows), torch.from_numpy(m._score10(rows.numpy()) * ngram_module.LN10))


def test_context_resets_at_sentence_start():
    """After [EOS] [SOS] the history before the new <s> no longer matters, as in a new sentence."""
    m = toy(3, "mkn", discount_fallback=True)
    one = m.score(torch.tensor([[SOS_ID, C, A, EOS_ID, SOS_ID, A, B]]))[0, -2:]
    fresh = m.score(torch.tensor([[SOS_ID, A, B]]))[0]
    assert torch.allclose(one, fresh, atol=1e-12)


def test_friendly_api_matches_interface():
    m = toy(3, "mkn", discount_fallback=True)
    assert m.order == 3 and m.smoothing == "mkn" and m.vocab_size == 7
    total = m.score(torch.tensor([[SOS_ID, A, B, C, EOS_ID]])).sum().item() / math.log(10)
    assert m.score_sentence("a b c") == pytest.approx(total, abs=1e-12)
    assert m.score_sentence(["a", "b", "c"]) == pytest.approx(total, abs=1e-12)
    assert m.perplexity("a b c") == pytest.approx(10 ** (-total / 4), rel=1e-12)
    # out-of-vocabulary words are [UNK]
    assert m.score_sentence("a zebra") == pytest.approx(m.score_sentence("a [UNK]"), abs=1e-12)
    assert m.logprob("b", ["[SOS]", "a"]) == pytest.approx(math.log(27 / 40), abs=1e-12)
    assert m.logprob("b", ["<s>", "a"]) == m.logprob("b", ["[SOS]", "a"])  # KenLM's spelling
    assert m.score_sentence("a b </s>", eos=False) == pytest.approx(m.score_sentence("a b"), abs=1e-12)


# --------------------------------------------------------------------------------------------
# save / load
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("smoothing,opts", [("mkn", {"discount_fallback": True}), ("laplace", {})])
def test_save_load_roundtrip(tmp_path, smoothing, opts):
    sents = random_corpus(5, sentences=80)
    m = NGramModel.fit(sents, 3, random_vocab(12), smoothing, **opts)
    m.save(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["family"] == "ngram" and config["order"] == 3 and config["smoothing"] == smoothing
    loaded = NGramModel.load(tmp_path / "model")
    tokens = torch.from_numpy(np.stack([s[:4] for s in sents if len(s) >= 4]))
    assert torch.equal(loaded.log_probs(tokens), m.log_probs(tokens))
    assert loaded.vocab == m.vocab and loaded.discounts == m.discounts


def test_load_rejects_broken_folders(tmp_path):
    m = toy(2, "mkn", discount_fallback=True)
    folder = m.save(tmp_path / "m")
    weights = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(FormatError, match="truncated"):
        NGramModel.load(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(FormatError, match="missing"):
        NGramModel.load(folder)
    folder = m.save(tmp_path / "m")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(FormatError, match="not valid JSON"):
        NGramModel.load(folder)
    (folder / "config.json").write_text(json.dumps({"family": "gpt"}))
    with pytest.raises(MismatchError, match="not an n-gram model"):
        NGramModel.load(folder)
    with pytest.raises(FormatError, match="missing"):
        NGramModel.load(tmp_path / "nowhere")


def test_model_vocab_mismatch(tmp_path):
    m = toy(2, "mkn", discount_fallback=True)
    folder = m.save(tmp_path / "m")
    with pytest.raises(MismatchError, match="vocabulary"):
        NGramModel.load(folder, vocab=[*TOY_VOCAB, "d"])
    with pytest.raises(MismatchError, match="outside"):
        m.score(torch.tensor([[SOS_ID, 7]]))  # id 7 is past the vocabulary
    with pytest.raises(MismatchError, match="outside the vocabulary"):
        NGramModel.fit(encode(TOY), 2, TOY_VOCAB[:6], "mkn")  # data uses id 6


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", [0, -1, 2.5, True])
def test_bad_order(order):
    with pytest.raises(ConfigError, match="order"):
        NGramModel.fit(encode(TOY), order, TOY_VOCAB)


def test_bad_options():
    with pytest.raises(ConfigError, match="unknown smoothing 'witten-bell'"):
        NGramModel.fit(encode(TOY), 2, TOY_VOCAB, "witten-bell")
    with pytest.raises(ConfigError, match="k > 0"):
        NGramModel.fit(encode(TOY), 2, TOY_VOCAB, "add-k", k=0)
    with pytest.raises(ConfigError, match="add-k"):
        NGramModel.fit(encode(TOY), 2, TOY_VOCAB, "mkn", k=1)
    with pytest.raises(ConfigError, match="discount_fallback"):
        NGramModel.fit(encode(TOY), 2, TOY_VOCAB, "mle", discount_fallback=True)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        NGramModel.fit(encode(TOY), 2, TOY_VOCAB, "mkn", discount_fallback=[1.5])


def test_discounts_impossible_from_too_little_data():
    with pytest.raises(DataError, match="discount_fallback") as e:
        NGramModel.fit(encode(TOY), 2, TOY_VOCAB, "mkn")
    assert "more data" in str(e.value) and "adjusted count 1" in str(e.value)
    with pytest.raises(DataError, match="discount_fallback"):
        NGramModel.fit(encode(TOY), 2, TOY_VOCAB, "kn")


def test_bad_training_data():
    with pytest.raises(DataError, match="start with"):
        NGramModel.fit(np.array([A, B, EOS_ID]), 2, TOY_VOCAB)
    with pytest.raises(DataError, match="PAD"):
        NGramModel.fit(np.array([SOS_ID, A, PAD_ID, EOS_ID]), 2, TOY_VOCAB)
    with pytest.raises(DataError, match="follows"):
        NGramModel.fit(np.array([SOS_ID, A, EOS_ID, B, EOS_ID]), 2, TOY_VOCAB)
    with pytest.raises(DataError, match="empty"):
        NGramModel.fit([], 2, TOY_VOCAB)
    with pytest.raises(DataError, match="no 4-grams"):
        NGramModel.fit(np.array([SOS_ID, A, EOS_ID]), 4, TOY_VOCAB, "mle")
    with pytest.raises(MismatchError, match="special"):
        NGramModel.fit(np.array([SOS_ID, EOS_ID]), 2, ["[PAD]", "[SOS]", "[EOS]"])

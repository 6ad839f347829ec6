"""Logits processors: each formula on hand-made cases, the nucleus property, order, sampling, errors."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from arlm.decode.processors import (
    BannedTokens,
    LogitsPipeline,
    MinP,
    NoRepeatNGram,
    RepetitionPenalty,
    Temperature,
    TopK,
    TopP,
    build_processors,
    is_greedy,
)
from arlm.errors import ConfigError
from arlm.streams import PAD_ID

NO_TOKENS = torch.zeros(1, 0, dtype=torch.long)


def log_probs(*rows):
    """Hand-made probabilities -> float32 log-probs (B, V), the way a model hands them over."""
    return torch.tensor(rows, dtype=torch.float64).log().float()


def kept(logits):
    """The ids whose logit is finite, one sorted list per row."""
    return [torch.isfinite(row).nonzero().flatten().tolist() for row in logits]


# --------------------------------------------------------------------------- top-k


def test_top_k_1_keeps_only_the_argmax():
    logits = torch.randn(8, 50, generator=torch.Generator().manual_seed(0))
    out = TopK(1)(NO_TOKENS, logits)
    assert kept(out) == [[i] for i in logits.argmax(-1).tolist()]
    assert torch.equal(out.max(-1).values, logits.max(-1).values)


def test_top_k_keeps_exactly_k_and_breaks_ties_by_lower_id():
    logits = torch.tensor([[1.0, 2.0, 3.0, 3.0, 3.0, 0.0], [3.0, 1.0, 3.0, 2.0, 3.0, 3.0]])
    assert kept(TopK(2)(NO_TOKENS, logits)) == [[2, 3], [0, 2]]
    assert kept(TopK(4)(NO_TOKENS, logits)) == [[1, 2, 3, 4], [0, 2, 4, 5]]
    out = TopK(3)(NO_TOKENS, logits)
    assert torch.equal(out[torch.isfinite(out)], logits[torch.isfinite(out)])  # kept ones untouched


# --------------------------------------------------------------------------- top-p


@pytest.mark.parametrize(
    ("probs", "p", "expected"),
    [
        ([0.5, 0.3, 0.2], 0.8, [0, 1]),  # 0.5 + 0.3 reaches 0.8 exactly: stop there
        ([0.5, 0.3, 0.2], 0.81, [0, 1, 2]),  # 0.2 crosses 0.81 and is kept
        ([0.5, 0.3, 0.2], 0.5, [0]),  # the first token alone reaches p exactly
        ([0.5, 0.3, 0.2], 0.51, [0, 1]),
        ([0.5, 0.3, 0.2], 1e-9, [0]),  # always at least one token
        ([0.2, 0.5, 0.3], 0.8, [1, 2]),  # order in the vocabulary does not matter
        ([0.4, 0.3, 0.3], 0.6, [0, 1]),  # tie at the boundary: the lower id is kept
        ([0.4, 0.3, 0.3], 0.7, [0, 1]),
        ([0.4, 0.3, 0.3], 0.71, [0, 1, 2]),
        ([0.3, 0.4, 0.3], 0.6, [0, 1]),
        ([0.3, 0.3, 0.4], 0.6, [0, 2]),
        ([0.25, 0.25, 0.25, 0.25], 0.3, [0, 1]),
        ([0.25, 0.25, 0.25, 0.25], 0.5, [0, 1]),
        ([0.25, 0.25, 0.25, 0.25], 0.75, [0, 1, 2]),
        ([0.6, 0.0, 0.4], 0.9, [0, 2]),  # a -inf logit stays out
        ([0.1, 0.2, 0.3, 0.4], 0.7, [2, 3]),
        ([0.1, 0.2, 0.3, 0.4], 0.9, [1, 2, 3]),
        ([0.1, 0.2, 0.3, 0.4], 0.91, [0, 1, 2, 3]),
    ],
)
def test_top_p_keeps_the_smallest_set_reaching_p(probs, p, expected):
    logits = log_probs(probs)
    out = TopP(p)(NO_TOKENS, logits)
    assert kept(out) == [expected]
    assert torch.equal(out[0, expected], logits[0, expected])


def reference_top_p(probs, p, tol=TopP.tol):
    """The definition, one token at a time: walk (-prob, id) order until the mass reaches p."""
    order = sorted(range(len(probs)), key=lambda i: (-probs[i], i))
    chosen, mass = [], 0.0
    for i in order:
        chosen.append(i)
        mass += probs[i]
        if mass >= p - tol:
            break
    return sorted(chosen)


# Few distinct values, so ties (at the boundary too) are common.
logit_rows = st.lists(st.sampled_from([-3.0, -1.5, -1.0, 0.0, 0.5, 2.0, float("-inf")]),
                      min_size=2, max_size=12).filter(lambda r: any(math.isfinite(x) for x in r))


@settings(max_examples=300, deadline=None)
@given(logit_rows, st.floats(min_value=1e-6, max_value=1.0))
def test_top_p_property_mass_reaches_p_and_no_member_is_spare(row, p):
    logits = torch.tensor([row], dtype=torch.float64)
    probs = logits.softmax(-1)[0]
    keep = torch.isfinite(TopP(p)(NO_TOKENS, logits))[0]
    mass = probs[keep].sum().item()
    assert mass >= p - TopP.tol
    least = min(keep.nonzero().flatten().tolist(), key=lambda i: (probs[i].item(), -i))
    assert mass - probs[least].item() < p  # dropping its least probable member falls short of p
    dropped = probs[~keep].tolist()
    assert probs[keep].min() >= max(dropped, default=0.0)  # the most probable tokens
    if p < 1:
        assert keep.nonzero().flatten().tolist() == reference_top_p(probs.tolist(), p)


def test_many_ties_go_to_the_lowest_ids():
    # An unstable sort scrambles long runs of equal values; the boundary must still be by id.
    flat = torch.zeros(2, 100)
    assert kept(TopK(10)(NO_TOKENS, flat)) == [list(range(10))] * 2
    assert kept(TopP(0.1)(NO_TOKENS, flat)) == [list(range(10))] * 2
    assert kept(TopP(0.105)(NO_TOKENS, flat)) == [list(range(11))] * 2


# --------------------------------------------------------------------------- min-p


def test_min_p_keeps_tokens_within_a_factor_of_the_best():
    logits = log_probs([0.5, 0.3, 0.12, 0.05, 0.03], [0.05, 0.05, 0.4, 0.4, 0.1])
    assert kept(MinP(0.2)(NO_TOKENS, logits)) == [[0, 1, 2], [2, 3, 4]]  # cut 0.1 and 0.08
    assert kept(MinP(0.5)(NO_TOKENS, logits)) == [[0, 1], [2, 3]]  # cut 0.25 and 0.2
    assert kept(MinP(1.0)(NO_TOKENS, logits)) == [[0], [2, 3]]  # the best, ties included
    assert kept(MinP(0.01)(NO_TOKENS, logits)) == [[0, 1, 2, 3, 4]] * 2


# --------------------------------------------------------------------------- penalties and bans


def test_repetition_penalty_matches_the_formula():
    logits = torch.tensor([[2.0, -1.0, 0.5, -3.0, 1.0, 0.0], [-2.0, 4.0, -0.5, 3.0, -1.0, 1.5]])
    tokens = torch.tensor([[1, 2, 2, 5, 1], [0, 3, 3, 3, 4]])
    out = RepetitionPenalty(1.5)(tokens, logits)
    expected = logits.clone()
    for b in range(2):
        for w in set(tokens[b].tolist()):  # each seen token once, however often it occurs
            x = logits[b, w].item()
            expected[b, w] = x / 1.5 if x > 0 else x * 1.5
    assert torch.allclose(out, expected)
    assert out[0, 0] == 2.0 and out[0, 2] == 0.5 / 1.5 and out[0, 1] == -1.5
    assert torch.equal(RepetitionPenalty(0.5)(tokens, logits)[1, 3], torch.tensor(6.0))


def banned_by_definition(row, n):
    """Every w such that (last n-1 tokens, w) is an n-gram of the row without [PAD]."""
    if n == 0 or len(row) < n:
        return set()
    prefix = tuple(row[len(row) - n + 1 :])
    grams = [tuple(row[i : i + n]) for i in range(len(row) - n + 1)]
    return {g[-1] for g in grams if g[:-1] == prefix and PAD_ID not in g}


def test_no_repeat_ngram_bans_exactly_the_completing_tokens():
    tokens = torch.tensor([[1, 4, 5, 4, 6, 4], [1, 7, 8, 9, 7, 8]])
    logits = torch.zeros(2, 10)
    assert kept(NoRepeatNGram(2)(tokens, logits)) == [
        [0, 1, 2, 3, 4, 7, 8, 9],  # after 4 came 5 and 6
        [0, 1, 2, 3, 4, 5, 6, 7, 8],  # after 8 came 9
    ]
    assert kept(NoRepeatNGram(3)(tokens, logits)) == [list(range(10)), [0, 1, 2, 3, 4, 5, 6, 7, 8]]
    assert kept(NoRepeatNGram(1)(tokens, logits)) == [[0, 2, 3, 7, 8, 9], [0, 2, 3, 4, 5, 6]]
    assert kept(NoRepeatNGram(7)(tokens, logits)) == [list(range(10))] * 2  # row too short
    padded = torch.tensor([[5, PAD_ID, 5]])  # (5, PAD) is padding, not text: PAD stays allowed
    assert kept(NoRepeatNGram(2)(padded, torch.zeros(1, 6))) == [[0, 1, 2, 3, 4, 5]]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 5), min_size=6, max_size=6), min_size=1, max_size=4),
       st.integers(0, 5))
def test_no_repeat_ngram_matches_the_definition(rows, n):
    out = NoRepeatNGram(n)(torch.tensor(rows), torch.zeros(len(rows), 6))
    for row, got in zip(rows, out, strict=True):
        assert set(torch.isinf(got).nonzero().flatten().tolist()) == banned_by_definition(row, n)


def test_banned_tokens_are_minus_infinity_and_the_rest_untouched():
    logits = torch.randn(3, 7, generator=torch.Generator().manual_seed(1))
    out = BannedTokens((0, 5, 5))(NO_TOKENS, logits)
    assert torch.isneginf(out[:, [0, 5]]).all()
    assert torch.equal(out[:, [1, 2, 3, 4, 6]], logits[:, [1, 2, 3, 4, 6]])
    with pytest.raises(ConfigError, match="outside the vocabulary"):
        BannedTokens([7])(NO_TOKENS, logits)


# --------------------------------------------------------------------------- temperature


def test_temperature_divides_and_raises_probabilities_to_one_over_t():
    probs = torch.tensor([[0.6, 0.3, 0.1]], dtype=torch.float64)
    out = Temperature(0.5)(NO_TOKENS, probs.log())
    assert torch.allclose(out, probs.log() / 0.5)
    assert torch.allclose(out.softmax(-1), probs**2 / (probs**2).sum())
    assert torch.allclose(Temperature(4.0)(NO_TOKENS, probs.log()), probs.log() / 4)


def test_temperature_zero_is_greedy_and_left_to_the_search_loop():
    assert is_greedy(0) and is_greedy(0.0) and not is_greedy(1e-3) and not is_greedy(1.0)
    with pytest.raises(ConfigError, match="greedy"):
        Temperature(0)
    assert not any(isinstance(p, Temperature) for p in build_processors(temperature=0, top_k=3))


# --------------------------------------------------------------------------- composition


def test_no_ops_leave_logits_unchanged():
    logits = torch.randn(4, 9, generator=torch.Generator().manual_seed(2))
    tokens = torch.randint(0, 9, (4, 5), generator=torch.Generator().manual_seed(3))
    for proc in [TopK(0), TopK(9), TopK(50), TopP(1.0), MinP(0.0), Temperature(1.0),
                 RepetitionPenalty(1.0), NoRepeatNGram(0), BannedTokens(()), build_processors()]:
        assert torch.equal(proc(tokens, logits), logits), proc
    assert len(build_processors()) == 0
    assert len(build_processors(temperature=1, top_k=0, top_p=1, min_p=0, banned=[])) == 0


def test_pipeline_order_is_fixed_and_no_ops_are_skipped():
    pipe = build_processors(temperature=0.7, top_k=5, top_p=0.9, min_p=0.05,
                            repetition_penalty=1.2, no_repeat_ngram_size=3, banned=[0])
    assert [type(p) for p in pipe] == [RepetitionPenalty, NoRepeatNGram, BannedTokens,
                                       Temperature, TopK, TopP, MinP]
    assert [type(p) for p in build_processors(top_p=0.5, temperature=2)] == [Temperature, TopP]

    logits = torch.randn(2, 12, generator=torch.Generator().manual_seed(4))
    tokens = torch.randint(0, 12, (2, 8), generator=torch.Generator().manual_seed(5))
    by_hand = logits
    for proc in [RepetitionPenalty(1.2), NoRepeatNGram(3), BannedTokens((0,)), Temperature(0.7),
                 TopK(5), TopP(0.9), MinP(0.05)]:
        by_hand = proc(tokens, by_hand)
    assert torch.equal(pipe(tokens, logits), by_hand)


def test_bans_come_before_top_k_and_temperature_before_top_p():
    logits = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0]])
    # Banned first, top-k still keeps k tokens (the other way round would leave only one).
    assert kept(build_processors(top_k=2, banned=[0])(NO_TOKENS, logits)) == [[1, 2]]
    # The nucleus is taken of the flattened distribution: at τ = 2, [.5 .3 .2] becomes about
    # [.42 .32 .26], so p = 0.8 needs all three (before flattening, two would do).
    logp = log_probs([0.5, 0.3, 0.2])
    assert kept(TopP(0.8)(NO_TOKENS, logp)) == [[0, 1]]
    assert kept(build_processors(temperature=2, top_p=0.8)(NO_TOKENS, logp)) == [[0, 1, 2]]


def test_rows_are_independent_and_inputs_are_not_modified():
    gen = torch.Generator().manual_seed(6)
    logits = torch.randn(5, 20, generator=gen)
    tokens = torch.randint(0, 20, (5, 10), generator=gen)
    pipe = build_processors(temperature=0.8, top_k=10, top_p=0.7, min_p=0.1,
                            repetition_penalty=1.3, no_repeat_ngram_size=2, banned=[3])
    before = logits.clone(), tokens.clone()
    together = pipe(tokens, logits)
    assert torch.equal(logits, before[0]) and torch.equal(tokens, before[1])
    for b in range(5):
        assert torch.equal(pipe(tokens[b : b + 1], logits[b : b + 1]), together[b : b + 1])


def test_pipeline_accepts_any_callables():
    def add_one(tokens, logits):
        return logits + 1

    pipe = LogitsPipeline([add_one, TopK(1)])
    assert torch.equal(pipe(NO_TOKENS, torch.tensor([[0.0, 2.0]])), torch.tensor([[-math.inf, 3.0]]))


# --------------------------------------------------------------------------- sampling


@pytest.mark.parametrize(
    ("kwargs", "support"),
    [({"top_k": 3}, [0, 1, 2]), ({"top_p": 0.8}, [0, 1, 2, 3]), ({"min_p": 0.3}, [0, 1, 2])],
)
def test_sampling_after_truncation_follows_the_renormalised_distribution(kwargs, support):
    probs = torch.tensor([0.35, 0.25, 0.15, 0.1, 0.08, 0.05, 0.02])
    n = 20000
    logits = build_processors(**kwargs)(NO_TOKENS, probs.log()[None])
    draws = torch.multinomial(logits.softmax(-1)[0], n, replacement=True,
                              generator=torch.Generator().manual_seed(0))
    counts = np.bincount(draws.numpy(), minlength=7)
    assert np.flatnonzero(counts).tolist() == support
    truncated = probs.numpy()[support].astype(np.float64)
    expected = truncated / truncated.sum() * n
    chi2 = ((counts[support] - expected) ** 2 / expected).sum()
    assert chi2 < 25.0  # 99.9% quantiles of chi-square: 13.8 (2 dof), 16.3 (3 dof)


# --------------------------------------------------------------------------- bad settings


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_p": -0.2}, "top_p"),
        ({"top_p": math.nan}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
        ({"temperature": -0.5}, "temperature"),
        ({"temperature": math.nan}, "temperature"),
        ({"temperature": math.inf}, "temperature"),
        ({"min_p": -0.1}, "min_p"),
        ({"min_p": 1.1}, "min_p"),
        ({"repetition_penalty": 0.0}, "repetition_penalty"),
        ({"repetition_penalty": -1.2}, "repetition_penalty"),
        ({"no_repeat_ngram_size": -1}, "no_repeat_ngram_size"),
        ({"banned": [-1]}, "banned"),
    ],
)
def test_bad_settings_raise_one_sentence_config_errors(kwargs, name):
    with pytest.raises(ConfigError) as err:
        build_processors(**kwargs)
    message = str(err.value)
    assert name in message and "\n" not in message and ". " not in message


def test_processors_validate_on_their_own_too():
    for make in [lambda: TopP(0), lambda: TopK(-2), lambda: MinP(2), lambda: Temperature(-1),
                 lambda: RepetitionPenalty(0), lambda: NoRepeatNGram(-3), lambda: is_greedy(-1)]:
        with pytest.raises(ConfigError):
            make()

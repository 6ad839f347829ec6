"""The decoding experiment's measures: loops, repeated n-grams by position, known words."""

from __future__ import annotations

import numpy as np
import pytest

from arlm.experiments import decoding_measures as dm


def test_a_repeated_phrase_at_the_end_is_a_loop():
    head = list(range(100, 140))  # 40 distinct tokens
    tail = [7, 8, 9] * 12  # period 3, 36 tokens
    mask = dm.loop_mask(head + tail)
    assert not mask[:40].any() and mask[40:].all()
    assert dm.ends_in_loop(head + tail)
    assert not dm.ends_in_loop(tail + head)  # the loop is over before the end


def test_short_or_single_repeats_are_not_loops():
    assert not dm.loop_mask([5, 5, 6, 7, 8]).any()  # "the the"
    assert not dm.loop_mask([1, 2, 3] * 10).any()  # 30 tokens < MIN_LOOP_TOKENS
    assert dm.loop_mask([1, 2, 3] * 11).all()  # 33 tokens
    assert not dm.loop_mask(list(range(200))).any()
    phrase = list(range(70))  # period 70 > MAX_PERIOD
    assert not dm.loop_mask(phrase * 3).any()
    phrase = list(range(40))  # period 40: needs two periods, 80 tokens
    assert not dm.loop_mask(phrase + phrase[:39]).any()
    assert dm.loop_mask(phrase + phrase).all()
    assert not dm.ends_in_loop([])


def test_loop_mask_matches_a_direct_definition():
    """Brute force: a token is inside a loop when some periodic span (p ≤ 64, ≥ 2 periods, ≥ 32
    tokens) covers it."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.integers(0, 3, size=90).tolist()  # three symbols: many accidental short periods
        want = np.zeros(len(x), dtype=bool)
        for a in range(len(x)):
            for b in range(a + 1, len(x) + 1):
                span = x[a:b]
                for p in range(1, dm.MAX_PERIOD + 1):
                    if len(span) >= max(2 * p, dm.MIN_LOOP_TOKENS) and all(
                            span[t] == span[t - p] for t in range(p, len(span))):
                        want[a:b] = True
                        break
        assert (dm.loop_mask(x) == want).all()


def test_repeated_ngrams_by_position():
    x = [1, 2, 3, 4, 1, 2, 3, 4, 5]
    m = dm.repeated_ngram_mask(x, 4)
    assert np.isnan(m[:3]).all()
    assert m[3:].tolist() == [0, 0, 0, 0, 1, 0]
    assert dm.by_position([m], 9, 3) == [None, 0.0, pytest.approx(1 / 3)]  # bin 0: no 4-gram ends there
    assert dm.by_position([np.array([1.0, np.nan]), np.array([0.0, 0.0])], 2, 1) == [0.5, 0.0]
    assert dm.by_position([np.array([np.nan, np.nan])], 2, 2) == [None]


def test_words_known_words_and_non_words():
    assert dm.words("O'er the hills, 'tis TRUE!") == ["o'er", "the", "hills", "tis", "true"]
    known = dm.vocabulary(["the cat sat", "on the mat"])
    texts = ["the cat sat on the mat", "the cst sat on the mat"]  # "cst": a misspelling
    assert dm.non_word_rate(texts, known) == pytest.approx(1 / 12)
    assert dm.non_word_rate([""], known) == 0.0
    # 2-grams of known words only: 5 in the first text, 3 in the second ("the cst", "cst sat" dropped)
    assert dm.distinct_known(texts, 2, known) == pytest.approx(5 / 8)
    assert dm.distinct_known(texts, 1, known) == pytest.approx(5 / 11)
    assert dm.distinct_known(["zzz qqq"], 1, known) == 0.0

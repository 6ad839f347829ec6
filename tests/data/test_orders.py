"""Orders: permutations with inverses; [SOS] first and [EOS] last; whole streams at once."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arlm.data.orders import (
    ORDERS,
    apply_to_stream,
    get_order,
    inverse_permutation,
    invert_stream,
    order_for,
    stream_permutation,
)
from arlm.data.permutations import permutation_rng, random_permutation, seeded_permutation
from arlm.data.pixel_orders import pixel_order
from arlm.errors import ConfigError, DataError
from arlm.streams import EOS_ID, SOS_ID

content = st.lists(st.integers(4, 50), max_size=30)
sequences = st.lists(content, max_size=8)


def _seq(body):
    return np.array([SOS_ID, *body, EOS_ID], dtype=np.int64)


def _stream(seqs):
    return np.array([t for s in seqs for t in [SOS_ID, *s, EOS_ID]], dtype=np.uint16)


@pytest.mark.parametrize("name", list(ORDERS))
@given(body=content, seed=st.integers(0, 2**16))
@settings(max_examples=60, deadline=None)
def test_invert_undoes_apply_and_specials_stay(name, body, seed):
    order = get_order(name)
    perm = order.permutation(len(body), np.random.default_rng(seed))
    assert sorted(perm.tolist()) == list(range(len(body)))
    assert perm.dtype == np.int64
    x = _seq(body)
    y = order.apply(x, perm)
    assert y[0] == SOS_ID and y[-1] == EOS_ID
    assert sorted(y.tolist()) == sorted(x.tolist())
    assert np.array_equal(order.invert(y, perm), x)
    assert np.array_equal(order.invert(order.apply(np.array(body), perm), perm), np.array(body))


@given(body=content)
def test_r2l_reverses_content_and_twice_is_identity(body):
    r2l = get_order("r2l")
    x = _seq(body)
    assert r2l.apply(x).tolist() == [SOS_ID, *body[::-1], EOS_ID]
    assert np.array_equal(r2l.apply(r2l.apply(x)), x)
    assert np.array_equal(get_order("l2r").apply(x), x)


@given(perm=st.permutations(list(range(12))))
def test_inverse_permutation(perm):
    perm = np.array(perm)
    x = np.arange(100, 112)
    assert np.array_equal(x[perm][inverse_permutation(perm)], x)
    assert np.array_equal(inverse_permutation(inverse_permutation(perm)), perm)


@given(sequences)
@settings(max_examples=80, deadline=None)
def test_stream_r2l_reverses_each_sequence_in_place(seqs):
    stream = _stream(seqs)
    out = apply_to_stream(stream, get_order("r2l"))
    assert out.dtype == stream.dtype
    assert out.tolist() == _stream([s[::-1] for s in seqs]).tolist()
    assert np.array_equal(invert_stream(out, get_order("r2l")), stream)
    assert np.array_equal(apply_to_stream(stream, get_order("l2r")), stream)


@given(sequences, st.integers(0, 2**16))
@settings(max_examples=60, deadline=None)
def test_stream_random_is_undone_by_its_index(seqs, seed):
    stream = _stream(seqs)
    order = get_order("random")
    index = stream_permutation(stream, order, np.random.default_rng(seed))
    out = stream[index]
    # each sequence keeps its place and its multiset of tokens
    for a, b in zip(np.split(out, np.flatnonzero(out == EOS_ID) + 1),
                    np.split(stream, np.flatnonzero(stream == EOS_ID) + 1), strict=True):
        assert a[0:1].tolist() == b[0:1].tolist() and sorted(a.tolist()) == sorted(b.tolist())
    assert np.array_equal(invert_stream(out, order, index), stream)


def test_random_is_reproducible_from_a_seed():
    stream = _stream([list(range(4, 30))] * 3)
    a = apply_to_stream(stream, get_order("random"), np.random.default_rng(7))
    b = apply_to_stream(stream, get_order("random"), np.random.default_rng(7))
    assert np.array_equal(a, b) and not np.array_equal(a, stream)
    assert np.array_equal(apply_to_stream(stream, get_order("random", seed=3)),
                          apply_to_stream(stream, get_order("random", seed=3)))


def test_errors():
    with pytest.raises(ConfigError, match="l2r, r2l, random"):
        get_order("zigzag")
    with pytest.raises(ConfigError, match="seed"):
        get_order("r2l", seed=1)
    with pytest.raises(DataError, match="not a run of"):
        apply_to_stream(np.array([SOS_ID, 5, 6]), get_order("r2l"))  # cut in the middle
    with pytest.raises(DataError, match="not a run of"):
        apply_to_stream(np.array([5, EOS_ID, SOS_ID, 6, EOS_ID]), get_order("r2l"))
    with pytest.raises(ConfigError, match="permutation"):
        get_order("random").invert(_seq([4, 5, 6]))
    with pytest.raises(ConfigError, match="positions"):
        get_order("l2r").apply(_seq([4, 5, 6]), perm=np.array([0, 1]))


def test_one_seeding_rule_for_text_and_images():
    """fixed-random is seeded_permutation(n, seed) = default_rng([seed, n]).permutation(n), on text and
    on images of n pixels alike; random draws from default_rng(seed), one permutation per sequence."""
    expected = np.random.default_rng([3, 64]).permutation(64)
    assert np.array_equal(seeded_permutation(64, 3), expected)
    assert np.array_equal(get_order("fixed-random", seed=3).permutation(64), expected)
    assert np.array_equal(order_for("fixed-random", (8, 8), seed=3).permutation(64), expected)
    assert np.array_equal(pixel_order("random", 8, 8, seed=3), expected)
    rng, reference = permutation_rng(7), np.random.default_rng(7)
    for n in (5, 9):
        assert np.array_equal(random_permutation(n, rng), reference.permutation(n))

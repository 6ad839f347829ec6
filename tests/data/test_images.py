"""The 8×8 digits as token streams: the data, a fixed split, grey level g <-> id 4 + g, and streams
that round-trip under every pixel order."""

import hashlib

import numpy as np
import pytest
from sklearn.datasets import load_digits

from arlm.data.images import (
    VOCAB,
    VOCAB_SIZE,
    digits,
    image_to_tokens,
    split_indices,
    tokens_to_image,
)
from arlm.data.pixel_orders import PIXEL_ORDERS, pixel_order
from arlm.errors import ConfigError, DataError
from arlm.streams import EOS_ID, SOS_ID, SPECIAL_TOKENS, sequence_spans
from image_helpers import digits_stream, images_to_stream, random_orders, stream_to_images


def test_vocabulary_shares_the_special_ids_of_every_tokenizer():
    assert VOCAB_SIZE == len(VOCAB) == 21
    assert VOCAB[:4] == SPECIAL_TOKENS
    assert (VOCAB[SOS_ID], VOCAB[EOS_ID]) == ("[SOS]", "[EOS]")
    assert VOCAB[4] == "g0" and VOCAB[20] == "g16"


def test_all_digits_are_1797_images_of_integer_grey_levels():
    data = digits("all")
    assert len(data) == 1797
    assert data.images.shape == (1797, 8, 8) and data.images.dtype == np.int64
    assert data.images.min() == 0 and data.images.max() == 16
    assert sorted(set(data.labels.tolist())) == list(range(10))
    reference = load_digits()
    assert np.array_equal(data.images, reference.images)
    assert np.array_equal(data.labels, reference.target)


def test_split_is_80_10_10_disjoint_and_covers_everything():
    rows = split_indices()
    assert [len(rows[s]) for s in ("train", "val", "test")] == [1437, 180, 180]
    together = np.concatenate([rows["train"], rows["val"], rows["test"]])
    assert np.array_equal(np.sort(together), np.arange(1797))  # no overlap, nothing missing
    for split in ("train", "val", "test"):
        data = digits(split)
        assert np.array_equal(data.indices, rows[split])
        assert np.array_equal(data.images, digits("all").images[rows[split]])
        assert np.array_equal(data.labels, digits("all").labels[rows[split]])


def test_split_is_the_same_on_every_call_and_machine():
    first = {s: a.copy() for s, a in split_indices().items()}
    split_indices.cache_clear()
    again = split_indices()
    assert all(np.array_equal(first[s], again[s]) for s in first)
    # pinned: the split depends only on SHA-256 of "digits:<i>", not on a random generator
    assert first["test"][:6].tolist() == [0, 1, 6, 12, 31, 49]
    assert first["val"][:6].tolist() == [2, 3, 8, 9, 14, 26]
    assert first["train"][:6].tolist() == [4, 5, 7, 10, 11, 13]
    assert hashlib.sha256(first["test"].astype("<i8").tobytes()).hexdigest()[:16] == "713e673d0a1ccab2"


def test_split_arrays_cannot_be_modified_by_callers():
    with pytest.raises(ValueError):
        split_indices()["test"][0] = 5
    data = digits("test")
    data.images[0, 0, 0] = 16  # a copy: the next call is unchanged
    assert digits("test").images[0, 0, 0] == digits("all").images[0, 0, 0]


def test_grey_level_g_is_token_4_plus_g():
    image = np.arange(16).reshape(4, 4)
    tokens = image_to_tokens(image)
    assert tokens.tolist() == list(range(4, 20))
    assert np.array_equal(tokens_to_image(tokens, 4, 4), image)
    batch = digits("val").images
    assert np.array_equal(tokens_to_image(image_to_tokens(batch)), batch)
    assert [VOCAB[t] for t in image_to_tokens(np.array([[0, 16]]))] == ["g0", "g16"]


@pytest.mark.parametrize("name", list(PIXEL_ORDERS))
def test_stream_round_trips_under_every_order(name):
    images = digits("val").images
    stream = digits_stream("val", name)
    assert stream.dtype == np.int64 and stream.shape == (180 * 66,)
    rows = stream.reshape(180, 66)
    assert np.all(rows[:, 0] == SOS_ID) and np.all(rows[:, -1] == EOS_ID)
    assert np.all(rows[:, 1:-1] >= 4) and np.all(rows[:, 1:-1] <= 20)
    # step k of each sequence holds the pixel at raster index order[k]
    order = pixel_order(name, 8, 8)
    assert np.array_equal(rows[:, 1:-1], image_to_tokens(images)[:, order])
    assert np.array_equal(stream_to_images(stream, name), images)
    assert np.array_equal(stream_to_images(stream, order), images)
    # the arlm stream convention: the text tools see 180 framed sequences of 64 pixels
    starts, lengths = sequence_spans(stream)
    assert len(starts) == 180 and np.all(lengths == 66)  # [SOS] + 64 pixels + [EOS]


def test_orders_other_than_raster_change_the_stream():
    raster = digits_stream("test")
    assert np.array_equal(raster, digits_stream("test", "raster"))
    for name in ("snake", "zorder", "hilbert", "random"):
        assert not np.array_equal(digits_stream("test", name), raster)


def test_a_fresh_order_per_image_round_trips():
    images = digits("test").images
    orders = random_orders(len(images), 8, 8, np.random.default_rng(0))
    stream = images_to_stream(images, orders)
    rows = stream.reshape(len(images), 66)
    for n in (0, 17, 179):
        assert np.array_equal(rows[n, 1:-1], image_to_tokens(images[n])[orders[n]])
    assert np.array_equal(stream_to_images(stream, orders), images)
    assert not np.array_equal(stream_to_images(stream, orders[::-1]), images)


def test_random_order_seed_is_used_both_ways():
    images = digits("test").images
    stream = images_to_stream(images, "random", seed=5)
    assert np.array_equal(stream_to_images(stream, "random", seed=5), images)
    assert not np.array_equal(stream, images_to_stream(images, "random", seed=6))


@pytest.mark.parametrize("call,error,message", [
    (lambda: digits("dev"), ConfigError, "unknown split 'dev'"),
    (lambda: image_to_tokens(np.full((8, 8), 17)), DataError, "integer grey levels 0..16"),
    (lambda: image_to_tokens(np.full((8, 8), -1)), DataError, "integer grey levels 0..16"),
    (lambda: image_to_tokens(np.full((8, 8), 1.5)), DataError, "integer grey levels 0..16"),
    (lambda: image_to_tokens(np.zeros(8)), DataError, r"must be an \(H, W\) array"),
    (lambda: tokens_to_image(np.full(64, 3)), DataError, "a special id"),
    (lambda: tokens_to_image(np.full(63, 4)), DataError, "needs 64 pixel tokens"),
    (lambda: images_to_stream(np.zeros((8, 8), dtype=int)), DataError, r"a batch of images \(N, H, W\)"),
    (lambda: images_to_stream(np.zeros((2, 8, 8), dtype=int), np.arange(63)), ConfigError, "has shape"),
    (lambda: images_to_stream(np.zeros((2, 8, 8), dtype=int), np.zeros(64)), ConfigError,
     "must be a permutation of 0..63"),
    (lambda: images_to_stream(np.zeros((2, 8, 8), dtype=int), "spiral"), ConfigError, "unknown pixel order"),
    (lambda: stream_to_images(digits_stream("test")[:-1]), DataError, "not a run of"),
    (lambda: stream_to_images(np.roll(digits_stream("test"), 1)), DataError, r"start with \[SOS\]"),
])
def test_bad_input_is_one_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()

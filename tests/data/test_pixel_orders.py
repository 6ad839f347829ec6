"""Pixel orders: permutations with inverses, the 4×4 orders drawn by hand, Hilbert and Z-order
checked against their definitions (neighbour steps, recursive quadrants), clear errors."""

import numpy as np
import pytest

from arlm.data.pixel_orders import (
    PIXEL_ORDERS,
    hilbert,
    inverse_order,
    pixel_order,
    snake,
    visit_ranks,
    zorder,
)
from arlm.errors import ConfigError
from image_helpers import random_orders

SQUARE_SIZES = [(1, 1), (2, 2), (4, 4), (8, 8), (16, 16)]

# visiting ranks on 4×4: the cell at (row, column) holds the step at which it is visited
RANKS_4X4 = {
    "raster": [[0, 1, 2, 3],
               [4, 5, 6, 7],
               [8, 9, 10, 11],
               [12, 13, 14, 15]],
    "snake": [[0, 1, 2, 3],
              [7, 6, 5, 4],
              [8, 9, 10, 11],
              [15, 14, 13, 12]],
    "zorder": [[0, 1, 4, 5],
               [2, 3, 6, 7],
               [8, 9, 12, 13],
               [10, 11, 14, 15]],
    "hilbert": [[0, 1, 14, 15],
                [3, 2, 13, 12],
                [4, 7, 8, 11],
                [5, 6, 9, 10]],
}


@pytest.mark.parametrize("name", list(PIXEL_ORDERS))
@pytest.mark.parametrize("size", SQUARE_SIZES)
def test_every_order_is_a_permutation_with_an_inverse(name, size):
    height, width = size
    order = pixel_order(name, height, width)
    identity = np.arange(height * width)
    assert order.dtype == np.int64 and order.shape == (height * width,)
    assert np.array_equal(np.sort(order), identity)
    inverse = inverse_order(order)
    assert np.array_equal(order[inverse], identity)
    assert np.array_equal(inverse[order], identity)
    image = np.random.default_rng(0).integers(0, 17, size=(height, width))
    assert np.array_equal(image.reshape(-1)[order][inverse].reshape(height, width), image)


@pytest.mark.parametrize("name", ["raster", "snake", "random"])
@pytest.mark.parametrize("size", [(1, 7), (3, 5), (6, 2)])
def test_rectangular_orders_are_permutations(name, size):
    order = pixel_order(name, *size)
    assert np.array_equal(np.sort(order), np.arange(size[0] * size[1]))


@pytest.mark.parametrize("name", list(RANKS_4X4))
def test_4x4_orders_equal_the_grids_drawn_by_hand(name):
    ranks = np.array(RANKS_4X4[name])
    order = pixel_order(name, 4, 4)
    assert np.array_equal(visit_ranks(order, 4, 4), ranks)
    # and the order itself lists raster indices by rank
    assert np.array_equal(order, np.argsort(ranks.reshape(-1)))


def test_snake_on_a_rectangle():
    assert snake(3, 2).tolist() == [0, 1, 3, 2, 4, 5]


def _steps(order, width):
    rows, cols = np.divmod(order, width)
    return np.abs(np.diff(rows)) + np.abs(np.diff(cols))


@pytest.mark.parametrize("side", [2, 4, 8, 16, 32])
def test_hilbert_moves_to_a_4_neighbour_at_every_step(side):
    order = hilbert(side, side)
    assert np.all(_steps(order, side) == 1)
    assert order[0] == 0 and order[-1] == side - 1  # top-left corner to top-right corner


@pytest.mark.parametrize("side", [8, 16])
def test_hilbert_finishes_each_quadrant_before_the_next(side):
    rows, cols = np.divmod(hilbert(side, side), side)
    half = side // 2
    quadrant = (rows >= half) * 2 + (cols >= half)  # 0 TL, 1 TR, 2 BL, 3 BR
    blocks = quadrant.reshape(4, -1)
    assert all(len(set(b.tolist())) == 1 for b in blocks)
    assert blocks[:, 0].tolist() == [0, 2, 3, 1]  # TL, BL, BR, TR


@pytest.mark.parametrize("height,width", [(3, 4), (5, 5), (2, 7)])
def test_snake_moves_to_a_4_neighbour_at_every_step(height, width):
    assert np.all(_steps(snake(height, width), width) == 1)


def _zorder_recursive(side):
    """Raster indices in Z-order: top-left, top-right, bottom-left, bottom-right quadrant, each
    in Z-order (the definition, with no bits)."""
    if side == 1:
        return [(0, 0)]
    half = side // 2
    inner = _zorder_recursive(half)
    return [(r + dr, c + dc) for dr, dc in [(0, 0), (0, half), (half, 0), (half, half)] for r, c in inner]


@pytest.mark.parametrize("side", [2, 4, 8, 16])
def test_zorder_bit_interleaving_equals_the_recursive_quadrants(side):
    expected = [r * side + c for r, c in _zorder_recursive(side)]
    assert zorder(side, side).tolist() == expected


def test_random_order_is_fixed_by_its_seed():
    assert np.array_equal(pixel_order("random", 8, 8, seed=3), pixel_order("random", 8, 8, seed=3))
    assert not np.array_equal(pixel_order("random", 8, 8, seed=3), pixel_order("random", 8, 8, seed=4))
    assert not np.array_equal(pixel_order("random", 8, 8), pixel_order("raster", 8, 8))


def test_random_orders_are_fresh_per_image_and_reproducible():
    orders = random_orders(5, 8, 8, np.random.default_rng(7))
    assert orders.shape == (5, 64) and orders.dtype == np.int64
    assert all(np.array_equal(np.sort(o), np.arange(64)) for o in orders)
    assert len({tuple(o) for o in orders.tolist()}) == 5
    assert np.array_equal(orders, random_orders(5, 8, 8, np.random.default_rng(7)))
    assert random_orders(0, 8, 8, np.random.default_rng(7)).shape == (0, 64)


@pytest.mark.parametrize("call,message", [
    (lambda: pixel_order("spiral", 8, 8), "unknown pixel order 'spiral'; choose one of raster, snake"),
    (lambda: pixel_order("hilbert", 8, 4), "square image whose side is a power of two"),
    (lambda: pixel_order("hilbert", 6, 6), "got 6×6; use raster or snake"),
    (lambda: pixel_order("zorder", 12, 12), "square image whose side is a power of two"),
    (lambda: pixel_order("raster", 0, 8), "needs a positive height and width"),
    (lambda: pixel_order("snake", 4, -1), "needs a positive height and width"),
    (lambda: pixel_order("hilbert", 0, 0), "needs a positive height and width"),
    (lambda: random_orders(-1, 8, 8, np.random.default_rng(0)), "cannot draw -1 pixel orders"),
])
def test_bad_input_is_one_clear_config_error(call, message):
    with pytest.raises(ConfigError, match=message) as info:
        call()
    assert str(info.value).count(". ") == 0  # one sentence

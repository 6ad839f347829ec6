"""Pixel orders: an image becomes a sequence once we choose the order in which to visit its pixels.

The chain rule p(x) = ∏_k p(x_σ(k) | x_σ(<k)) holds for every permutation σ of the variables, so an
image model (PixelCNN, ImageGPT) only has to fix one σ over the H×W pixels. Here σ is a **pixel
order**: an int64 array ``order`` of shape (H·W,) whose entry k is the *raster index* ``r·W + c`` of
the k-th pixel visited, so (the same convention as :mod:`arlm.data.orders`)::

    sequence = image.reshape(-1)[order]                          # (H·W,) in visiting order
    image    = sequence[inverse_order(order)].reshape(H, W)      # back to raster layout

The docstrings draw each order on a 4×4 image as its grid of *visiting ranks*
(``visit_ranks(order, 4, 4)``: the cell at row r, column c holds the step at which it is visited).

Orders (:data:`PIXEL_ORDERS`, or :func:`pixel_order` by name):

* ``raster``: rows top to bottom, each left to right (ImageGPT, PixelCNN);
* ``snake``: boustrophedon, even rows left→right and odd rows right→left, so consecutive pixels
  are always neighbours;
* ``zorder``: Morton order, the pixel's rank is its row and column bits interleaved; it visits the
  four quadrants in the order top-left, top-right, bottom-left, bottom-right, recursively;
* ``hilbert``: the Hilbert curve, which keeps consecutive pixels 4-neighbours *and* keeps each
  quadrant together; it starts at the top-left corner and ends at the top-right one;
* ``random``: one fixed permutation drawn from ``seed`` (the same for every image, and the same as
  ``fixed-random`` on a text of H·W tokens: :mod:`arlm.data.permutations`).

Z-order and Hilbert need a square image whose side is a power of two (1, 2, 4, 8, 16, …); the
8×8 digits qualify.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from arlm.data.permutations import inverse_permutation, seeded_permutation
from arlm.errors import ConfigError


# ------------------------------------------------------------------------------------- helpers
def inverse_order(order: np.ndarray) -> np.ndarray:
    """The permutation that undoes ``order``: ``seq[inverse_order(order)]`` is the raster layout,
    and ``inverse_order(order)[i]`` is the step at which raster pixel i is visited."""
    return inverse_permutation(order)


def visit_ranks(order: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) grid: the step at which each pixel is visited (how the docstrings draw an order)."""
    return inverse_order(order).reshape(height, width)


def _check_size(name: str, height: int, width: int) -> None:
    if int(height) != height or int(width) != width or height < 1 or width < 1:
        raise ConfigError(f"the {name} pixel order needs a positive height and width, got "
                          f"{height}×{width}; give the image size in pixels, such as 8×8")


def _square_side(name: str, height: int, width: int) -> int:
    """The side of a square image whose side is a power of two, else a ConfigError."""
    _check_size(name, height, width)
    side = int(height)
    if height != width or side & (side - 1):
        raise ConfigError(f"the {name} pixel order needs a square image whose side is a power of two "
                          f"(1, 2, 4, 8, 16, …), got {height}×{width}; use raster or snake for this size")
    return side


# -------------------------------------------------------------------------------------- orders
def raster(height: int, width: int) -> np.ndarray:
    """Rows top to bottom, each left to right; the identity permutation. On 4×4::

         0  1  2  3
         4  5  6  7
         8  9 10 11
        12 13 14 15
    """
    _check_size("raster", height, width)
    return np.arange(height * width, dtype=np.int64)


def snake(height: int, width: int) -> np.ndarray:
    """Boustrophedon: even rows left→right, odd rows right→left. On 4×4::

         0  1  2  3
         7  6  5  4
         8  9 10 11
        15 14 13 12
    """
    _check_size("snake", height, width)
    grid = np.arange(height * width, dtype=np.int64).reshape(height, width)
    grid[1::2] = grid[1::2, ::-1]
    return grid.reshape(-1)


def zorder(height: int, width: int) -> np.ndarray:
    """Morton (Z) order: rank = bits of the row and column interleaved, ``… r1 c1 r0 c0``. On 4×4::

         0  1  4  5
         2  3  6  7
         8  9 12 13
        10 11 14 15

    Equivalently: visit the top-left, top-right, bottom-left and bottom-right quadrants in turn,
    each in Z-order.
    """
    side = _square_side("zorder", height, width)
    rows, cols = np.divmod(np.arange(side * side, dtype=np.int64), side)
    code = np.zeros_like(rows)
    for bit in range(max(side.bit_length() - 1, 0)):
        code |= ((cols >> bit) & 1) << (2 * bit)
        code |= ((rows >> bit) & 1) << (2 * bit + 1)
    return inverse_order(code)  # code[i] is pixel i's rank; the order lists pixels by rank


def hilbert(height: int, width: int) -> np.ndarray:
    """The Hilbert curve: every step moves to a 4-neighbour, and each quadrant is finished before
    the next: the top-left, bottom-left, bottom-right and top-right quadrants in turn, from the top-left
    corner to the top-right one. On 4×4::

         0  1 14 15
         3  2 13 12
         4  7  8 11
         5  6  9 10

    The classic ``d2xy`` construction (Hilbert 1891; as in Wikipedia's "Hilbert curve"), for all
    ranks d at once: reading d two bits at a time from the lowest, each level s = 1, 2, 4, … picks
    the quadrant (rx, ry), rotates/reflects the curve built so far to fit it, and shifts it there.
    Here x is the column and y the row.
    """
    side = _square_side("hilbert", height, width)
    t = np.arange(side * side, dtype=np.int64)  # the ranks d, consumed two bits per level
    x = np.zeros_like(t)
    y = np.zeros_like(t)
    s = 1
    while s < side:
        rx = (t >> 1) & 1
        ry = (t ^ rx) & 1
        turn = ry == 0  # the first and last quadrant: transpose (and reflect, in the last one)
        reflect = turn & (rx == 1)
        x = np.where(reflect, s - 1 - x, x)
        y = np.where(reflect, s - 1 - y, y)
        x, y = np.where(turn, y, x), np.where(turn, x, y)
        x += s * rx
        y += s * ry
        t >>= 2
        s <<= 1
    return y * side + x  # the d-th pixel visited, as a raster index


def random_order(height: int, width: int, seed: int = 0) -> np.ndarray:
    """One uniformly random permutation, fixed by ``seed`` (the same for every image it is used on):
    :func:`~arlm.data.permutations.seeded_permutation` of H·W, what ``fixed-random`` gives a text of
    H·W tokens."""
    _check_size("random", height, width)
    return seeded_permutation(height * width, seed)


PIXEL_ORDERS: dict[str, Callable[..., np.ndarray]] = {
    "raster": raster, "snake": snake, "zorder": zorder, "hilbert": hilbert, "random": random_order,
}


def pixel_order(name: str, height: int, width: int, seed: int = 0) -> np.ndarray:
    """The pixel order ``name`` for an H×W image: int64 (H·W,), entry k = raster index of the k-th
    pixel visited. ``seed`` is used only by ``random``."""
    if name not in PIXEL_ORDERS:
        raise ConfigError(f"unknown pixel order {name!r}; choose one of {', '.join(PIXEL_ORDERS)}")
    if name == "random":
        return random_order(height, width, seed)
    return PIXEL_ORDERS[name](height, width)

"""Test helpers for images: whole image batches as ``[SOS] … [EOS]`` streams in a pixel order and
back, and a fresh random pixel order per image. Only the tests use them (the toolkit frames images
through the ``digits`` corpus and reorders them through :mod:`arlm.data.orders`)."""

from __future__ import annotations

import numpy as np

from arlm.data.images import HEIGHT, WIDTH, digits, image_to_tokens, tokens_to_image
from arlm.data.permutations import random_permutation
from arlm.data.pixel_orders import _check_size, pixel_order
from arlm.errors import ConfigError, DataError
from arlm.streams import EOS_ID, SOS_ID


def random_orders(count: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """(count, H·W): a fresh random pixel order for each of ``count`` images, drawn from ``rng``.

    Keep the array: it is what undoes the reordering (``images_to_stream`` and
    ``stream_to_images`` take it as their ``order``).
    """
    _check_size("random", height, width)
    if count < 0:
        raise ConfigError(f"cannot draw {count} pixel orders; ask for zero or more")
    rows = [random_permutation(height * width, rng) for _ in range(count)]
    return np.array(rows, dtype=np.int64).reshape(count, height * width)


def pixel_orders_for(order: str | np.ndarray | None, count: int, height: int, width: int,
                     seed: int) -> np.ndarray | None:
    """The pixel order as an int64 (H·W,) or (count, H·W) array, checked; None for raster."""
    if order is None:
        return None
    if isinstance(order, str):
        return pixel_order(order, height, width, seed)
    order = np.asarray(order, dtype=np.int64)
    pixels = height * width
    if order.shape not in ((pixels,), (count, pixels)):
        raise ConfigError(f"a pixel order for {count} images of {height}×{width} has shape ({pixels},) "
                          f"or ({count}, {pixels}), got {order.shape}; make it with pixel_order or "
                          "random_orders")
    if not np.array_equal(np.sort(order, axis=-1), np.broadcast_to(np.arange(pixels), order.shape)):
        raise ConfigError(f"a pixel order must be a permutation of 0..{pixels - 1}; make it with "
                          "pixel_order or random_orders")
    return order


def images_to_stream(images: np.ndarray, order: str | np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """Images (N, H, W) -> the flat stream ``[SOS] p_σ(1) … p_σ(H·W) [EOS] …`` (N·(H·W+2),) int64.

    ``order``: None (raster), a pixel order name (``seed`` for ``random``), one order (H·W,) for
    every image, or one per image (N, H·W) from :func:`random_orders`.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise DataError(f"images_to_stream takes a batch of images (N, H, W), got shape {images.shape}; "
                        "add a leading axis for a single image")
    count, height, width = images.shape
    tokens = image_to_tokens(images)  # (N, H·W) raster order
    perm = pixel_orders_for(order, count, height, width, seed)
    if perm is not None:
        tokens = np.take_along_axis(tokens, np.broadcast_to(perm, tokens.shape), axis=1)
    rows = np.empty((count, height * width + 2), dtype=np.int64)
    rows[:, 0] = SOS_ID
    rows[:, 1:-1] = tokens
    rows[:, -1] = EOS_ID
    return rows.reshape(-1)


def stream_to_images(stream: np.ndarray, order: str | np.ndarray | None = None, seed: int = 0,
                     height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """Undo :func:`images_to_stream`: the stream (N·(H·W+2),) -> images (N, H, W) in raster layout.

    Give the same ``order`` (and ``seed``) that made the stream.
    """
    stream = np.asarray(stream, dtype=np.int64)
    span = height * width + 2
    if stream.ndim != 1 or len(stream) % span:
        raise DataError(f"the stream is not a run of [SOS] + {height * width} pixels + [EOS] blocks "
                        f"({span} tokens each); pass a whole stream made by images_to_stream")
    rows = stream.reshape(-1, span)
    if not (np.all(rows[:, 0] == SOS_ID) and np.all(rows[:, -1] == EOS_ID)):
        raise DataError(f"every {span}-token block of the stream must start with [SOS] and end with [EOS]; "
                        "pass a whole stream made by images_to_stream")
    tokens = rows[:, 1:-1]  # (N, H·W) in visiting order
    perm = pixel_orders_for(order, len(rows), height, width, seed)
    if perm is not None:
        raster_tokens = np.empty_like(tokens)
        np.put_along_axis(raster_tokens, np.broadcast_to(perm, tokens.shape), tokens, axis=1)
        tokens = raster_tokens  # raster_tokens[n, perm[n, k]] = tokens[n, k]
    return tokens_to_image(tokens, height, width)


def digits_stream(split: str = "train", order: str | np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """The digits of ``split`` as one flat ``[SOS] … [EOS]`` stream in pixel order ``order``."""
    return images_to_stream(digits(split).images, order, seed)

"""Images as token sequences: scikit-learn's 8×8 handwritten digits, one token per pixel.

An image is a sequence once a pixel order is chosen (:mod:`arlm.data.pixel_orders`); the chain rule
then makes any autoregressive model an image model, p(x) = ∏_k p(x_σ(k) | x_σ(<k)).

**Data.** ``digits`` is the UCI optical-digits test set that ships inside scikit-learn
(``sklearn.datasets.load_digits``, nothing downloaded): 1,797 images of 8×8 pixels, each pixel an
integer grey level 0 (paper) … 16 (ink), with the digit 0–9 as label.

**Split.** Fixed and the same on every machine: images are ranked by the SHA-256 of ``"digits:<i>"``
(i = the image's row in ``load_digits``), the first 10 % of that ranking (180 images) is ``test``,
the next 10 % (180) ``val`` and the remaining 1,437 ``train``; ``all`` is every image in
``load_digits``'s order. Each split lists its images in ``load_digits`` order.

**Tokens.** Grey level g is token id ``4 + g``; ids 0..3 are the ``[PAD] [SOS] [EOS] [UNK]`` of every
arlm tokenizer, so the vocabulary is 21 ids::

    0 [PAD]  1 [SOS]  2 [EOS]  3 [UNK]  4 g0  5 g1  …  20 g16

**Streams.** A split becomes the flat stream ``[SOS] p_1 … p_64 [EOS] [SOS] …`` (int64) that the
trainers read, the 64 pixels in a chosen pixel order; [SOS] and [EOS] stay in place, exactly as
:mod:`arlm.data.orders` does for text. :func:`stream_to_images` undoes it.

This module needs numpy (and scikit-learn for the data), not torch.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import numpy as np

from arlm.data.pixel_orders import pixel_order
from arlm.data.splits import ALL, SPLIT_FRACTIONS, SPLITS
from arlm.errors import ConfigError, DataError
from arlm.streams import EOS_ID, SOS_ID, SPECIAL_TOKENS

HEIGHT = WIDTH = 8
LEVELS = 17  # grey levels 0..16
FIRST_PIXEL_ID = len(SPECIAL_TOKENS)  # grey level g <-> token id FIRST_PIXEL_ID + g
VOCAB: tuple[str, ...] = (*SPECIAL_TOKENS, *(f"g{g}" for g in range(LEVELS)))
VOCAB_SIZE = len(VOCAB)  # 21


# ----------------------------------------------------------------------------------------- tokens
def image_to_tokens(images: np.ndarray, levels: int = LEVELS) -> np.ndarray:
    """Grey levels (..., H, W) -> token ids (..., H·W) in raster order (int64, id = 4 + level)."""
    images = np.asarray(images)
    if images.ndim < 2:
        raise DataError(f"an image must be an (H, W) array (or a batch of them), got shape {images.shape}; "
                        "reshape it first")
    levels_int = images.astype(np.int64)
    if not np.array_equal(levels_int, images) or levels_int.min(initial=0) < 0 \
            or levels_int.max(initial=0) >= levels:
        raise DataError(f"pixel values must be integer grey levels 0..{levels - 1}; quantize the image "
                        "to those levels first")
    return levels_int.reshape(*images.shape[:-2], -1) + FIRST_PIXEL_ID


def tokens_to_image(tokens: np.ndarray, height: int = HEIGHT, width: int = WIDTH,
                    levels: int = LEVELS) -> np.ndarray:
    """Token ids (..., H·W) in raster order -> grey levels (..., H, W) (int64)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    if tokens.ndim < 1 or tokens.shape[-1] != height * width:
        raise DataError(f"an {height}×{width} image needs {height * width} pixel tokens, got shape "
                        f"{tokens.shape}; pass exactly the pixels, without [SOS] and [EOS]")
    grey = tokens - FIRST_PIXEL_ID
    if grey.min(initial=0) < 0 or grey.max(initial=0) >= levels:
        raise DataError(f"pixel tokens must be ids {FIRST_PIXEL_ID}..{FIRST_PIXEL_ID + levels - 1} "
                        "(grey levels); a special id ([PAD] [SOS] [EOS] [UNK]) cannot be a pixel")
    return grey.reshape(*tokens.shape[:-1], height, width)


# ------------------------------------------------------------------------------------------- data
@dataclass(frozen=True, eq=False)  # arrays: no element-wise __eq__
class ImageSplit:
    """The images of one split: ``images`` (N, 8, 8) int64 grey levels, ``labels`` (N,) the digits,
    ``indices`` (N,) each image's row in ``sklearn.datasets.load_digits``."""

    images: np.ndarray
    labels: np.ndarray
    indices: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)


@functools.cache
def _load_all() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # bundled with scikit-learn; imported only when needed

    bunch = load_digits()
    images = bunch.images.astype(np.int64)  # (1797, 8, 8), floats 0.0..16.0 in the file
    labels = bunch.target.astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def _hash_rank(count: int) -> np.ndarray:
    """The indices 0..count-1 sorted by the SHA-256 of ``"digits:<i>"``: a ranking fixed everywhere."""
    keys = [int.from_bytes(hashlib.sha256(f"digits:{i}".encode()).digest()[:8], "big")
            for i in range(count)]
    return np.array(sorted(range(count), key=keys.__getitem__), dtype=np.int64)


@functools.cache
def split_indices() -> dict[str, np.ndarray]:
    """Rows of ``load_digits`` in each split (``train``, ``val``, ``test``), each sorted."""
    count = len(_load_all()[1])
    _, val_fraction, test_fraction = SPLIT_FRACTIONS
    n_test, n_val = round(count * test_fraction), round(count * val_fraction)
    ranked = _hash_rank(count)
    cuts = {"test": ranked[:n_test], "val": ranked[n_test:n_test + n_val], "train": ranked[n_test + n_val:]}
    out = {s: np.sort(cuts[s]) for s in SPLITS}
    for rows in out.values():
        rows.setflags(write=False)
    return out


def digits(split: str = "train") -> ImageSplit:
    """The 8×8 digits of ``split`` (``train``, ``val``, ``test`` or ``all``)."""
    images, labels = _load_all()
    if split == ALL:
        rows = np.arange(len(labels), dtype=np.int64)
    elif split in SPLITS:
        rows = split_indices()[split]
    else:
        raise ConfigError(f"unknown split {split!r}; use one of train, val, test, all")
    return ImageSplit(images=images[rows], labels=labels[rows], indices=rows.copy())


# ---------------------------------------------------------------------------------------- streams
def _orders_for(order: str | np.ndarray | None, count: int, height: int, width: int,
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
    every image, or one per image (N, H·W) from :func:`arlm.data.pixel_orders.random_orders`.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise DataError(f"images_to_stream takes a batch of images (N, H, W), got shape {images.shape}; "
                        "add a leading axis for a single image")
    count, height, width = images.shape
    tokens = image_to_tokens(images)  # (N, H·W) raster order
    perm = _orders_for(order, count, height, width, seed)
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
    perm = _orders_for(order, len(rows), height, width, seed)
    if perm is not None:
        raster_tokens = np.empty_like(tokens)
        np.put_along_axis(raster_tokens, np.broadcast_to(perm, tokens.shape), tokens, axis=1)
        tokens = raster_tokens  # raster_tokens[n, perm[n, k]] = tokens[n, k]
    return tokens_to_image(tokens, height, width)


def digits_stream(split: str = "train", order: str | np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """The digits of ``split`` as one flat ``[SOS] … [EOS]`` stream in pixel order ``order``."""
    return images_to_stream(digits(split).images, order, seed)

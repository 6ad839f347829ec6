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

**Streams.** The corpus ``digits`` (:mod:`arlm.data.corpora`) frames each image as a sequence
``[SOS] p_1 … p_64 [EOS]`` like any text, and a model's pixel order reorders the 64 pixels in
between as :mod:`arlm.data.orders` reorders text ([SOS] and [EOS] stay in place).

This module needs numpy (and scikit-learn for the data), not torch.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import numpy as np

from arlm.data.splits import ALL, SPLIT_FRACTIONS, SPLITS
from arlm.errors import ConfigError, DataError
from arlm.streams import SPECIAL_TOKENS

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

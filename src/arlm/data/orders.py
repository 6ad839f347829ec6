"""Factorization orders: the chain rule works in any order, so an order is a permutation.

p(x) = ∏_i p(x_σ(i) | x_σ(<i)) for any permutation σ. An :class:`Order` gives, for a sequence of
``T`` content tokens, a permutation ``perm`` (int64, shape (T,)) meaning "position i of the
reordered sequence holds content token ``perm[i]``", so ``reordered = content[perm]`` and
``content = reordered[inverse_permutation(perm)]``.

Convention: **[SOS] stays first and [EOS] stays last.** Only the content tokens between them are
permuted, so every model still starts from [SOS] and is still asked to end with [EOS]; in
right-to-left order, ``[SOS] a b c [EOS]`` becomes ``[SOS] c b a [EOS]``.

Orders so far: ``l2r`` (identity, the default), ``r2l`` (reversed), ``random`` (a fresh permutation
per sequence from a ``np.random.Generator``; keep the permutation to undo it). A new order is a new
subclass of :class:`Order` that implements :meth:`Order.permutation`. (2-D image orders — raster,
snake, Z-order, Hilbert — would be permutations of the H×W positions of a grid and fit the same
shape; arlm has none yet.)

:func:`apply_to_stream` reorders every sequence of a flat ``[SOS] … [EOS] [SOS] … [EOS]`` stream at
once, with numpy.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from arlm.errors import ConfigError
from arlm.streams import EOS_ID, SOS_ID, sequence_spans


def inverse_permutation(perm: np.ndarray) -> np.ndarray:
    """The permutation that undoes ``perm``: ``x[perm][inverse_permutation(perm)] == x``."""
    perm = np.asarray(perm, dtype=np.int64)
    inv = np.empty_like(perm)
    inv[perm] = np.arange(len(perm), dtype=np.int64)
    return inv


def _content_bounds(tokens: np.ndarray) -> tuple[int, int]:
    """[lo, hi): the content of a sequence, without a leading [SOS] and a trailing [EOS]."""
    lo = 1 if len(tokens) and tokens[0] == SOS_ID else 0
    hi = len(tokens) - 1 if len(tokens) > lo and tokens[-1] == EOS_ID else len(tokens)
    return lo, hi


class Order:
    """A factorization order: a permutation of the content positions of each sequence."""

    name: ClassVar[str] = ""
    random: ClassVar[bool] = False  # True: a new permutation for every sequence

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def permutation(self, length: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """perm (int64, shape (length,)): reordered position i holds content token perm[i]."""
        raise NotImplementedError

    def _perm_for(self, length: int, perm: np.ndarray | None,
                  rng: np.random.Generator | None) -> np.ndarray:
        if perm is None:
            return self.permutation(length, rng)
        perm = np.asarray(perm, dtype=np.int64)
        if perm.shape != (length,):
            raise ConfigError(f"the permutation has {perm.size} positions but the sequence has "
                              f"{length} content tokens; make it with order.permutation({length})")
        return perm

    def apply(self, tokens: np.ndarray, perm: np.ndarray | None = None,
              rng: np.random.Generator | None = None) -> np.ndarray:
        """Reorder one sequence's content tokens (a leading [SOS] and trailing [EOS] stay put)."""
        tokens = np.asarray(tokens)
        lo, hi = _content_bounds(tokens)
        out = tokens.copy()
        out[lo:hi] = tokens[lo:hi][self._perm_for(hi - lo, perm, rng)]
        return out

    def invert(self, tokens: np.ndarray, perm: np.ndarray | None = None) -> np.ndarray:
        """Undo :meth:`apply` (a random order needs the ``perm`` that :meth:`apply` used)."""
        tokens = np.asarray(tokens)
        lo, hi = _content_bounds(tokens)
        out = tokens.copy()
        out[lo:hi] = tokens[lo:hi][inverse_permutation(self._perm_for(hi - lo, perm, None))]
        return out

    def content_index(self, starts: np.ndarray, lengths: np.ndarray,
                      rng: np.random.Generator | None = None) -> np.ndarray:
        """Gather index for every content position of a stream (sequences at ``starts``, of
        ``lengths``), concatenated; a subclass may vectorise it."""
        if not len(lengths):
            return np.zeros(0, dtype=np.int64)
        cache: dict[int, np.ndarray] = {}
        parts = []
        for s, n in zip(starts.tolist(), lengths.tolist(), strict=True):
            if self.random:
                perm = self.permutation(n, rng)
            else:
                perm = cache.get(n)
                if perm is None:
                    perm = cache[n] = self.permutation(n)
            parts.append(s + perm)
        return np.concatenate(parts)


class LeftToRight(Order):
    """The natural order x_1, x_2, …, x_T (F1, the default)."""

    name = "l2r"

    def permutation(self, length: int, rng: np.random.Generator | None = None) -> np.ndarray:
        return np.arange(length, dtype=np.int64)

    def content_index(self, starts: np.ndarray, lengths: np.ndarray,
                      rng: np.random.Generator | None = None) -> np.ndarray:
        offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
        return np.arange(int(lengths.sum()), dtype=np.int64) + offsets


class RightToLeft(Order):
    """Backwards, x_T, …, x_1 (F2): the same true p(x), so NLLs compare with left-to-right."""

    name = "r2l"

    def permutation(self, length: int, rng: np.random.Generator | None = None) -> np.ndarray:
        return np.arange(length - 1, -1, -1, dtype=np.int64)

    def content_index(self, starts: np.ndarray, lengths: np.ndarray,
                      rng: np.random.Generator | None = None) -> np.ndarray:
        # content position p of a sequence (start s, length n) takes the token at 2s + n - 1 - p
        positions = LeftToRight().content_index(starts, lengths)
        return np.repeat(2 * starts + lengths - 1, lengths) - positions


class Random(Order):
    """A fresh uniformly random permutation for every sequence (F3: the kind of order a σ-GPT model
    is trained on; arlm has no such model yet, so this reorders data only).

    Give ``rng`` (a ``np.random.Generator``) to each call, or a ``seed`` here for a generator owned
    by the order. Keep the permutation (or the stream index) to undo it.
    """

    name = "random"
    random = True

    def __init__(self, seed: int | None = 0):
        self._rng = np.random.default_rng(seed)

    def __repr__(self) -> str:
        return "Random()"

    def permutation(self, length: int, rng: np.random.Generator | None = None) -> np.ndarray:
        return (rng or self._rng).permutation(length).astype(np.int64)

    def invert(self, tokens: np.ndarray, perm: np.ndarray | None = None) -> np.ndarray:
        if perm is None:
            raise ConfigError("a random order cannot be undone without its permutation; pass the "
                              "perm given to apply")
        return super().invert(tokens, perm)


ORDERS: dict[str, type[Order]] = {"l2r": LeftToRight, "r2l": RightToLeft, "random": Random}


def get_order(name: str, **options: int | None) -> Order:
    """An order by name: l2r, r2l or random (``seed=`` option)."""
    if name not in ORDERS:
        raise ConfigError(f"unknown order {name!r}; choose one of {', '.join(ORDERS)}")
    try:
        return ORDERS[name](**options)
    except TypeError:
        raise ConfigError(f"the {name} order takes no option {', '.join(options)}; "
                          "only random takes seed") from None


# --------------------------------------------------------------------------------------- streams
def stream_permutation(stream: np.ndarray, order: Order,
                       rng: np.random.Generator | None = None) -> np.ndarray:
    """Gather index of a whole stream: ``stream[index]`` is every sequence in ``order``.

    [SOS] and [EOS] map to themselves. ``stream[index][inverse_permutation(index)] == stream``.
    """
    starts, lengths = sequence_spans(stream)
    starts, lengths = starts + 1, lengths - 2  # the content between [SOS] and [EOS]
    index = np.arange(len(stream), dtype=np.int64)
    content = np.ones(len(stream), dtype=bool)
    content[starts - 1] = False
    content[starts + lengths] = False
    index[content] = order.content_index(starts, lengths, rng)
    return index


def apply_to_stream(stream: np.ndarray, order: Order,
                    rng: np.random.Generator | None = None) -> np.ndarray:
    """Reorder each sequence of a flat ``[SOS] … [EOS] …`` stream (e.g. reverse each for r2l)."""
    stream = np.asarray(stream)
    return stream[stream_permutation(stream, order, rng)]


def invert_stream(stream: np.ndarray, order: Order, index: np.ndarray | None = None) -> np.ndarray:
    """Undo :func:`apply_to_stream`. A random order needs the ``index`` from
    :func:`stream_permutation` that made the reordered stream."""
    stream = np.asarray(stream)
    if index is None:
        if order.random:
            raise ConfigError("a random order cannot be undone without its index; keep the "
                              "stream_permutation index that reordered the stream")
        index = stream_permutation(stream, order)  # [SOS]/[EOS] positions do not move
    return stream[inverse_permutation(index)]

"""Factorization orders: the chain rule works in any order, so an order is a permutation.

p(x) = ∏_i p(x_σ(i) | x_σ(<i)) for any permutation σ. An :class:`Order` gives, for a sequence of
``T`` content tokens, a permutation ``perm`` (int64, shape (T,)) meaning "position i of the
reordered sequence holds content token ``perm[i]``", so ``reordered = content[perm]`` and
``content = reordered[inverse_permutation(perm)]``. Random orders are drawn by
:mod:`arlm.data.permutations`, with one seeding rule for text and images.

Convention: **[SOS] stays first and [EOS] stays last.** Only the content tokens between them are
permuted, so every model still starts from [SOS] and is still asked to end with [EOS]; in
right-to-left order, ``[SOS] a b c [EOS]`` becomes ``[SOS] c b a [EOS]``.

Orders (:data:`ORDERS` for any sequence, :data:`PIXEL_ORDERS` for images): ``l2r`` (identity, the
default), ``r2l`` (reversed), ``random`` (a fresh permutation per sequence from a
``np.random.Generator``; keep the permutation to undo it), ``fixed-random`` (one permutation per
sequence length, drawn from a seed: the same for every sequence of that length), and the pixel orders
``raster``, ``snake``, ``zorder``, ``hilbert`` of :mod:`arlm.data.pixel_orders`, which only fit
sequences of exactly H·W tokens (:class:`PixelOrder`). A new order is a new subclass of
:class:`Order` that implements :meth:`Order.permutation`.

**The order of a model** (:class:`OrderSpec`) is saved next to its weights as ``order.json``
(:func:`write_order_file`, :func:`read_order_file`; no file means ``l2r``): a model reads and writes
its sequences in that order, while text and images are always shown and scored in reading order
(:func:`to_model_order`, :func:`to_reading_order`). Since p(x) = ∏_i p(x_σ(i) | x_σ(<i)) for any σ,
the NLL a model gives a test sequence in its own order is its -log p(x) for the *same* tokens, so
perplexities and bits per character compare across orders.

:func:`apply_to_stream` reorders every sequence of a flat ``[SOS] … [EOS] [SOS] … [EOS]`` stream at
once, with numpy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from arlm.data.permutations import (
    inverse_permutation,
    permutation_rng,
    random_permutation,
    seeded_permutation,
)
from arlm.errors import ConfigError, FormatError
from arlm.io import atomic_write
from arlm.streams import EOS_ID, SOS_ID, sequence_spans


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
    is trained on; a model without σ-GPT's second position encoding cannot know which position
    comes next, so for it this is the hardest order).

    Give ``rng`` (a ``np.random.Generator``) to each call, or a ``seed`` here for a generator owned
    by the order. Keep the permutation (or the stream index) to undo it.
    """

    name = "random"
    random = True

    def __init__(self, seed: int | None = 0):
        self._rng = permutation_rng(seed)

    def __repr__(self) -> str:
        return "Random()"

    def permutation(self, length: int, rng: np.random.Generator | None = None) -> np.ndarray:
        return random_permutation(length, rng or self._rng)

    def invert(self, tokens: np.ndarray, perm: np.ndarray | None = None) -> np.ndarray:
        if perm is None:
            raise ConfigError("a random order cannot be undone without its permutation; pass the "
                              "perm given to apply")
        return super().invert(tokens, perm)


class FixedRandom(Order):
    """One fixed random permutation per sequence length n, drawn from ``seed`` and n: every sequence
    of length n is read in the same shuffled order (a fixed order that ignores the data's structure;
    on an image, the same for every image)."""

    name = "fixed-random"

    def __init__(self, seed: int | None = 0):
        self.seed = 0 if seed is None else int(seed)

    def __repr__(self) -> str:
        return f"FixedRandom(seed={self.seed})"

    def permutation(self, length: int, rng: np.random.Generator | None = None) -> np.ndarray:
        return seeded_permutation(length, self.seed)


class PixelOrder(Order):
    """A pixel order of :mod:`arlm.data.pixel_orders` (raster, snake, zorder, hilbert, or one fixed
    random permutation) for H×W images: it fits sequences of exactly H·W content tokens."""

    def __init__(self, name: str, height: int, width: int, seed: int = 0):
        from arlm.data.pixel_orders import pixel_order

        self.name = name  # type: ignore[misc]  # an instance's own name: the pixel order's
        self.height, self.width = height, width
        self.perm = pixel_order("random" if name == "fixed-random" else name, height, width, seed)

    def __repr__(self) -> str:
        return f"PixelOrder({self.name!r}, {self.height}, {self.width})"

    def permutation(self, length: int, rng: np.random.Generator | None = None) -> np.ndarray:
        if length != len(self.perm):
            raise ConfigError(f"the {self.name} pixel order is for {self.height}×{self.width} images "
                              f"({len(self.perm)} pixels) but a sequence has {length} tokens; use it on "
                              "images of that size (--corpus digits) or pick l2r, r2l or random")
        return self.perm


ORDERS: dict[str, type[Order]] = {"l2r": LeftToRight, "r2l": RightToLeft, "random": Random,
                                  "fixed-random": FixedRandom}
PIXEL_ORDERS = ("raster", "snake", "zorder", "hilbert")  # need an image shape (PixelOrder)


def get_order(name: str, **options: int | None) -> Order:
    """An order by name: l2r, r2l, random or fixed-random (``seed=`` option for the last two)."""
    if name not in ORDERS:
        extra = f" (pixel orders {', '.join(PIXEL_ORDERS)} need an image: order_for)" \
            if name in PIXEL_ORDERS else ""
        raise ConfigError(f"unknown order {name!r}; choose one of {', '.join(ORDERS)}{extra}")
    try:
        return ORDERS[name](**options)
    except TypeError:
        raise ConfigError(f"the {name} order takes no option {', '.join(options)}; "
                          "only random and fixed-random take seed") from None


def order_names(image: bool) -> tuple[str, ...]:
    """The order names that fit text (``image=False``) or H×W images."""
    return (*PIXEL_ORDERS, *ORDERS) if image else tuple(ORDERS)


def order_for(name: str, image_shape: tuple[int, int] | None = None, seed: int = 0) -> Order:
    """The order ``name`` for text (``image_shape`` None) or for images of ``image_shape`` (H, W).

    On images ``fixed-random`` is one random pixel permutation (:func:`~arlm.data.pixel_orders.random_order`:
    the permutation ``fixed-random`` gives a text of H·W tokens) and ``raster``/``snake``/``zorder``/
    ``hilbert`` are pixel orders (Z-order and Hilbert need a square image whose side is a power of
    two); on text only :data:`ORDERS` fit.
    """
    if name in PIXEL_ORDERS or (image_shape is not None and name == "fixed-random"):
        if image_shape is None:
            raise ConfigError(f"the {name} order visits the pixels of an image, and text has no 2-D "
                              f"layout; use one of {', '.join(ORDERS)} for text, or --corpus digits")
        return PixelOrder(name, int(image_shape[0]), int(image_shape[1]), seed)
    if name not in ORDERS:
        raise ConfigError(f"unknown order {name!r}; choose one of "
                          f"{', '.join(order_names(image_shape is not None))}")
    return ORDERS[name](seed=seed) if name in ("random", "fixed-random") else ORDERS[name]()


# ------------------------------------------------------------------------------ a model's order
ORDER_FILE = "order.json"


def _check_seed(seed) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"an order's seed must be an integer ≥ 0, got {seed!r}; e.g. --set seed=0")


@dataclass(frozen=True)
class OrderSpec:
    """The order a model reads its sequences in, as saved in ``order.json`` next to its weights.

    ``name``: an order of :func:`order_for`; ``seed``: for ``random`` (the evaluation draws) and
    ``fixed-random``; ``image``: (H, W) when the sequences are images, else None.
    """

    name: str = "l2r"
    seed: int = 0
    image: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        _check_seed(self.seed)
        self.order()  # checks the name against the data (a pixel order on text, Hilbert on 8×6, …)

    def order(self) -> Order:
        return order_for(self.name, self.image, self.seed)

    @property
    def identity(self) -> bool:
        """True when the model's order is the reading order (l2r, or raster on images)."""
        return self.name in ("l2r", "raster")

    @property
    def reversible(self) -> bool:
        """True when a generated sequence can be put back in reading order (not ``random``)."""
        return self.name != "random"

    def to_json(self) -> dict:
        return {"order": self.name, "seed": self.seed,
                "image": None if self.image is None else list(self.image)}

    @classmethod
    def from_json(cls, data) -> OrderSpec:
        if not isinstance(data, dict) or not isinstance(data.get("order"), str):
            raise FormatError(f"{ORDER_FILE} must hold {{\"order\": NAME, …}}; save the model again")
        image = data.get("image")
        try:
            return cls(data["order"], int(data.get("seed", 0)), None if image is None else
                       (int(image[0]), int(image[1])))
        except (TypeError, ValueError, IndexError) as e:
            raise FormatError(f"{ORDER_FILE} is not a valid order ({e}); save the model again") from e


def write_order_file(folder: str | Path, spec: OrderSpec) -> None:
    """Write ``order.json`` into a model folder (atomically)."""
    with atomic_write(Path(folder) / ORDER_FILE) as f:
        json.dump(spec.to_json(), f)


def read_order_file(folder: str | Path) -> OrderSpec:
    """The order of a model folder (``l2r`` when it has no ``order.json``, or is a file)."""
    path = Path(folder) / ORDER_FILE
    if not path.is_file():
        return OrderSpec()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FormatError(f"{path} is not valid JSON ({e}); save the model again") from e
    try:
        return OrderSpec.from_json(data)
    except ConfigError as e:
        raise FormatError(f"{path}: {e}") from None


def to_model_order(stream: np.ndarray, spec: OrderSpec, seed: int | None = None) -> np.ndarray:
    """A flat ``[SOS] … [EOS]`` stream in reading order -> the same sequences in the model's order.

    ``random`` draws one permutation per sequence from ``seed`` (default: the spec's), so the same
    seed reorders the same way (an evaluation is repeatable)."""
    stream = np.asarray(stream)
    if spec.identity:
        return stream
    seed = spec.seed if seed is None else seed
    _check_seed(seed)
    rng = permutation_rng(seed) if spec.name == "random" else None
    return apply_to_stream(stream, spec.order(), rng)


def check_reversible(spec: OrderSpec) -> None:
    """A ConfigError unless a generated sequence of this order can be put in reading order."""
    if not spec.reversible:
        raise ConfigError("a model trained on a fresh random order per sequence does not know which "
                          "position each token takes, so its output cannot be put in reading order; "
                          "use a σ-GPT model (arlm train sigma_gpt) or a fixed order")


def to_reading_order(content: np.ndarray, spec: OrderSpec) -> np.ndarray:
    """One generated sequence's content tokens (no [SOS]/[EOS]) in the model's order -> reading order.

    ``random`` cannot be undone (the model never knew which position it wrote): a ConfigError."""
    content = np.asarray(content)
    if spec.identity:
        return content
    check_reversible(spec)
    return content[inverse_permutation(spec.order().permutation(len(content)))]


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


def reorder_split(split, spec: OrderSpec, seed: int | None = None):
    """An :class:`~arlm.data.cache.EncodedSplit`'s sequences in the model's order ``spec`` (the same
    tokens; ``num_chars`` unchanged, so bits per character compare across orders). ``random`` draws
    from ``seed`` (default: the spec's). The split itself when the order is the identity."""
    from arlm.data.cache import EncodedSplit

    if spec.identity:
        return split
    tokens = to_model_order(split.tokens, spec, seed)
    tokens.setflags(write=False)
    return EncodedSplit(tokens, split.num_chars, split.num_sequences, split.num_bytes)

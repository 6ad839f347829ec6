"""Permutations: the one place where arlm draws a random order, and the one way it undoes an order.

An order of n items is a permutation ``perm`` (int64, shape (n,)): position i of the reordered
sequence holds item ``perm[i]``, so ``reordered = items[perm]`` and
``items = reordered[inverse_permutation(perm)]``.

**One seeding rule for text and images.** Every random order of :mod:`arlm.data.orders` and
:mod:`arlm.data.pixel_orders` is drawn by :func:`random_permutation` from a numpy generator made by
:func:`permutation_rng`: ``np.random.default_rng([seed, *keys])``.

* ``fixed-random``: one permutation per length n, the same for every sequence of that length —
  :func:`seeded_permutation` ``(n, seed)``, the generator keyed by n. An 8×8 image is a sequence of
  64 tokens, so it gets the permutation a text of 64 tokens gets.
* ``random``: a fresh permutation per sequence — one generator ``permutation_rng(seed)`` (the same
  draws as ``np.random.default_rng(seed)``), one :func:`random_permutation` per sequence in turn.

**σ-GPT's orders** are drawn in batches on the model's device from a ``torch.Generator`` (the
trainer's, whose state a checkpoint keeps, or one seeded for an evaluation or a sample):
:func:`random_keys` draws U(0, 1) keys, one row per sequence, and sorting a row's keys gives a
uniformly random permutation (:func:`random_permutations`); σ-GPT's training batches and infilling
sort such keys with some slots pinned first or last. (Only σ-GPT's code imports torch for these.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def inverse_permutation(perm: np.ndarray) -> np.ndarray:
    """The permutation that undoes ``perm``: ``x[perm][inverse_permutation(perm)] == x``, and
    ``inverse_permutation(perm)[i]`` is the position that item i takes."""
    perm = np.asarray(perm, dtype=np.int64)
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(len(perm), dtype=np.int64)
    return inverse


def permutation_rng(seed: int | None, *keys: int) -> np.random.Generator:
    """The generator of random orders: ``np.random.default_rng([seed, *keys])`` (``seed`` None:
    fresh entropy, not repeatable)."""
    return np.random.default_rng(None if seed is None else [seed, *keys])


def random_permutation(n: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random permutation of 0..n-1 (int64, (n,)) drawn from ``rng``."""
    return rng.permutation(n).astype(np.int64)


def seeded_permutation(n: int, seed: int) -> np.ndarray:
    """The one fixed random permutation of 0..n-1 for ``seed`` (int64, (n,)): drawn from
    ``permutation_rng(seed, n)``, the same for text and images of n tokens."""
    return random_permutation(n, permutation_rng(seed, n))


# ----------------------------------------------------------------------- σ-GPT's orders, in torch
def random_keys(rows: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """(rows, n) U(0, 1) keys drawn from ``generator``, on its device: sorting a row gives a uniformly
    random permutation of that row's slots."""
    import torch

    return torch.rand(rows, n, generator=generator, device=generator.device)


def random_permutations(rows: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """(rows, n) LongTensor: an independent uniformly random permutation of 0..n-1 per row."""
    return random_keys(rows, n, generator).argsort(dim=1)

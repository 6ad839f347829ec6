"""Likelihood in any factorization order: one order per model, random orders for σ-GPT, and mixtures.

The chain rule holds in every order σ, p(x) = ∏_i p(x_σ(i) | x_σ(<i)), so the NLL a model gives a test
sequence in its own order is its -log p(x) of the *same* tokens: an R2L model's bits per character
compare with an L2R model's on the same text (:func:`evaluate_in_order`). An exact model would give
every order the same p(x); finite models do not, and the gap is what the orders experiments measure.

* :func:`evaluate_in_order`: a split scored in the order a model was trained in (``order.json``);
* :func:`sigma_gpt_orders`: σ-GPT's log p(x) under K fresh random orders per sequence (each with
  [EOS] scored last, so it is the same quantity as the left-to-right NLL): mean and spread;
* :func:`sequence_nlls` and :func:`mixture_nll`: the order ensemble of LMConv (Jain et al. 2020),
  p_mix(x) = (1/M) Σ_m p_m(x), whose NLL is -logsumexp_m(log p_m(x)) + log M ≤ mean_m NLL_m(x) — and
  below the best single order whenever the orders disagree on which images are likely;
* :func:`bits_per_dim`: NLL / (ln 2 · pixels) for images (the [EOS] after the last pixel, learned
  as certain, is included in the NLL).
"""

from __future__ import annotations

import numpy as np
import torch

from arlm.data.cache import EncodedSplit
from arlm.data.orders import OrderSpec, reorder_split
from arlm.errors import ConfigError
from arlm.evaluate.likelihood import LikelihoodReport, bits_per_unit, evaluate_likelihood
from arlm.models.sigma_gpt import random_orders
from arlm.streams import EOS_ID, SOS_ID, UNK_ID, split_sequences


def evaluate_in_order(model, split: EncodedSplit, spec: OrderSpec, *, sos_id: int = SOS_ID,
                      eos_id: int = EOS_ID, unk_id: int | None = UNK_ID, seed: int | None = None,
                      show_progress: bool | None = None, context: int | None = None) -> LikelihoodReport:
    """Score a split (reading order) in the model's order ``spec``: the same tokens and characters, so
    the numbers compare across orders. A ``random`` order draws one permutation per sequence from
    ``seed`` (default: the spec's), so an evaluation repeats exactly. ``context``: the most tokens the
    model reads in one row (longer sequences: a sliding window; None: no limit)."""
    ordered = reorder_split(split, spec, seed)
    return evaluate_likelihood(model, ordered.tokens, num_chars=split.num_chars,
                               num_bytes=split.num_bytes, sos_id=sos_id, eos_id=eos_id, unk_id=unk_id,
                               show_progress=show_progress, context=context)


def bits_per_dim(nll_nats: float, num_images: int, pixels: int) -> float:
    """Bits per dimension (pixel): NLL / (ln 2 · N · H·W)."""
    return bits_per_unit(nll_nats, num_images * pixels)


def _by_length(sequences: list[np.ndarray]) -> dict[int, np.ndarray]:
    """Indices of the sequences of each length."""
    lengths = np.array([len(s) for s in sequences])
    return {int(n): np.flatnonzero(lengths == n) for n in np.unique(lengths)}


@torch.inference_mode()
def sequence_nlls(model, stream: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """NLL in nats (N,) of each ``[SOS] … [EOS]`` sequence of a stream, read left to right as given
    (put the stream in the model's order first), [EOS] scored."""
    seqs = split_sequences(stream)
    out = np.zeros(len(seqs))
    for _, rows in _by_length(seqs).items():
        for i in range(0, len(rows), batch_size):
            part = rows[i : i + batch_size]
            tokens = torch.from_numpy(np.stack([seqs[r] for r in part]).astype(np.int64))
            out[part] = -model.score(tokens).double().sum(dim=1).cpu().numpy()
    return out


def mixture_nll(nlls: np.ndarray) -> np.ndarray:
    """nlls (M, N): NLL of N sequences under M models -> (N,) NLL of their uniform mixture,
    -log (1/M) Σ_m exp(-nll_m) (log-sum-exp, stable)."""
    nlls = np.asarray(nlls, dtype=np.float64)
    low = nlls.min(axis=0)
    return low - np.log(np.exp(-(nlls - low)).mean(axis=0))


@torch.inference_mode()
def sigma_gpt_orders(model, stream: np.ndarray, num_orders: int = 4, seed: int = 0,
                     batch_size: int = 256) -> dict:
    """σ-GPT's NLL of every sequence under ``num_orders`` fresh random orders (each sequence its own,
    from ``seed``), [EOS] scored last (``log_prob(..., known_length=False)``): the same quantity as
    the left-to-right NLL, in other orders.

    Returns {"nll": [K totals in nats], "nll_per_sequence_std": mean over sequences of the spread of
    its K values}. A perfect model gives every order the same value (spread 0).
    """
    if num_orders < 1:
        raise ConfigError(f"the number of random orders must be at least 1, not {num_orders}")
    seqs = split_sequences(stream)
    per = np.zeros((num_orders, len(seqs)))
    g = torch.Generator().manual_seed(seed)
    for n, rows in _by_length(seqs).items():
        for i in range(0, len(rows), batch_size):
            part = rows[i : i + batch_size]
            tokens = torch.from_numpy(np.stack([seqs[r] for r in part]).astype(np.int64))
            for k in range(num_orders):
                order = random_orders(len(part), n - 2, g)
                per[k, part] = -model.log_prob(tokens, order, known_length=False).double().cpu().numpy()
    return {"nll": per.sum(axis=1).tolist(), "nll_per_sequence_std": float(per.std(axis=0).mean()),
            "per_sequence": per}


def spread(values: list[float]) -> tuple[float, float]:
    """(mean, population standard deviation) of a list of numbers."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std())


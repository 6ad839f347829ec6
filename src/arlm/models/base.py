"""The one interface every model family implements.

The chain rule p(x) = p(x_1) ∏_{t≥2} p(x_t | x_<t) turns a model of the next token into a model of the
sequence. So a model only has to answer "what comes next?", in two ways:

* teacher forcing (``log_probs``, ``score``): all positions of a known sequence at once, which is what
  training and evaluation need;
* incremental decoding (``start``, ``step``): one new token at a time with a carried ``State`` (an
  n-gram context, an RNN hidden state, a KV cache), which is what generation needs.

Conventions shared by every family (the special token ids are fixed in :mod:`arlm.streams`):

* a sequence starts with [SOS]; [EOS] ends it and is scored (as KenLM scores ``</s>``);
* rows of a batch are right-padded with [PAD]; positions whose *target* is [PAD] are not scored;
* [SOS] and [PAD] are never predicted: their log-probability is -inf, and every next-token
  distribution over the remaining tokens sums to one.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from arlm.errors import DataError, MismatchError
from arlm.streams import PAD_ID


@runtime_checkable
class State(Protocol):
    """What a model carries between ``step`` calls, one row per sequence in the batch."""

    def select(self, index: Tensor) -> State:
        """Rows ``index`` (a 1-D LongTensor) of this state, in that order: reorder, repeat or shrink.

        Beam search calls it to follow the surviving hypotheses; decoders call it to drop finished rows.
        """
        ...


@runtime_checkable
class ARModel(Protocol):
    """An autoregressive model p(x_{t+1} | x_{≤t}) over a vocabulary of ``vocab_size`` tokens."""

    vocab_size: int

    def log_probs(self, tokens: Tensor) -> Tensor:
        """Teacher forcing: tokens (B, T) starting with [SOS] -> (B, T, V) float log-probs.

        ``out[b, t] = log p(x_{t+1} | x_{≤t})``: one call, all positions.
        """
        ...

    def score(self, tokens: Tensor) -> Tensor:
        """tokens (B, T) -> (B, T-1): ``log p(x_{t+1} | x_{≤t})`` of the tokens actually there.

        What evaluation calls. Must not materialise (B, T, V) for large vocabularies.
        Positions whose target is [PAD] may hold any value; callers mask them.
        """
        ...

    def start(self, batch_size: int) -> State:
        """The state before any token has been fed (nothing seen yet, not even [SOS])."""
        ...

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """Feed new tokens (B, t), t ≥ 1 (t > 1 is a prefill) -> (next-token log-probs (B, V), new state)."""
        ...


def gather_scores(log_probs: Tensor, tokens: Tensor) -> Tensor:
    """log_probs (B, T, V), tokens (B, T) -> (B, T-1): the log-prob given to each next token."""
    return log_probs[:, :-1].gather(-1, tokens[:, 1:].unsqueeze(-1)).squeeze(-1)


def target_mask(tokens: Tensor) -> Tensor:
    """tokens (B, T) -> (B, T-1) bool: which predictions are scored (target is not [PAD])."""
    return tokens[:, 1:] != PAD_ID


def as_long_tensor(tokens) -> Tensor:
    """Accept a (B, T) tensor, numpy array or nested list of ids; return a LongTensor (B, T)."""
    t = torch.as_tensor(tokens)
    if t.dim() == 1:
        t = t.unsqueeze(0)
    return t.long()


def token_ids_array(tokens, vocab_size: int) -> np.ndarray:
    """tokens (T,) or (B, T), any array of ids -> a (B, T) int64 numpy array, after checking that every
    id lies in ``0..vocab_size-1`` (a count model's way in: it indexes tables with them)."""
    t = torch.as_tensor(tokens)
    if t.dim() == 1:
        t = t.unsqueeze(0)
    if t.dim() != 2:
        raise DataError(f"tokens must be a (batch, time) array of ids, got shape {tuple(t.shape)}")
    a = t.detach().cpu().numpy().astype(np.int64, copy=False)
    if a.size and (a.min() < 0 or a.max() >= vocab_size):
        bad = int(a.min()) if a.min() < 0 else int(a.max())
        raise MismatchError(f"token id {bad} is outside this model's vocabulary of "
                            f"{vocab_size}; encode the text with the model's own tokenizer")
    return a

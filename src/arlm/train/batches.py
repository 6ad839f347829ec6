"""Token streams -> training and validation batches.

A split arrives as one flat stream of ids ``[SOS] a b c [EOS] [SOS] d e [EOS] …`` (see
:mod:`arlm.data.cache`). Language-model training reads it in windows of ``T + 1`` tokens: the first
``T`` are the inputs, the last ``T`` the targets, shifted by one:

    inputs  = x[s : s + T]            targets = x[s + 1 : s + T + 1]

Two ways to cut the stream, one per kind of model:

* **Chunks** (Transformer, window model): every row is an independent window starting at a random
  offset s ~ U{0, …, N - T - 1}, drawn from an explicit ``torch.Generator`` (same seed, same
  batches). The model needs no state from one row to the next.
* **TBPTT streams** (RNNs): the stream is cut into B equal rows, read left to right in consecutive
  windows of T tokens (each window overlaps the next by one token, the target of the last position).
  Row b of batch i continues row b of batch i - 1, so the hidden state after batch i is the right
  starting state for batch i + 1 (carried, and detached: *truncated* backpropagation through time)::

      row 0:  x[0      : L]      -> windows [0:T+1], [T:2T+1], …
      row 1:  x[L      : 2L]
      …       (L = N // B tokens per row)

Validation is deterministic and covers the whole split: non-overlapping windows whose targets are
x[1], x[2], …, x[N-1] exactly once, the last window right-padded with [PAD] (never a target).

The stream stays what it was given (often a read-only uint16 memmap of a large corpus): only the
rows of a batch are gathered and widened to int64, never the whole stream.

A target equal to [SOS] (the token after an [EOS]) is never scored: models give [SOS] probability
zero by convention (:mod:`arlm.models.base`). :func:`loss_targets` turns it into [PAD], the ignored
index.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from arlm.errors import ConfigError
from arlm.streams import PAD_ID, SOS_ID, as_stream, sequence_spans


def gather(stream: np.ndarray, index: np.ndarray) -> Tensor:
    """``stream[index]`` for an index array of any shape, [PAD] where index ≥ N -> a LongTensor."""
    valid = index < len(stream)
    out = np.full(index.shape, PAD_ID, dtype=np.int64)
    out[valid] = stream[index[valid]]
    return torch.from_numpy(out)


def loss_targets(window: Tensor) -> tuple[Tensor, Tensor]:
    """window (B, T+1) -> inputs (B, T), targets (B, T) with [SOS] targets replaced by [PAD] (ignored)."""
    inputs, targets = window[:, :-1], window[:, 1:]
    targets = targets.masked_fill(targets == SOS_ID, PAD_ID)
    return inputs, targets


def _check_length(n: int, block_size: int, what: str) -> None:
    if block_size < 1:
        raise ConfigError(f"block_size must be at least 1, not {block_size}")
    if n < block_size + 1:
        raise ConfigError(f"the {what} stream has {n} tokens, fewer than block_size + 1 = {block_size + 1}; "
                          "use a smaller block_size or more data")


# ---------------------------------------------------------------------------------------------
# Chunks (Transformer, window model)
# ---------------------------------------------------------------------------------------------


def random_chunks(stream: np.ndarray | Tensor, block_size: int, batch_size: int,
                  generator: torch.Generator) -> Tensor:
    """``batch_size`` windows of ``block_size + 1`` tokens at offsets s ~ U{0, …, N - T - 1} -> (B, T+1)."""
    stream = as_stream(stream)
    _check_length(len(stream), block_size, "training")
    starts = torch.randint(0, len(stream) - block_size, (batch_size,), generator=generator).numpy()  # (B,)
    return gather(stream, starts[:, None] + np.arange(block_size + 1)[None, :])  # (B, T+1)


def validation_chunks(stream: np.ndarray | Tensor, block_size: int, batch_size: int) -> Iterator[Tensor]:
    """The whole stream as windows (B, T+1) at offsets 0, T, 2T, …: every target exactly once.

    Windows overlap by one token (the last target of one is the first input of the next); the last
    window is right-padded with [PAD]. Each target's context is the part of its window before it.
    """
    stream = as_stream(stream)
    _check_length(len(stream), 1, "validation")
    num = -(-(len(stream) - 1) // block_size)  # ceil((N - 1) / T) windows
    columns = np.arange(block_size + 1)[None, :]
    for i in range(0, num, batch_size):
        starts = np.arange(i, min(i + batch_size, num)) * block_size  # (b,)
        yield gather(stream, starts[:, None] + columns)  # (b, T+1)


# ---------------------------------------------------------------------------------------------
# Whole sequences, one per row (σ-GPT)
# ---------------------------------------------------------------------------------------------


def _sequence_rows(stream: np.ndarray, starts: np.ndarray, lengths: np.ndarray, block_size: int) -> Tensor:
    """The sequences at ``starts`` (of ``lengths``) as rows (B, block_size+1), each cut to the row
    and right-padded with [PAD]."""
    width = block_size + 1
    columns = np.arange(width)[None, :]  # (1, T+1)
    index = starts[:, None] + np.minimum(columns, lengths[:, None] - 1)  # (B, T+1)
    out = stream[index].astype(np.int64)
    out[columns >= lengths[:, None]] = PAD_ID
    return torch.from_numpy(out)


def random_sequences(stream: np.ndarray | Tensor, block_size: int, batch_size: int,
                     generator: torch.Generator) -> Tensor:
    """``batch_size`` sequences drawn uniformly (with replacement), one ``[SOS] … [EOS]`` per row:
    (B, block_size+1), right-padded with [PAD]; a longer sequence keeps its first block_size+1 tokens."""
    stream = as_stream(stream)
    starts, lengths = sequence_spans(stream)
    if not len(starts):
        raise ConfigError("the training stream holds no [SOS] … [EOS] sequence; give some text")
    pick = torch.randint(0, len(starts), (batch_size,), generator=generator).numpy()  # (B,)
    return _sequence_rows(stream, starts[pick], lengths[pick], block_size)


def validation_sequences(stream: np.ndarray | Tensor, block_size: int, batch_size: int) -> Iterator[Tensor]:
    """Every sequence once, one per row, in batches (b, block_size+1) right-padded with [PAD]
    (a sequence longer than a row is cut: its later targets are not scored)."""
    stream = as_stream(stream)
    starts, lengths = sequence_spans(stream)
    for i in range(0, len(starts), batch_size):
        yield _sequence_rows(stream, starts[i : i + batch_size], lengths[i : i + batch_size], block_size)


# ---------------------------------------------------------------------------------------------
# TBPTT streams (RNNs)
# ---------------------------------------------------------------------------------------------


class TBPTTStreams:
    """The stream as B parallel rows, read in consecutive windows of ``bptt + 1`` tokens.

    ``window(i)`` is batch i of an epoch, (B, bptt+1); ``len(self)`` windows per epoch. Row b holds
    x[b·L : (b+1)·L] with L = N // B (the last N mod B tokens are dropped for training). After the last
    window of an epoch the trainer starts again at window 0 with a fresh (zero) hidden state.
    """

    def __init__(self, stream: np.ndarray | Tensor, batch_size: int, bptt: int) -> None:
        if batch_size < 1:
            raise ConfigError(f"the batch must have at least one row, not {batch_size}")
        stream = as_stream(stream)
        row = len(stream) // batch_size
        if row < bptt + 1:
            raise ConfigError(f"split into {batch_size} rows the stream has {row} tokens per row, fewer "
                              f"than block_size + 1 = {bptt + 1}; use a smaller block_size or batch")
        self.rows = stream[: row * batch_size].reshape(batch_size, row)  # (B, L), a view
        self.bptt = bptt

    def __len__(self) -> int:
        return (self.rows.shape[1] - 1) // self.bptt

    def window(self, i: int) -> Tensor:
        """Batch i of the epoch: tokens (B, bptt+1) from column i·bptt."""
        s = i * self.bptt
        return torch.from_numpy(self.rows[:, s : s + self.bptt + 1].astype(np.int64))


def validation_streams(stream: np.ndarray | Tensor, batch_size: int, bptt: int) -> Iterator[Tensor]:
    """The whole stream as B rows (row b covers x[b·L : (b+1)·L + 1], right-padded with [PAD]), read
    in consecutive windows (B, ≤ bptt+1): every target exactly once; carry the hidden state across."""
    stream = as_stream(stream)
    n = len(stream)
    _check_length(n, 1, "validation")
    batch_size = max(1, min(batch_size, n - 1))
    row = -(-(n - 1) // batch_size)  # targets per row: ceil((N - 1) / B)
    row_starts = np.arange(batch_size)[:, None] * row  # (B, 1)
    for s in range(0, row, bptt):
        columns = np.arange(s, min(s + bptt, row) + 1)[None, :]  # this window's columns of the rows
        yield gather(stream, row_starts + columns)  # (B, ≤ bptt+1)

"""Per-token log-probabilities of a split, in a fixed order, so that two models' scores line up token by
token (what a per-token mixture needs: its λ is chosen on them, :func:`arlm.models.mixture.choose_lambda`).

:func:`token_log_probs` scores every target of every ``[SOS] … [EOS]`` sequence exactly once, as
:func:`~arlm.evaluate.likelihood.evaluate_likelihood` does (sequences packed by length, longer ones than
``context`` by its sliding window), and returns them flat in stream order: sequence by sequence, target
by target. Two models scored on the same stream give arrays of the same length whose i-th entries are
the same prediction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from arlm.errors import DataError
from arlm.evaluate.likelihood import scored_batches, window_rows
from arlm.models.base import ARModel
from arlm.streams import EOS_ID, SOS_ID, split_sequences


def model_context(model) -> int | None:
    """The most tokens ``model`` reads in one row: a Transformer's ``block_size``; None: no limit."""
    config = getattr(model, "config", None)
    return getattr(config, "block_size", None)


@torch.inference_mode()
def token_log_probs(model: ARModel, sequences: np.ndarray | Sequence[np.ndarray], *, sos_id: int = SOS_ID,
                    eos_id: int = EOS_ID, context: int | None = None,
                    batch_tokens: int = 65536, max_batch: int = 4096) -> np.ndarray:
    """(Σ_i (L_i - 1),) float64 natural-log p(x_{t+1} | x_≤t) of every target of every sequence, in
    stream order. ``sequences``: a flat stream or a list of 1-D arrays; ``context``: see
    :func:`~arlm.evaluate.likelihood.evaluate_likelihood` (default: the model's own,
    :func:`model_context`)."""
    if isinstance(sequences, np.ndarray):
        seqs = split_sequences(sequences, sos_id, eos_id)
    else:
        seqs = list(sequences)
    if not seqs:
        raise DataError("nothing to score: the split has no sequences; check the corpus and split")
    context = model_context(model) if context is None else context
    lengths = np.array([len(s) for s in seqs])
    offsets = np.concatenate([[0], np.cumsum(lengths - 1)])  # (S+1,) first target of each sequence
    pieces = [p for i, n in enumerate(lengths) for p in window_rows(i, int(n), context)]
    out = np.full(int(offsets[-1]), math.nan)
    for rows, _, logp in scored_batches(model, seqs, pieces, batch_tokens, max_batch):
        for k, (s, a, b, skip) in enumerate(pieces[r] for r in rows):
            # row target q is the prediction of token a + q + 1, target number a + q of its sequence
            out[offsets[s] + a + skip: offsets[s] + b - 1] = logp[k, skip: b - a - 1]
    return out

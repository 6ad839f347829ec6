"""Shared helpers for the training tests (tests/train)."""

import numpy as np

from arlm.streams import EOS_ID, SOS_ID


def counting_corpus(n: int, seed: int) -> np.ndarray:
    """[SOS] a run of counting tokens [EOS] …: easy to learn, so the loss must drop."""
    rng = np.random.default_rng(seed)
    out: list[int] = []
    while len(out) < n:
        start, length = rng.integers(4, 12), rng.integers(2, 8)
        out += [SOS_ID, *range(start, start + length), EOS_ID]
    return np.array(out[:n], dtype=np.uint16)

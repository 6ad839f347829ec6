"""Counting all 1..N-grams of a token stream with numpy, and finding them again fast.

An N-gram model needs the counts of every n-gram up to N (the start of a sentence only has shorter
histories). They are stored as a *trie in sorted arrays*, one array per order:

* order 1 is dense: the unigram id of word w is w itself (ids 0..V-1, unseen words count 0);
* order n ≥ 2: the n-gram w_1..w_n has the key ``prefix_id * V + w_n`` where ``prefix_id`` is the
  id of w_1..w_{n-1} in order n-1. Keys are sorted and unique, and an n-gram's id is its position.
  Sorting by key sorts by (prefix id, last word), so the children of a context are one contiguous
  range (CSR offsets, :func:`child_offsets`) and ids are in lexicographic order of the words.

Counting is one sort per order, no Python loop per token: the n-gram ending at position t has the
key ``id_{n-1}(t-1) * V + x_t``, built from the (n-1)-gram ids of the previous pass.

Sentences are ``[SOS] w_1 … w_n [EOS]``; an n-gram never crosses a sentence start, so it holds
``<s>`` only at its first position (as in KenLM's lmplz, which pads each line with one ``<s>``).

Finding n-grams (to score text) uses :class:`KeyIndex`, an open-addressing hash table built with
numpy: about 40 ns per lookup, 25 times faster than ``np.searchsorted`` on large tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from arlm.errors import DataError, MismatchError
from arlm.streams import EOS_ID, PAD_ID, SOS_ID

MAX_KEY = np.iinfo(np.int64).max


def training_stream(data: np.ndarray | Sequence[np.ndarray], vocab_size: int) -> np.ndarray:
    """Training data -> one flat int64 stream ``[SOS] … [EOS] [SOS] …``, checked.

    ``data`` is a flat int array (any integer dtype, a read-only memmap is fine) or a list of 1-D
    arrays, one sequence each. Every sequence starts with [SOS]; after [EOS] comes [SOS] or the end;
    [PAD] never appears; every id is below ``vocab_size``.
    """
    parts = [np.asarray(d) for d in data] if isinstance(data, (list, tuple)) else [np.asarray(data)]
    parts = [p.reshape(-1) for p in parts if p.size]
    if not parts:
        raise DataError("the training data is empty; give at least one [SOS] … [EOS] sequence")
    for p in parts:
        if not np.issubdtype(p.dtype, np.integer):
            raise DataError(f"training data must hold integer token ids, got dtype {p.dtype}; "
                            "encode the text with a tokenizer first")
        if p[0] != SOS_ID:
            raise DataError("every training sequence must start with [SOS] (id 1); encode the text "
                            "with arlm's tokenizers, which put [SOS] … [EOS] around each sequence")
    x = np.concatenate([p.astype(np.int64, copy=False) for p in parts])  # (T,) int64
    lo, hi = int(x.min()), int(x.max())
    if lo < 0 or hi >= vocab_size:
        bad = lo if lo < 0 else hi
        raise MismatchError(f"token id {bad} in the training data is outside the vocabulary of "
                            f"{vocab_size} tokens; pass the vocabulary the data was encoded with")
    if lo == PAD_ID:
        raise DataError("the training data contains [PAD] (id 0); give unpadded sequences "
                        "(a flat stream or a list of 1-D arrays)")
    after_eos = x[1:][x[:-1] == EOS_ID]  # tokens that follow an [EOS]
    if (after_eos != SOS_ID).any():
        raise DataError("a token follows [EOS] without a new [SOS]; every sequence must be "
                        "[SOS] … [EOS], so start each sequence with [SOS]")
    return x


def run_lengths(x: np.ndarray) -> np.ndarray:
    """(T,) -> (T,) int64: how many tokens of its sentence end at t (t - last [SOS] at or before t + 1).

    An n-gram ends at t iff ``run[t] >= n``: it then starts at or after the sentence's [SOS].
    """
    t = np.arange(len(x), dtype=np.int64)
    last_sos = np.maximum.accumulate(np.where(x == SOS_ID, t, 0))
    return t - last_sos + 1


def child_offsets(keys: np.ndarray, num_parents: int, vocab_size: int) -> np.ndarray:
    """CSR offsets: children of parent p (an id in order n-1) are ``keys[off[p]:off[p+1]]``."""
    parents = keys // vocab_size
    return np.searchsorted(parents, np.arange(num_parents + 1, dtype=np.int64)).astype(np.int64)


def ngram_words(keys: Sequence[np.ndarray], n: int, vocab_size: int) -> np.ndarray:
    """The words of every n-gram of order n: (G_n, n) int64, row j = w_1..w_n of n-gram id j."""
    out = np.empty((len(keys[n - 1]), n), dtype=np.int64)
    ids = np.arange(len(keys[n - 1]), dtype=np.int64)
    for m in range(n, 1, -1):  # walk the prefix chain: order m -> order m-1
        key = keys[m - 1][ids]
        out[:, m - 1] = key % vocab_size
        ids = key // vocab_size
    out[:, 0] = ids  # order 1 is dense: the id is the word
    return out


@dataclass
class NGramCounts:
    """Raw counts c(w_1..w_n) of every n-gram, orders 1..N (list index n-1 holds order n)."""

    order: int
    vocab_size: int
    keys: list[np.ndarray]  # (G_n,) int64 sorted; order 1: arange(V)
    counts: list[np.ndarray]  # (G_n,) int64 raw counts
    suffix: list[np.ndarray]  # (G_n,) int64 id of w_2..w_n in order n-1 (order 1: 0, the empty n-gram)
    num_tokens: int

    def prefix(self, n: int) -> np.ndarray:
        """(G_n,) id of w_1..w_{n-1} in order n-1 (the context); order 1: all 0."""
        return self.keys[n - 1] // self.vocab_size if n > 1 else np.zeros(self.vocab_size, np.int64)

    def last_word(self, n: int) -> np.ndarray:
        return self.keys[n - 1] % self.vocab_size

    def first_word(self, n: int) -> np.ndarray:
        """(G_n,) w_1 of every n-gram of order n."""
        ids = np.arange(len(self.keys[n - 1]), dtype=np.int64)
        for m in range(n, 1, -1):
            ids = self.keys[m - 1][ids] // self.vocab_size
        return ids

    def words(self, n: int) -> np.ndarray:
        return ngram_words(self.keys, n, self.vocab_size)


def count_ngrams(data: np.ndarray | Sequence[np.ndarray], order: int, vocab_size: int) -> NGramCounts:
    """All n-gram counts, n = 1..order, of ``[SOS] … [EOS]`` sequences (see :func:`training_stream`).

    Per order n ≥ 2 (one sort of the T keys, O(T log T), no loop per token)::

        key(t) = id_{n-1}(t-1) * V + x_t        for every t where an n-gram ends (run[t] >= n)
        keys, id_n = unique(key)                 # sorted (prefix id, word); id_n(t) = position
        c(keys[j]) = number of t with id_n(t) = j
        suffix[j] = id_{n-1}(t) for any t with id_n(t) = j    # w_2..w_n ends where w_1..w_n ends
    """
    x = training_stream(data, vocab_size)  # (T,) int64
    V = vocab_size
    run = run_lengths(x)  # (T,)
    keys = [np.arange(V, dtype=np.int64)]
    counts = [np.bincount(x, minlength=V).astype(np.int64)]
    suffix = [np.zeros(V, dtype=np.int64)]
    ids = x  # (T,) id of the (n-1)-gram ending at each position, -1 where none
    for n in range(2, order + 1):
        pos = np.flatnonzero(run >= n)  # (P,) positions where an n-gram ends
        if pos.size == 0:
            raise DataError(f"the training data has no {n}-grams (every sentence is shorter than "
                            f"{n} tokens with [SOS] and [EOS]); use an order below {n} or more data")
        prefix = ids[pos - 1]  # (P,) id of w_1..w_{n-1}, ≥ 0 because run[pos-1] ≥ n-1
        if int(prefix.max()) >= MAX_KEY // V - 1:
            raise DataError(f"too many distinct {n - 1}-grams for 64-bit n-gram keys; use a lower order")
        key = prefix * V + x[pos]  # (P,) int64
        perm = np.argsort(key)
        sorted_key = key[perm]
        new = np.empty(len(key), dtype=bool)  # first of a run of equal keys
        new[0] = True
        np.not_equal(sorted_key[1:], sorted_key[:-1], out=new[1:])
        starts = np.flatnonzero(new)  # (G,) start of each run in sorted order
        keys.append(sorted_key[starts])
        counts.append(np.diff(np.append(starts, len(key))).astype(np.int64))
        suffix.append(ids[pos[perm[starts]]])  # (G,) w_2..w_n ends where w_1..w_n ends
        if n < order:
            group = np.cumsum(new) - 1  # (P,) n-gram id in sorted order
            ids = np.full(len(x), -1, dtype=np.int64)
            ids[pos[perm]] = group
    return NGramCounts(order, V, keys, counts, suffix, len(x))


class KeyIndex:
    """Open-addressing hash table: int64 key -> its position in a sorted unique key array.

    Built without a loop per key: keys are placed by linear probing in the order of their home slot
    h(k) = ⌊hash(k) · S / 2^32⌋ (hash: the top 32 bits of k · 0x9E3779B97F4A7C15, Fibonacci hashing;
    S = 2 × keys, load factor 1/2). In that order the slot of the i-th key is
    ``max(h_i, slot_{i-1} + 1) = i + max_{j≤i}(h_j - j)``, a cumulative maximum. The table has room
    past its last slot instead of wrapping around, and ends with an empty slot, so a lookup probes
    h(k), h(k)+1, … until it finds k or an empty slot (-1): 1.5 probes per hit, 2.5 per miss.
    """

    MULT = np.uint64(0x9E3779B97F4A7C15)

    def __init__(self, keys: np.ndarray):
        n = len(keys)
        self.home_slots = max(2, 2 * n)  # S
        home = self._home(keys)  # (n,)
        order = np.argsort(home)
        slot = np.arange(n, dtype=np.int64) + np.maximum.accumulate(home[order] - np.arange(n))
        last = int(slot[-1]) if n else 0
        size = max(self.home_slots, last + 1) + 1  # every home slot, and an empty slot at the end
        pos_type = np.int32 if n < 2**31 else np.int64
        self.slot_key = np.full(size, -1, dtype=np.int64)  # (size,) the key in each slot, -1 = empty
        self.slot_pos = np.empty(size, dtype=pos_type)  # (size,) its position in ``keys``
        self.slot_key[slot] = keys[order]
        self.slot_pos[slot] = order

    @classmethod
    def from_slots(cls, slot_key: np.ndarray, slot_pos: np.ndarray, home_slots: int) -> KeyIndex:
        """A table built before (its ``slot_key``, ``slot_pos``, e.g. memory-mapped from disk)."""
        index = cls.__new__(cls)
        index.home_slots, index.slot_key, index.slot_pos = int(home_slots), slot_key, slot_pos
        return index

    def _home(self, q: np.ndarray) -> np.ndarray:
        h = (q.astype(np.uint64) * self.MULT) >> np.uint64(32)  # 32 well-mixed bits
        return ((h * np.uint64(self.home_slots)) >> np.uint64(32)).astype(np.int64)

    def find_one(self, q: int) -> int:
        """One key (≥ 0) -> its position, -1 if absent: :meth:`find`'s probes in Python integers (a
        decoding step at batch size 1 looks up a handful of keys, where numpy's per-call cost dominates)."""
        h = ((q * int(self.MULT)) & 0xFFFFFFFFFFFFFFFF) >> 32
        slot = ((h * self.home_slots) & 0xFFFFFFFFFFFFFFFF) >> 32  # uint64 arithmetic, as in _home
        slot_key = self.slot_key
        while True:
            k = slot_key[slot]
            if k == q:
                return int(self.slot_pos[slot])
            if k == -1:
                return -1
            slot += 1

    def find(self, q: np.ndarray) -> np.ndarray:
        """(M,) int64 keys (all ≥ 0) -> (M,) int64 positions, -1 where a key is absent."""
        out = np.full(len(q), -1, dtype=np.int64)
        where = np.arange(len(q))
        slot = self._home(q)
        while where.size:
            k = self.slot_key[slot]
            hit = k == q
            out[where[hit]] = self.slot_pos[slot[hit]]
            more = ~hit & (k != -1)  # occupied by another key: probe the next slot
            where, slot, q = where[more], slot[more] + 1, q[more]
        return out

"""The ∞-gram (Liu et al. 2024): an n-gram model with no fixed n, counted on demand from a suffix array.

An n-gram model keeps the last n-1 tokens. The ∞-gram keeps the longest suffix of the context that
occurs in the training stream and estimates from its counts, found by binary search in a suffix array
instead of stored tables (so there is no n to choose and nothing to precompute but one sort)::

    s        = the longest suffix of x_≤t with cnt(s ·) > 0           (s may be the whole context)
    p(w | x_≤t) = cnt(s w) / cnt(s ·)

where cnt(s ·) counts the occurrences of s followed by a token that can be predicted (every token but
[PAD] and [SOS]). Unlike Kneser–Ney there is no discount and no mass for unseen continuations:
**p(w | x_≤t) is 0 whenever w never followed s** (the paper's "sparse" estimates), so a text with one
such token has infinite perplexity on its own; Liu et al. interpolate it with a neural model,
λ p_∞ + (1-λ) p_neural (:mod:`arlm.models.mixture`). Two consequences of backing off only when the
context itself is unseen:

* the empty suffix gives the unigram distribution c(w) / Σ_v c(v) over predictable tokens; a context
  ending in [EOS] (only ever followed by [SOS]) backs off to it;
* from [SOS], sampling copies training text: the whole context [SOS] x_1..x_t occurs, so the next token
  is drawn from what followed it, and the sample is a training sequence verbatim (its probability
  c(x) / #sequences, the empirical distribution). Given a prompt it never saw, it backs off and then
  copies the rest of some training sequence from where the prompt's suffix occurs.

**The index.** The training stream x_0..x_{N-1} (``[SOS] … [EOS]`` sequences back to back) and the
suffix array of the *reversed* stream, stored as end positions: ``ends`` (N,) sorts the positions e by
the reversed text x_e x_{e-1} … x_0. The occurrences of a pattern s = s_1..s_m ending anywhere form one
contiguous range of ``ends`` (those whose reversed text starts with s_m … s_1), and lengthening s by one
token on the *left* narrows that range by one binary search on the token at depth m (x_{e-m}). So the
longest suffix of a context is found by narrowing, token by token backwards, until the range would be
empty: O(ℓ · log N) work per position for a match of ℓ tokens, no restart, every position of a batch
at once (numpy). Alongside, a second range for the pattern "s then w" (w at depth 0) gives cnt(s w).
The next-token distribution of a context is the histogram of x_{e+1} over the matched range.
The suffix array is built by ``pydivsufsort`` (libdivsufsort) over the reversed ids.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from arlm.errors import DataError, FormatError, MismatchError
from arlm.io import atomic_dir, atomic_write, read_json
from arlm.models.base import token_ids_array
from arlm.streams import EOS_ID, PAD_ID, SOS_ID, UNK_ID, as_stream, sequence_spans

FORMAT_VERSION = 1
TOKENS_FILE = "tokens.npy"
SUFFIX_ARRAY_FILE = "suffix_array.npy"
CHUNK = 1 << 16  # positions matched per pass (bounds the memory of score)


@dataclass
class InfiniGramState:
    """Every token fed so far, (B, L) long: the ∞-gram's context is unbounded."""

    history: Tensor

    def select(self, index: Tensor) -> InfiniGramState:
        return InfiniGramState(self.history[index])


@dataclass
class Match:
    """What the index says about M contexts (and, when given, one continuation each).

    ``suffix_len`` (M,): ℓ, the length of the longest suffix s with cnt(s ·) > 0 (0: the empty one);
    ``context_count`` (M,): cnt(s ·); ``continuation_count`` (M,): cnt(s w) (when targets were given);
    ``lo``, ``hi`` (M,): s's range of ``ends`` (the whole index for ℓ = 0).
    """

    suffix_len: np.ndarray
    context_count: np.ndarray
    continuation_count: np.ndarray | None
    lo: np.ndarray
    hi: np.ndarray


def _smallest_uint(high: int) -> np.dtype:
    for dtype in (np.uint8, np.uint16, np.uint32):
        if high <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


class InfiniGramModel:
    """The ∞-gram over a training stream (an :class:`~arlm.models.base.ARModel`), numpy inside.

    Build one with :meth:`fit` (one suffix-array sort) or :meth:`load` (memory-mapped). ``tokens`` (N,)
    is the training stream, ``ends`` (N,) the suffix array of its reversal as end positions.
    """

    family = "infinigram"

    def __init__(self, vocab: Sequence[str], tokens: np.ndarray, ends: np.ndarray):
        self.vocab = list(vocab)
        self.vocab_size = len(self.vocab)
        if self.vocab_size < 4:
            raise MismatchError(f"the vocabulary has {self.vocab_size} entries but must start with the 4 "
                                "special tokens [PAD] [SOS] [EOS] [UNK]; use arlm's tokenizers")
        if len(tokens) != len(ends) or len(tokens) < 2:
            raise FormatError(f"the ∞-gram index holds {len(tokens)} tokens and {len(ends)} suffixes; "
                              "they must agree (and be at least one sequence); build the model again")
        self.tokens = tokens  # (N,) the training stream (a read-only memmap after load)
        self.ends = ends  # (N,) suffix array of the reversed stream, as end positions
        self.num_tokens = len(tokens)
        unigram = np.bincount(np.asarray(tokens), minlength=self.vocab_size)
        if len(unigram) > self.vocab_size:
            raise MismatchError(f"the ∞-gram's stream holds token id {len(unigram) - 1}, outside its "
                                f"vocabulary of {self.vocab_size}; build it with the tokenizer saved with it")
        unigram = unigram.astype(np.int64)
        unigram[[PAD_ID, SOS_ID]] = 0  # never predicted
        self.unigram = unigram  # (V,) c(w) over predictable tokens
        self.num_predictable = int(unigram.sum())
        self._vocab_index: dict[str, int] | None = None

    # ----- construction ----------------------------------------------------------------------

    @classmethod
    def fit(cls, data: np.ndarray | Sequence[np.ndarray], vocab: Sequence[str]) -> InfiniGramModel:
        """Index ``data`` (``[SOS] … [EOS]`` id sequences: a flat stream or a list of 1-D arrays) for
        a vocabulary (id -> token string): the stream is kept and its reversal suffix-sorted."""
        from pydivsufsort import divsufsort

        if not isinstance(data, np.ndarray) and not hasattr(data, "tokens"):
            parts = [as_stream(s) for s in data]
            data = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        stream = as_stream(data)
        if len(stream) == 0:
            raise DataError("nothing to index: the training split has no sequences; check the corpus "
                            "and split")
        sequence_spans(stream)  # a run of [SOS] … [EOS] sequences, or a one-line DataError
        if stream.min() < 0 or stream.max() >= len(vocab):
            raise MismatchError(f"token id {int(stream.max())} is outside the vocabulary of {len(vocab)}; "
                                "encode the text with the vocabulary's own tokenizer")
        if (stream == PAD_ID).any():
            raise DataError("the training stream holds [PAD] tokens; index unpadded [SOS] … [EOS] "
                            "sequences")
        tokens = np.ascontiguousarray(stream, dtype=_smallest_uint(len(vocab) - 1))
        reversed_sa = divsufsort(np.ascontiguousarray(tokens[::-1]))  # (N,) int32 or int64
        ends = (len(tokens) - 1 - reversed_sa).astype(reversed_sa.dtype)
        return cls(vocab, tokens, ends)

    # ----- the index: ranges of ``ends`` narrowed by binary search --------------------------------

    def _token_at(self, rank: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """The token ``depth`` places before the end of suffix ``rank`` (-1 before the stream starts)."""
        pos = self.ends[rank].astype(np.int64) - depth
        out = np.full(len(pos), -1, dtype=np.int64)
        ok = pos >= 0
        out[ok] = self.tokens[pos[ok]]
        return out

    def _bound(self, lo: np.ndarray, hi: np.ndarray, depth: np.ndarray, value: np.ndarray,
               upper: bool) -> np.ndarray:
        """Per item, the first rank in [lo, hi) whose token at ``depth`` is ≥ value (> value when
        ``upper``): within a range that shares its first ``depth`` tokens, those tokens are sorted."""
        lo, hi = lo.copy(), hi.copy()
        active = np.flatnonzero(lo < hi)
        while active.size:
            mid = (lo[active] + hi[active]) // 2
            key = self._token_at(mid, depth[active])
            right = key <= value[active] if upper else key < value[active]
            lo[active] = np.where(right, mid + 1, lo[active])
            hi[active] = np.where(right, hi[active], mid)
            active = active[lo[active] < hi[active]]
        return lo

    def _narrow(self, lo: np.ndarray, hi: np.ndarray, depth: np.ndarray,
                value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The sub-range of [lo, hi) whose token at ``depth`` equals ``value``."""
        first = self._bound(lo, hi, depth, value, upper=False)
        return first, self._bound(first, hi, depth, value, upper=True)

    def count(self, ngram: Sequence[int]) -> int:
        """cnt(ngram): how often the id sequence occurs in the training stream (the empty one: N)."""
        ids = np.asarray(ngram, dtype=np.int64)
        lo, hi = np.zeros(1, dtype=np.int64), np.full(1, self.num_tokens, dtype=np.int64)
        for depth, token in enumerate(ids[::-1]):
            lo, hi = self._narrow(lo, hi, np.full(1, depth), np.full(1, int(token)))
            if hi[0] <= lo[0]:
                return 0
        return int(hi[0] - lo[0])

    def match(self, rows: np.ndarray, row: np.ndarray, end: np.ndarray,
              target: np.ndarray | None = None) -> Match:
        """The longest matched suffix of M contexts ``rows[row[m], :end[m] + 1]`` (rows (R, L) int64,
        -1 for no token; ``row``, ``end`` (M,)), with cnt(s w) for ``target`` (M,) when given."""
        M = len(row)
        n = np.int64(self.num_tokens)
        length = end + 1  # tokens in each context
        suffix_len = np.zeros(M, dtype=np.int64)
        ctx_count = np.full(M, self.num_predictable, dtype=np.int64)
        lo, hi = np.zeros(M, dtype=np.int64), np.full(M, n, dtype=np.int64)
        cont = None
        if target is not None:  # "w" alone: occurrences ending with the target
            cont = self.unigram[np.clip(target, 0, self.vocab_size - 1)].copy()
            cont[(target < 0) | (target >= self.vocab_size)] = 0
            blo, bhi = self._narrow(lo, hi, np.zeros(M, dtype=np.int64), target)
        last = np.where(length > 0, rows[row, np.maximum(end, 0)], -1)
        alive = np.flatnonzero((length > 0) & (last != EOS_ID) & (last >= 0))  # [EOS] -> the unigram
        depth = 0
        while alive.size:
            token = rows[row[alive], end[alive] - depth]  # the context token `depth` back from the end
            d = np.full(alive.size, depth, dtype=np.int64)
            nlo, nhi = self._narrow(lo[alive], hi[alive], d, token)
            found = (nhi > nlo) & (token >= 0)
            alive = alive[found]
            lo[alive], hi[alive] = nlo[found], nhi[found]
            suffix_len[alive] = depth + 1
            ctx_count[alive] = hi[alive] - lo[alive]
            if cont is not None and alive.size:
                seen = alive[bhi[alive] > blo[alive]]  # s w may still occur
                cont[alive] = 0
                if seen.size:
                    b1, b2 = self._narrow(blo[seen], bhi[seen], np.full(seen.size, depth + 1),
                                          rows[row[seen], end[seen] - depth])
                    blo[seen], bhi[seen] = b1, b2
                    cont[seen] = b2 - b1
            depth += 1
            alive = alive[length[alive] > depth]
        return Match(suffix_len, ctx_count, cont, lo, hi)

    def _distributions(self, m: Match) -> np.ndarray:
        """(M, V) float64 next-token probabilities of matched contexts: the histogram of the token after
        each occurrence of s (the unigram for ℓ = 0)."""
        M, V = len(m.suffix_len), self.vocab_size
        dist = np.tile(self.unigram / max(self.num_predictable, 1), (M, 1))  # (M, V)
        rows = np.flatnonzero(m.suffix_len > 0)
        if rows.size:
            lengths = (m.hi - m.lo)[rows]
            total = int(lengths.sum())
            owner = np.repeat(np.arange(rows.size), lengths)  # (total,)
            rank = np.repeat(m.lo[rows] - (np.cumsum(lengths) - lengths), lengths) + np.arange(total)
            nxt = self.tokens[self.ends[rank].astype(np.int64) + 1].astype(np.int64)  # (total,)
            counts = np.bincount(owner * V + nxt, minlength=rows.size * V).reshape(rows.size, V)
            counts[:, [PAD_ID, SOS_ID]] = 0
            dist[rows] = counts / m.context_count[rows, None]
        return dist

    # ----- the ARModel interface (torch tensors, natural log) ---------------------------------

    def _check_tokens(self, tokens) -> np.ndarray:
        return token_ids_array(tokens, self.vocab_size)

    def score_details(self, tokens) -> Match:
        """tokens (B, T) -> a :class:`Match` of the B·(T-1) predictions, row-major, with ℓ, cnt(s ·)
        and cnt(s w) of each (what ``score``, the zero rate and the benchmarks read)."""
        tok = self._check_tokens(tokens)
        B, T = tok.shape
        row = np.repeat(np.arange(B), max(T - 1, 0))
        end = np.tile(np.arange(max(T - 1, 0)), B)
        parts = []
        for i in range(0, len(row), CHUNK):
            r, e = row[i:i + CHUNK], end[i:i + CHUNK]
            parts.append(self.match(tok, r, e, tok[r, e + 1]))
        if not parts:
            empty = np.zeros(0, dtype=np.int64)
            return Match(empty, empty, empty, empty, empty)
        return Match(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                       ("suffix_len", "context_count", "continuation_count", "lo", "hi")))

    def score(self, tokens: Tensor) -> Tensor:
        """tokens (B, T) -> (B, T-1) float64 log p(x_{t+1} | x_{≤t}): log cnt(s w) - log cnt(s ·),
        -inf where w never followed s; never builds (B, T, V)."""
        tok = self._check_tokens(tokens)
        B, T = tok.shape
        m = self.score_details(tok)
        with np.errstate(divide="ignore"):
            lp = np.log(m.continuation_count) - np.log(m.context_count)
        lp = lp.reshape(B, max(T - 1, 0))
        target = tok[:, 1:]
        lp[(target == PAD_ID) | (target == SOS_ID)] = -np.inf
        return torch.from_numpy(lp)

    def log_probs(self, tokens: Tensor) -> Tensor:
        """tokens (B, T) -> (B, T, V) float64: out[b, t] = log p(· | x_{≤t}) (natural log)."""
        tok = self._check_tokens(tokens)
        B, T = tok.shape
        m = self.match(tok, np.repeat(np.arange(B), T), np.tile(np.arange(T), B))
        with np.errstate(divide="ignore"):
            dist = np.log(self._distributions(m))
        return torch.from_numpy(dist.reshape(B, T, self.vocab_size))

    def start(self, batch_size: int) -> InfiniGramState:
        return InfiniGramState(torch.zeros((batch_size, 0), dtype=torch.long))

    def step(self, tokens: Tensor, state: InfiniGramState) -> tuple[Tensor, InfiniGramState]:
        """Feed tokens (B, t) -> (next-token log-probs (B, V) float64, state with every token fed)."""
        new = self._check_tokens(tokens)
        seq = np.concatenate([state.history.numpy().astype(np.int64), new], axis=1)  # (B, L)
        B, L = seq.shape
        m = self.match(seq, np.arange(B), np.full(B, L - 1, dtype=np.int64))
        with np.errstate(divide="ignore"):
            dist = np.log(self._distributions(m))
        return torch.from_numpy(dist), InfiniGramState(torch.from_numpy(seq))

    # ----- a friendly API ---------------------------------------------------------------------

    def encode(self, words: str | Sequence[str | int]) -> np.ndarray:
        """Tokens (a whitespace-separated string or a list of strings/ids) -> ids (unknown: [UNK])."""
        if self._vocab_index is None:
            self._vocab_index = {w: i for i, w in enumerate(self.vocab) if i != PAD_ID}
        if isinstance(words, str):
            words = words.split()
        return np.array([w if isinstance(w, (int, np.integer)) else self._vocab_index.get(w, UNK_ID)
                         for w in words], dtype=np.int64)

    def prob(self, context: Sequence[int], word: int) -> tuple[float, int]:
        """(p_∞(word | context), ℓ): the estimate and the length of the suffix it came from."""
        ids = np.asarray([*context, word], dtype=np.int64)[None]
        m = self.match(ids, np.zeros(1, dtype=np.int64), np.array([len(context) - 1]), ids[0, -1:])
        return float(m.continuation_count[0] / m.context_count[0]), int(m.suffix_len[0])

    def __repr__(self) -> str:
        return f"InfiniGramModel(tokens={self.num_tokens:,}, vocab_size={self.vocab_size})"

    # ----- save / load ------------------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        """Write the model folder atomically: config.json, tokens.npy, suffix_array.npy, vocab.json."""
        with atomic_dir(folder) as tmp:
            self.save_files(tmp)
        return Path(folder)

    def save_files(self, folder: str | Path) -> None:
        """Write the model's files into an existing folder (e.g. one of ``atomic_dir``)."""
        folder = Path(folder)
        for name, array in ((TOKENS_FILE, self.tokens), (SUFFIX_ARRAY_FILE, self.ends)):
            with open(folder / name, "wb") as f:
                np.save(f, np.ascontiguousarray(array))
        config = {"family": self.family, "format_version": FORMAT_VERSION, "vocab_size": self.vocab_size,
                  "num_tokens": self.num_tokens, "tokens_dtype": str(self.tokens.dtype),
                  "suffix_array_dtype": str(self.ends.dtype)}
        with atomic_write(folder / "config.json") as f:
            json.dump(config, f, indent=2)
        with atomic_write(folder / "vocab.json") as f:
            json.dump(self.vocab, f, ensure_ascii=False)

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu") -> InfiniGramModel:
        """Read a folder written by :meth:`save`; the stream and the suffix array are memory-mapped
        (read-only), so loading costs one pass over the stream (its unigram counts), not a copy."""
        folder = Path(folder)
        config = read_json(folder / "config.json", "the model configuration", "build the ∞-gram again")
        if not isinstance(config, dict) or config.get("family") != cls.family:
            family = config.get("family") if isinstance(config, dict) else None
            raise MismatchError(f"{folder} holds a {family!r} model, not an ∞-gram; load it with that "
                                "family's loader")
        arrays = []
        for name in (TOKENS_FILE, SUFFIX_ARRAY_FILE):
            try:
                arrays.append(np.load(folder / name, mmap_mode="r", allow_pickle=False))
            except FileNotFoundError as e:
                raise FormatError(f"{folder / name} is missing; build the ∞-gram again") from e
            except (ValueError, OSError) as e:
                raise FormatError(f"{folder / name} is truncated or corrupt ({e}); build the ∞-gram "
                                  "again") from e
        vocab = read_json(folder / "vocab.json", "the vocabulary", "build the ∞-gram again")
        if not isinstance(vocab, list) or not all(isinstance(w, str) for w in vocab):
            raise FormatError(f"{folder / 'vocab.json'} is not a list of strings; build the ∞-gram again")
        if config.get("num_tokens") != len(arrays[0]) or config.get("vocab_size") != len(vocab):
            raise FormatError(f"{folder} is inconsistent (config.json says {config.get('num_tokens')} tokens "
                              f"and {config.get('vocab_size')} words; the files hold {len(arrays[0])} and "
                              f"{len(vocab)}); build the ∞-gram again")
        return cls(vocab, arrays[0], arrays[1])


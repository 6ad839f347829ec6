"""N-gram language models: MLE, add-k, Kneser–Ney and modified Kneser–Ney (as KenLM's lmplz).

An N-gram model assumes p(x_t | x_<t) = p(x_t | x_{t-N+1..t-1}): the next token depends on the last
N-1 tokens only, and its probability is estimated by counting (:mod:`arlm.models.ngram_counts`).
The chapter's point is *sparsity*: most N-grams of a new text were never counted, so MLE gives them
probability 0 and the text infinite perplexity. Smoothing moves mass to unseen events.

Notation: h is a context (history), w a word, hw the n-gram, h' the context h without its first word,
c(·) raw counts, |V| the number of tokens that can be predicted: every vocabulary entry except
[PAD] and [SOS] (so [EOS] = ``</s>`` and [UNK] = ``<unk>`` are counted, as in lmplz).

**Backoff form.** Every estimator except add-k is stored as an ARPA file is: for each n-gram a
log10 probability, for each context a log10 backoff weight, and

    log10 p(w | h) = stored(hw)                      if the n-gram hw exists,
                   = backoff(h) + log10 p(w | h')    otherwise (backoff(h) = 0 if h does not exist).

That one representation scores every estimator, is exactly what ARPA files hold, and is what KenLM
queries. Scoring is vectorised: per order, one hash lookup finds the n-gram ending at each position;
the longest match gives the probability and the contexts longer than the match add their backoffs.

Estimators (``smoothing=``):

* ``mle``: p(w | h) = c(hw) / Σ_v c(hv), with h the longest suffix of the history that was seen as a
  context (has a continuation in training): backoff(h) = -inf for those contexts, so unseen words
  get probability 0. ``p(w) = c(w) / Σ_v c(v)`` for unigrams.
* ``add-k`` (``laplace`` is k = 1): p(w | h) = (c(hw) + k) / (Σ_v c(hv) + k|V|), same choice of h.
  Unseen words in h all get k / (Σ_v c(hv) + k|V|), which no backoff weight can express, so add-k is
  scored by its own rule (a per-context *floor*) and has no ARPA form above order 1.
* ``kn``: interpolated Kneser–Ney, one discount per order, D = n_1 / (n_1 + 2 n_2).
* ``mkn`` (default): interpolated modified Kneser–Ney exactly as KenLM's ``lmplz`` (no pruning):

  1. adjusted counts a(·): the highest order and n-grams that start with ``<s>`` keep their raw
     counts; every other n-gram gets its number of distinct left extensions
     a(w_1..w_n) = N_1+(• w_1..w_n) = |{v : c(v w_1..w_n) > 0}| (``<s>`` counts as an extension);
     a(<s>) = 0 (it is never predicted);
  2. per order, from the count-of-counts t_k = |{n-grams with a = k}| (Chen & Goodman eq. 26)::

         Y = t_1 / (t_1 + 2 t_2),     D_k = k - (k + 1) Y t_{k+1} / t_k      (k = 1, 2, 3; D_0 = 0)

     lmplz refuses when some t_k = 0 (k ≤ 3) or some D_k is outside [0, k]; so do we, unless
     ``discount_fallback`` is given (lmplz's ``--discount_fallback``, default D = 0.5 1 1.5);
  3. per context h (Σ over the words w seen after h)::

         p̂(w | h) = (a(hw) - D(a(hw))) / Σ_w a(hw)
         γ(h)     = (D_1 N_1(h•) + D_2 N_2(h•) + D_3+ N_3+(h•)) / Σ_w a(hw)

     where N_k(h•) is the number of words with a(hw) = k (N_3+: ≥ 3) and D(a) = D_min(a,3);
  4. interpolation, from unigrams up::

         p(w)     = p̂(w) + γ(ε) / |V|              (the empty context ε; <unk> and unseen words
                                                      get only this uniform share)
         p(w | h) = p̂(w | h) + γ(h) p(w | h')

     and the stored values are log10 p(w | h) for every seen n-gram, log10 γ(h) as the backoff of
     every context (0 for n-grams that are no context: the highest order and those ending in
     ``</s>``). ``<s>`` is never predicted (log-prob -inf).

Because Σ_{w seen} p̂(w | h) = 1 - γ(h), every distribution sums to one.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from arlm.errors import ConfigError, DataError, FormatError, MismatchError
from arlm.io import atomic_dir, atomic_write, read_json
from arlm.models import ngram_binary
from arlm.models.base import token_ids_array
from arlm.models.ngram_counts import (
    KeyIndex,
    NGramCounts,
    child_offsets,
    count_ngrams,
    ngram_words,
)
from arlm.streams import EOS_ID, PAD_ID, SOS_ID, UNK_ID

SMOOTHINGS = ("mle", "add-k", "laplace", "kn", "mkn")
LN10 = math.log(10.0)
LMPLZ_FALLBACK = (0.5, 1.0, 1.5)  # lmplz --discount_fallback defaults for D1, D2, D3+
KN_FALLBACK = 0.75  # the usual single Kneser–Ney discount
CHUNK = 1 << 20  # positions scored per pass (bounds the memory of score)
FORMAT_VERSION = 1


# ---------------------------------------------------------------------------------------------
# Estimators: counts -> backoff-form tables (all log10)
# ---------------------------------------------------------------------------------------------


def _num_contexts(c: NGramCounts, n: int) -> int:
    """Contexts of order-n n-grams: the n-grams of order n-1 (one empty context for unigrams)."""
    return 1 if n == 1 else len(c.keys[n - 2])


def _log10(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log10(p)


def _unigram_counts(c: NGramCounts) -> np.ndarray:
    """Raw unigram counts with <s> set to 0: it starts every sentence but is never predicted."""
    cnt = c.counts[0].astype(np.float64)
    cnt[SOS_ID] = 0.0
    return cnt


def estimate_mle(c: NGramCounts) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """MLE in backoff form: log10 c(hw)/Σ_v c(hv) per n-gram; backoff -inf for seen contexts.

    A history backs off only to its longest suffix that was seen as a context; there the relative
    frequency is final, so unseen words get 0 (backoff -inf) and the distribution sums to one.
    """
    logp, backoff = [], []
    for n in range(1, c.order + 1):
        cnt = _unigram_counts(c) if n == 1 else c.counts[n - 1].astype(np.float64)  # (G_n,)
        ctx = c.prefix(n)  # (G_n,)
        total = np.bincount(ctx, weights=cnt, minlength=_num_contexts(c, n))  # Σ_v c(hv)
        logp.append(_log10(cnt / total[ctx]))
        if n > 1:
            backoff.append(np.where(total > 0, -np.inf, 0.0))  # order n-1 contexts
    return logp, backoff


def estimate_add_k(c: NGramCounts, k: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Add-k: log10 (c(hw)+k)/(Σ_v c(hv)+k|V|) per n-gram, and per context the floor given to
    every word not seen after it, log10 k/(Σ_v c(hv)+k|V|)."""
    nv = c.vocab_size - 2  # |V|: everything but [PAD] and [SOS]
    logp, floor = [], []
    for n in range(1, c.order + 1):
        cnt = _unigram_counts(c) if n == 1 else c.counts[n - 1].astype(np.float64)
        ctx = c.prefix(n)
        total = np.bincount(ctx, weights=cnt, minlength=_num_contexts(c, n))
        p = (cnt + k) / (total[ctx] + k * nv)  # (G_n,)
        if n == 1:
            p[[PAD_ID, SOS_ID]] = 0.0
        logp.append(_log10(p))
        if n > 1:
            floor.append(_log10(k / (total + k * nv)))  # order n-1 contexts
    return logp, floor


def adjusted_counts(c: NGramCounts) -> list[np.ndarray]:
    """lmplz's adjusted counts a(w_1..w_n) for every order (list index n-1), int64.

    a = c for the highest order and for n-grams starting with <s> (nothing precedes <s>);
    a = N_1+(• w_1..w_n) otherwise: the number of distinct (n+1)-grams v w_1..w_n, i.e. how many
    order-(n+1) n-grams have this n-gram as their suffix; a(<s>) = 0.
    """
    adj = []
    for n in range(1, c.order + 1):
        if n == c.order:
            a = c.counts[n - 1].copy()
        else:
            a = np.bincount(c.suffix[n], minlength=len(c.keys[n - 1])).astype(np.int64)
            starts_bos = c.first_word(n) == SOS_ID
            a[starts_bos] = c.counts[n - 1][starts_bos]
        if n == 1:
            a[SOS_ID] = 0
        adj.append(a)
    return adj


def count_of_counts(a: np.ndarray) -> np.ndarray:
    """t[k] = number of n-grams with (adjusted) count k, for k = 0..4 (t[0] unused)."""
    return np.bincount(np.minimum(a, 5), minlength=6)[:5]


def _discounts_for_order(t: np.ndarray, smoothing: str) -> tuple[tuple[float, float, float] | None, str]:
    """(D1, D2, D3+) from count-of-counts, or (None, why not) as lmplz decides."""
    for k in (1, 2) if smoothing == "kn" else (1, 2, 3):
        if t[k] == 0:
            return None, f"no n-gram has adjusted count {k}"
    y = t[1] / (t[1] + 2.0 * t[2])
    if smoothing == "kn":
        return (y, y, y), ""
    d = tuple(k - (k + 1) * y * t[k + 1] / t[k] for k in (1, 2, 3))
    for k, dk in enumerate(d, start=1):
        if not 0.0 <= dk <= k:
            return None, f"discount D{k} = {dk:.4g} is outside [0, {k}]"
    return d, ""  # type: ignore[return-value]


def parse_discount_fallback(value, smoothing: str) -> tuple[float, float, float] | None:
    """``discount_fallback`` option -> (D1, D2, D3+) or None (off).

    True takes lmplz's defaults 0.5 1 1.5 (``mkn``) or 0.75 (``kn``); a number or up to three
    numbers are used as given, a short list padded with its last value (as lmplz does).
    """
    if value is None or value is False:
        return None
    if value is True:
        vals = LMPLZ_FALLBACK if smoothing == "mkn" else (KN_FALLBACK,)
    elif isinstance(value, numbers.Real):
        vals = (float(value),)
    else:
        vals = tuple(float(v) for v in value)
    limit = 3 if smoothing == "mkn" else 1
    if not 1 <= len(vals) <= limit:
        raise ConfigError(f"discount_fallback for {smoothing} takes 1 to {limit} discounts, got "
                          f"{len(vals)}; pass e.g. {LMPLZ_FALLBACK if limit == 3 else KN_FALLBACK}")
    vals = vals + (vals[-1],) * (3 - len(vals))
    for k, d in enumerate(vals, start=1):
        top = k if smoothing == "mkn" else 1
        if not 0.0 <= d <= top:
            raise ConfigError(f"fallback discount D{k} = {d} must lie in [0, {top}]; pass smaller "
                              "discounts")
    return vals  # type: ignore[return-value]


def kneser_ney_discounts(adj: list[np.ndarray], smoothing: str,
                         fallback: tuple[float, float, float] | None) -> tuple[list, list[bool]]:
    """Per order (D1, D2, D3+) and whether the fallback was used there."""
    return discounts_from_count_of_counts([count_of_counts(a) for a in adj], smoothing, fallback)


def discounts_from_count_of_counts(tables: list[np.ndarray], smoothing: str,
                                   fallback: tuple[float, float, float] | None) -> tuple[list, list[bool]]:
    """Per order (D1, D2, D3+) from its count-of-counts t[0..4] (:func:`count_of_counts`), and
    whether the fallback was used there (also for counts made elsewhere, e.g. by a SQL engine)."""
    out, used = [], []
    name = "modified Kneser-Ney" if smoothing == "mkn" else "Kneser-Ney"
    for n, t in enumerate(tables, start=1):
        d, why = _discounts_for_order(np.asarray(t), smoothing)
        if d is None:
            if fallback is None:
                raise DataError(f"cannot estimate {name} discounts for {n}-grams ({why}: too little "
                                "or artificial data); train on more data, or use lmplz's fallback discounts "
                                "(--discount-fallback, or discount_fallback=True in Python)")
            d = fallback
        out.append([float(x) for x in d])
        used.append(d is fallback)
    return out, used


def estimate_kneser_ney(c: NGramCounts, discounts: list) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Interpolated (modified) Kneser–Ney in backoff form, lmplz's steps 3–4 (module docstring)."""
    adj = adjusted_counts(c)
    nv = c.vocab_size - 2  # |V| counts <unk> and </s>, not <s> (lmplz: "excludes <s>")
    logp, backoff = [], []
    lower = None  # (G_{n-1},) interpolated p of the previous order
    for n in range(1, c.order + 1):
        a = adj[n - 1].astype(np.float64)  # (G_n,)
        d1, d2, d3 = discounts[n - 1]
        d = np.array([0.0, d1, d2, d3])[np.minimum(adj[n - 1], 3)]  # D(a), (G_n,)
        ctx = c.prefix(n)
        size = _num_contexts(c, n)
        denom = np.bincount(ctx, weights=a, minlength=size)  # Σ_w a(hw), exact (integers)
        # γ's numerator from the integer counts N_1, N_2, N_3+ (not a float sum in table order), so
        # any engine that counts them (arlm.models.ngram_sql) gets the same float64, bit for bit
        n_k = [np.bincount(ctx[sel], minlength=size).astype(np.float64)
               for sel in (adj[n - 1] == 1, adj[n - 1] == 2, adj[n - 1] >= 3)]
        with np.errstate(divide="ignore", invalid="ignore"):
            gamma = np.where(denom > 0, (d1 * n_k[0] + d2 * n_k[1] + d3 * n_k[2]) / denom, 0.0)
        p_hat = (a - d) / denom[ctx]
        below = 1.0 / nv if n == 1 else lower[c.suffix[n - 1]]  # p(w | h')
        p = p_hat + gamma[ctx] * below  # (G_n,)
        if n == 1:
            p[[PAD_ID, SOS_ID]] = 0.0
        logp.append(np.minimum(0.0, _log10(p)))  # lmplz clamps rounding above 0
        if n > 1:
            backoff.append(np.where(denom > 0, _log10(gamma), 0.0))  # order n-1 contexts
        lower = p
    return logp, backoff


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------


@dataclass
class NGramState:
    """The last N-1 tokens fed, right-aligned: (B, N-1) long, -1 where fewer were fed."""

    history: Tensor

    def select(self, index: Tensor) -> NGramState:
        return NGramState(self.history[index])


class NGramModel:
    """An N-gram language model (an :class:`~arlm.models.base.ARModel`), numpy inside.

    Build one with :meth:`fit` (counting), :meth:`load` (our folder format) or
    :func:`arlm.interop.arpa.read_arpa`. Tables, per order n = 1..N (list index n-1):

    * ``keys[n-1]``  (G_n,) int64, sorted: ``prefix id * V + last word`` (order 1: ids 0..V-1);
    * ``logp[n-1]``  (G_n,) float64 log10 p(w_n | w_1..w_{n-1});
    * ``backoff[n-1]`` (G_n,) float64 log10 backoff weight, orders 1..N-1 (0 where no context);
    * ``floor[n-1]`` (G_n,) float64 log10 p(unseen word | context), add-k only, orders 1..N-1.
    """

    def __init__(self, vocab: Sequence[str], keys: list[np.ndarray], logp: list[np.ndarray],
                 backoff: list[np.ndarray], *, floor: list[np.ndarray] | None = None,
                 smoothing: str = "arpa", options: dict | None = None,
                 discounts: list | None = None, counts: NGramCounts | None = None):
        self.vocab = list(vocab)
        self.vocab_size = len(self.vocab)
        self.order = len(logp)
        self.keys = [np.ascontiguousarray(k, dtype=np.int64) for k in keys]
        self.logp = [np.ascontiguousarray(p, dtype=np.float64) for p in logp]
        self.backoff = [np.ascontiguousarray(b, dtype=np.float64) for b in backoff]
        self.floor = None if floor is None else [np.ascontiguousarray(f, np.float64) for f in floor]
        self.smoothing = smoothing
        self.options = dict(options or {})
        self.discounts = discounts
        self.counts = counts  # raw counts when built by fit (not saved)
        self._validate()
        self._index: list[KeyIndex | None] = [None] * self.order
        self._offsets: list[np.ndarray | None] = [None] * self.order
        self._words: list[np.ndarray | None] = [None] * self.order
        self._has_children: list[np.ndarray | None] = [None] * self.order
        self._vocab_index: dict[str, int] | None = None

    def _validate(self) -> None:
        V, N = self.vocab_size, self.order
        if V < 4:
            raise MismatchError(f"the vocabulary has {V} entries but must start with the 4 special "
                                "tokens [PAD] [SOS] [EOS] [UNK]; use a vocabulary from arlm's tokenizers")
        if N < 1 or len(self.keys) != N or len(self.backoff) != N - 1:
            raise FormatError(f"an order-{N} n-gram model needs {N} key, {N} logp and {N - 1} "
                              "backoff tables; the model files are inconsistent, save it again")
        if self.floor is not None and len(self.floor) != N - 1:
            raise FormatError("an add-k model needs a floor table per context order; save it again")
        if len(self.logp[0]) != V or not np.array_equal(self.keys[0], np.arange(V)):
            raise MismatchError(f"the unigram table has {len(self.logp[0])} entries but the "
                                f"vocabulary has {V}; load the model with its own vocabulary")
        for n in range(1, N + 1):
            g = len(self.keys[n - 1])
            tables = [self.logp[n - 1]] + ([self.backoff[n - 1]] if n < N else [])
            tables += [self.floor[n - 1]] if self.floor is not None and n < N else []
            if any(len(t) != g for t in tables):
                raise FormatError(f"the {n}-gram tables have different lengths; save the model again")
            if n > 1 and g:
                k = self.keys[n - 1]
                # memory-mapped keys (ngram_binary) are not scanned whole: that would read the file
                mapped = isinstance(k, np.memmap) or isinstance(k.base, np.memmap)
                unsorted = False if mapped else (np.diff(k) <= 0).any()
                if unsorted or k[0] < 0 or k[-1] // V >= len(self.keys[n - 2]):
                    raise FormatError(f"the {n}-gram keys are not sorted or point to missing "
                                      f"{n - 1}-grams; save the model again")

    # ----- construction ----------------------------------------------------------------------

    @classmethod
    def fit(cls, data: np.ndarray | Sequence[np.ndarray], order: int, vocab: Sequence[str],
            smoothing: str = "mkn", *, k: float | None = None,
            discount_fallback: bool | float | Sequence[float] = False) -> NGramModel:
        """Count ``data`` (``[SOS] … [EOS]`` id sequences: a flat array or a list of 1-D arrays)
        and estimate an order-``order`` model over ``vocab`` (id -> token string).

        ``k``: the added count of ``add-k`` (default 1; ``laplace`` is k = 1).
        ``discount_fallback``: ``kn``/``mkn`` only; discounts to use for orders where they cannot be
        estimated (True: lmplz's 0.5 1 1.5, or 0.75 for ``kn``); off by default, as in lmplz.
        """
        if isinstance(order, bool) or not isinstance(order, numbers.Integral) or order < 1:
            raise ConfigError(f"order must be an integer ≥ 1, got {order!r}; use e.g. order=3")
        if smoothing not in SMOOTHINGS:
            raise ConfigError(f"unknown smoothing {smoothing!r}; choose one of {', '.join(SMOOTHINGS)}")
        if k is not None and smoothing not in ("add-k", "laplace"):
            raise ConfigError(f"k is the added count of add-k smoothing, not of {smoothing}; "
                              "drop k or use smoothing='add-k'")
        if smoothing == "laplace" and k not in (None, 1, 1.0):
            raise ConfigError("laplace smoothing is add-k with k = 1; use smoothing='add-k' for "
                              f"k = {k}")
        if discount_fallback not in (False, None) and smoothing not in ("kn", "mkn"):
            raise ConfigError("discount_fallback applies to kn and mkn smoothing only; drop it")
        if len(vocab) < 4:
            raise MismatchError(f"the vocabulary has {len(vocab)} entries but must start with the 4 "
                                "special tokens [PAD] [SOS] [EOS] [UNK]; use arlm's tokenizers")
        order = int(order)
        counts = count_ngrams(data, order, len(vocab))
        options: dict = {}
        floor, discounts = None, None
        if smoothing == "mle":
            logp, backoff = estimate_mle(counts)
        elif smoothing in ("add-k", "laplace"):
            k = 1.0 if k is None else float(k)
            if not k > 0:
                raise ConfigError(f"add-k needs k > 0, got {k}; use smoothing='mle' for k = 0")
            options["k"] = k
            logp, floor = estimate_add_k(counts, k)
            backoff = [np.zeros(len(f)) for f in floor]
        else:
            fallback = parse_discount_fallback(discount_fallback, smoothing)
            options["discount_fallback"] = None if fallback is None else list(fallback)
            values, used = kneser_ney_discounts(adjusted_counts(counts), smoothing, fallback)
            logp, backoff = estimate_kneser_ney(counts, values)
            discounts = [{"order": n, "D": d if smoothing == "mkn" else d[:1], "fallback": u}
                         for n, (d, u) in enumerate(zip(values, used, strict=True), start=1)]
        return cls(vocab, counts.keys, logp, backoff, floor=floor, smoothing=smoothing,
                   options=options, discounts=discounts, counts=counts)

    # ----- derived tables (built on first use) ------------------------------------------------

    def _key_index(self, n: int) -> KeyIndex:
        """The hash index of the order-n keys, built at its first use."""
        if self._index[n - 1] is None:
            self._index[n - 1] = KeyIndex(self.keys[n - 1])
        return self._index[n - 1]

    def _find(self, n: int, q: np.ndarray) -> np.ndarray:
        """Ids of order-n keys ``q`` (-1 where absent)."""
        return self._key_index(n).find(q)

    def _child_offsets(self, n: int) -> np.ndarray:
        """(G_{n-1}+1,) children of (n-1)-gram i are order-n ids off[i]:off[i+1]."""
        if self._offsets[n - 1] is None:
            self._offsets[n - 1] = child_offsets(self.keys[n - 1], len(self.keys[n - 2]),
                                                 self.vocab_size)
        return self._offsets[n - 1]

    def _last_words(self, n: int) -> np.ndarray:
        if self._words[n - 1] is None:
            self._words[n - 1] = self.keys[n - 1] % self.vocab_size
        return self._words[n - 1]

    def _is_context(self, n: int) -> np.ndarray:
        """(G_n,) bool: the n-gram has at least one (n+1)-gram child (n < N)."""
        if self._has_children[n - 1] is None:
            self._has_children[n - 1] = np.diff(self._child_offsets(n + 1)) > 0
        return self._has_children[n - 1]

    # ----- the scoring core (numpy, log10) ----------------------------------------------------

    def _ngram_ids(self, tok: np.ndarray) -> list[np.ndarray]:
        """tok (R, L) int64 (-1 = no token) -> per order n, (R, L) id of the n-gram ending at each
        position (-1 if absent): id_n(t) = find(id_{n-1}(t-1) * V + x_t)."""
        ids = [np.where(tok >= 0, tok, -1)]  # order 1 is dense
        for n in range(2, self.order + 1):
            prev, word = ids[-1][:, :-1], tok[:, 1:]
            out = np.full(tok.shape, -1, dtype=np.int64)
            ok = (prev >= 0) & (word >= 0)
            if ok.any() and len(self.keys[n - 1]):
                out[:, 1:][ok] = self._find(n, prev[ok] * self.vocab_size + word[ok])
            ids.append(out)
            if not ok.any():
                ids.extend(np.full(tok.shape, -1, dtype=np.int64) for _ in range(n + 1, self.order + 1))
                break
        return ids

    def _deepest_context(self, ctx: list[np.ndarray], rows: int) -> np.ndarray:
        """add-k: per row the order of the longest context with a continuation (0 = none)."""
        deepest = np.zeros(rows, dtype=np.int64)
        for k in range(1, self.order):
            h = ctx[k - 1]
            ok = h >= 0
            ok[ok] = self._is_context(k)[h[ok]]
            deepest[ok] = k
        return deepest

    def _score10(self, tok: np.ndarray) -> np.ndarray:
        """tok (R, L) -> (R, L-1) log10 p(x_{t+1} | x_{≤t}); x_0 may be -1 (no context)."""
        ids = self._ngram_ids(tok)
        target = tok[:, 1:]  # (R, L-1)
        lp = self.logp[0][target]  # order-1 match always exists (dense unigrams)
        if self.floor is None:  # backoff form
            matched = np.ones(target.shape, dtype=np.int64)  # order of the longest match
            for n in range(2, self.order + 1):
                j = ids[n - 1][:, 1:]
                f = j >= 0
                lp[f] = self.logp[n - 1][j[f]]
                matched[f] = n
            for k in range(1, self.order):  # contexts of length ≥ match back off
                h = ids[k - 1][:, :-1]
                use = (h >= 0) & (matched <= k)
                lp[use] += self.backoff[k - 1][h[use]]
        else:  # add-k: the longest context with a continuation decides
            ctx = [ids[k - 1][:, :-1] for k in range(1, self.order)]
            deepest = self._deepest_context([h.reshape(-1) for h in ctx], target.size)
            deepest = deepest.reshape(target.shape)
            for k in range(1, self.order):
                sel = deepest == k
                j = ids[k][:, 1:][sel]  # the (k+1)-gram h_k x_{t+1}, if seen
                floor = self.floor[k - 1][ctx[k - 1][sel]]
                lp[sel] = np.where(j >= 0, self.logp[k][np.maximum(j, 0)], floor)
        lp[(target == PAD_ID) | (target == SOS_ID)] = -np.inf
        return lp

    def _score10_chunked(self, tok: np.ndarray) -> np.ndarray:
        """Like :meth:`_score10`, in pieces of about CHUNK positions (windows overlap N-1 tokens)."""
        B, T = tok.shape
        out = np.empty((B, max(T - 1, 0)), dtype=np.float64)
        rows = max(1, CHUNK // max(T, 1))
        cols = max(1, CHUNK // rows)
        for r0 in range(0, B, rows):
            for c0 in range(0, T - 1, cols):
                lo = max(0, c0 - (self.order - 1))
                window = tok[r0 : r0 + rows, lo : c0 + cols + 1]
                out[r0 : r0 + rows, c0 : c0 + cols] = self._score10(window)[:, c0 - lo :]
        return out

    def _dist10(self, ctx: list[np.ndarray], rows: int) -> np.ndarray:
        """Full next-token distributions (R, V) log10, given ctx[k-1] (R,) = id of the context of
        length k (-1 if absent), k = 1..N-1: start from the unigrams; per context order add its
        backoff, then overwrite its children with their stored probabilities."""
        dist = np.tile(self.logp[0], (rows, 1))  # (R, V)
        if self.floor is None:
            for k in range(1, self.order):
                h = ctx[k - 1]
                r = np.flatnonzero(h >= 0)
                if r.size == 0:
                    break  # contexts are prefix-closed: no longer one exists either
                dist[r] += self.backoff[k - 1][h[r]][:, None]
                self._set_children(dist, r, h[r], k + 1)
        else:
            deepest = self._deepest_context(ctx, rows)
            for k in range(1, self.order):
                r = np.flatnonzero(deepest == k)
                if r.size:
                    dist[r] = self.floor[k - 1][ctx[k - 1][r]][:, None]
                    self._set_children(dist, r, ctx[k - 1][r], k + 1)
        dist[:, [PAD_ID, SOS_ID]] = -np.inf
        return dist

    # ----- one row: the same numbers by scalar lookups (a decoding step at batch size 1) ----------
    #
    # The vectorised core above pays ~8 numpy calls per order and row set whatever the rows; one row
    # at a time (``step`` while decoding one sequence, a speculative draft's proposals) the same
    # lookups as plain indexing cost a fraction of that: a char 7-gram's step went from ~430 µs to
    # ~75 µs (docs/fast_decoding.md). The context ids are found again from the state's N-1 tokens at
    # every step ((N-1)(N-2)/2 lookups, 15 for N = 7): the state stays the last N-1 tokens, the same
    # for both paths. Tests compare both paths' distributions for equality.

    def _id_one(self, n: int, key: int) -> int:
        """The id of the order-n key ``key`` (≥ 0), -1 if absent: :meth:`_find` for one key."""
        return self._key_index(n).find_one(key)

    def _context_ids_one(self, window: list[int]) -> list[int]:
        """``window``: the last N-1 tokens (-1 = none) -> per k = 1..N-1 the id of the k-gram ending at
        its last token (-1 if absent), chained as in :meth:`_ngram_ids`:
        id_k(t) = id(id_{k-1}(t-1)·V + x_t)."""
        V, ids = self.vocab_size, []  # ids[k-1]: of the k-gram ending at the current position
        for x in window:
            if x < 0:
                ids = []
                continue
            new = [x]
            for k in range(2, min(len(ids) + 1, self.order - 1) + 1):
                prefix = ids[k - 2]
                new.append(self._id_one(k, prefix * V + x) if prefix >= 0 else -1)
            ids = new
        return ids + [-1] * (self.order - 1 - len(ids))

    def _extend_ids_one(self, ids: list[int], x: int) -> list[int]:
        """The context ids after one more token x, from those before it (``_context_ids_one``'s
        recurrence for one step: N-2 lookups, not (N-1)(N-2)/2)."""
        V = self.vocab_size
        return [x] + [self._id_one(k, ids[k - 2] * V + x) if ids[k - 2] >= 0 else -1
                      for k in range(2, self.order)]

    def _dist10_one(self, ctx: list[int]) -> np.ndarray:
        """:meth:`_dist10` for one row: ctx[k-1] = id of its context of length k -> (V,) log10."""
        dist = self.logp[0].copy()  # (V,)
        if self.floor is None:
            for k in range(1, self.order):
                h = ctx[k - 1]
                if h < 0:
                    break
                dist += self.backoff[k - 1][h]
                self._set_children_one(dist, h, k + 1)
        else:
            deepest = 0
            for k in range(1, self.order):
                h = ctx[k - 1]
                if h >= 0 and self._is_context(k)[h]:
                    deepest = k
            if deepest:
                h = ctx[deepest - 1]
                dist[:] = self.floor[deepest - 1][h]
                self._set_children_one(dist, h, deepest + 1)
        dist[[PAD_ID, SOS_ID]] = -np.inf
        return dist

    def _set_children_one(self, dist: np.ndarray, parent: int, n: int) -> None:
        """dist[w] = logp(hw) for every order-n child hw of the context h = ``parent``."""
        off = self._child_offsets(n)
        start, end = off[parent], off[parent + 1]
        if end > start:
            dist[self._last_words(n)[start:end]] = self.logp[n - 1][start:end]

    def _set_children(self, dist: np.ndarray, rows: np.ndarray, parents: np.ndarray, n: int) -> None:
        """dist[row, w] = logp(hw) for every order-n child hw of each row's context h."""
        off = self._child_offsets(n)
        start, length = off[parents], off[parents + 1] - off[parents]  # (r,)
        total = int(length.sum())
        if total == 0:
            return
        row = np.repeat(rows, length)  # (total,)
        idx = np.repeat(start - (np.cumsum(length) - length), length) + np.arange(total)
        dist[row, self._last_words(n)[idx]] = self.logp[n - 1][idx]

    # ----- the ARModel interface (torch tensors, natural log) ---------------------------------

    def _check_tokens(self, tokens) -> np.ndarray:
        return token_ids_array(tokens, self.vocab_size)

    def log_probs(self, tokens: Tensor) -> Tensor:
        """tokens (B, T) -> (B, T, V) float64: out[b, t] = log p(· | x_{≤t}) (natural log)."""
        tok = self._check_tokens(tokens)
        B, T = tok.shape
        ids = self._ngram_ids(tok)
        ctx = [ids[k - 1].reshape(-1) for k in range(1, self.order)]  # context ending at each t
        dist = self._dist10(ctx, B * T) * LN10  # (B*T, V)
        return torch.from_numpy(dist.reshape(B, T, self.vocab_size))

    def score(self, tokens: Tensor) -> Tensor:
        """tokens (B, T) -> (B, T-1) float64 log p(x_{t+1} | x_{≤t}); never builds (B, T, V)."""
        return torch.from_numpy(self._score10_chunked(self._check_tokens(tokens)) * LN10)

    def start(self, batch_size: int) -> NGramState:
        return NGramState(torch.full((batch_size, self.order - 1), -1, dtype=torch.long))

    def step(self, tokens: Tensor, state: NGramState) -> tuple[Tensor, NGramState]:
        """Feed tokens (B, t) -> (next-token log-probs (B, V) float64, state with the last N-1)."""
        new = self._check_tokens(tokens)
        seq = np.concatenate([state.history.numpy().astype(np.int64), new], axis=1)
        seq = seq[:, seq.shape[1] - (self.order - 1) :]  # (B, N-1): all a context can use
        state = NGramState(torch.from_numpy(np.ascontiguousarray(seq)))
        if len(seq) == 1 and self.order > 1:  # one row: scalar lookups, the same numbers
            dist = self._dist10_one(self._context_ids_one(seq[0].tolist())) * LN10  # (V,)
            return torch.from_numpy(dist[None]), state
        ctx = []
        if self.order > 1:
            ids = self._ngram_ids(seq)
            ctx = [ids[k - 1][:, -1] for k in range(1, self.order)]
        dist = self._dist10(ctx, len(seq)) * LN10
        return torch.from_numpy(dist), state

    def greedy_continuation(self, context: Sequence[int], k: int, stop: int | None = None,
                            memo: dict | None = None) -> list[int]:
        """The model's own greedy continuation of ``context`` (token ids): k tokens, each the argmax of
        p(· | context, the tokens before it) — what k greedy ``step`` calls would choose (ties to the
        lowest id, as ``argmax``), ending early after ``stop`` if it is chosen.

        A speculative draft's proposals: one row, no state and no tensors; the context ids move one
        token at a time (N-2 lookups a token, not the (N-1)(N-2)/2 of a ``step``). ``memo``: a dict
        the caller keeps between calls (context ids -> the argmax after them), so that a context seen
        before costs a lookup, not a distribution (greedy text repeats itself)."""
        if k < 1:
            return []
        n = self.order - 1  # the tokens a context can use: only they are read (not the whole context)
        tail = list(context[max(len(context) - n, 0):]) if n else []
        tail = self._check_tokens([tail])[0].tolist() if tail else []
        ids = self._context_ids_one([-1] * (n - len(tail)) + tail)
        out: list[int] = []
        for i in range(k):
            key = tuple(ids) if memo is not None else None
            x = memo.get(key) if key is not None else None
            if x is None:
                x = int(self._dist10_one(ids).argmax())  # of log10 p(· | context, out) (V,)
                if key is not None:
                    memo[key] = x
            out.append(x)
            if i == k - 1 or x == stop:
                break
            ids = self._extend_ids_one(ids, x)
        return out

    # ----- a friendly API ---------------------------------------------------------------------

    def encode(self, words: str | Sequence[str | int]) -> np.ndarray:
        """Words (a whitespace-separated string or a list of strings/ids) -> ids; unknown -> [UNK].

        The special tokens are recognised by their vocabulary strings and by KenLM's spelling
        (``<s>``, ``</s>``, ``<unk>``).
        """
        if self._vocab_index is None:
            index = {"<s>": SOS_ID, "</s>": EOS_ID, "<unk>": UNK_ID}
            index |= {w: i for i, w in enumerate(self.vocab) if i != PAD_ID}
            self._vocab_index = index
        if isinstance(words, str):
            words = words.split()
        return np.array([w if isinstance(w, numbers.Integral) else self._vocab_index.get(w, UNK_ID)
                         for w in words], dtype=np.int64)

    def score_sentence(self, sentence: str | Sequence[str | int], bos: bool = True,
                       eos: bool = True) -> float:
        """Total log10 probability of a sentence, as ``kenlm.Model.score(sentence, bos, eos)``."""
        ids = self.encode(sentence)
        tok = np.concatenate([[SOS_ID if bos else -1], ids, [EOS_ID] if eos else []]).astype(np.int64)
        return float(self._score10(tok[None])[0].sum())

    def perplexity(self, sentence: str | Sequence[str | int]) -> float:
        """10^(-log10 p(sentence) / (words + 1)), as ``kenlm.Model.perplexity``."""
        n = len(self.encode(sentence)) + 1
        return 10.0 ** (-self.score_sentence(sentence) / n)

    def logprob(self, word: str | int, context: Sequence[str | int] = ()) -> float:
        """Natural-log p(word | context); the context is used as given (start it with ``"<s>"``,
        ``"[SOS]"`` or id 1 for the start of a sentence)."""
        ids = np.concatenate([[-1], self.encode([*context, word])]).astype(np.int64)
        return float(self._score10(ids[None])[0, -1]) * LN10

    @property
    def num_ngrams(self) -> list[int]:
        """n-grams per order as an ARPA file lists them (unigrams: every token but [PAD])."""
        return [self.vocab_size - 1] + [len(k) for k in self.keys[1:]]

    def ngram_words(self, n: int) -> np.ndarray:
        """(G_n, n) int64: the token ids of every n-gram of order n, in table order."""
        return ngram_words(self.keys, n, self.vocab_size)

    def __repr__(self) -> str:
        return (f"NGramModel(order={self.order}, smoothing={self.smoothing!r}, "
                f"vocab_size={self.vocab_size}, ngrams={self.num_ngrams})")

    # ----- save / load ------------------------------------------------------------------------

    def save(self, folder: str | Path, storage: str = "safetensors") -> Path:
        """Write the model folder atomically: config.json, the tables, vocab.json.

        ``storage``: ``safetensors`` (one file, read into memory on load) or ``mmap`` (one ``.npy``
        per table and the hash tables, memory-mapped on load: :mod:`arlm.models.ngram_binary`).
        """
        with atomic_dir(folder) as tmp:
            self.save_files(tmp, storage)
        return Path(folder)

    def save_files(self, folder: str | Path, storage: str = "safetensors") -> None:
        """Write the model's files into an existing folder (e.g. one of ``atomic_dir``, where a
        caller adds tokenizer.json)."""
        from safetensors.numpy import save_file

        folder = Path(folder)
        extra: dict = {}
        if storage == ngram_binary.STORAGE:
            if self.floor is not None:
                raise ConfigError(f"{self.smoothing} models have no memory-mapped form; save them with "
                                  "storage='safetensors'")
            extra = {"storage": storage,
                     "home_slots": ngram_binary.write_tables(folder, self.keys, self.logp, self.backoff)}
        elif storage == "safetensors":
            tensors = {f"logp.{n}": self.logp[n - 1] for n in range(1, self.order + 1)}
            tensors |= {f"keys.{n}": self.keys[n - 1] for n in range(2, self.order + 1)}
            tensors |= {f"backoff.{n}": self.backoff[n - 1] for n in range(1, self.order)}
            if self.floor is not None:
                tensors |= {f"floor.{n}": self.floor[n - 1] for n in range(1, self.order)}
            save_file(tensors, str(folder / "model.safetensors"))
        else:
            raise ConfigError(f"unknown n-gram storage {storage!r}; use safetensors or mmap")
        self.write_config(folder, extra)

    def write_config(self, folder: Path, extra: dict | None = None) -> None:
        """config.json (``extra`` entries added) and vocab.json of this model, into ``folder``."""
        write_config(folder, self.vocab, self.order, self.smoothing, self.options, self.discounts,
                     self.num_ngrams, "backoff" if self.floor is None else "floor", extra)

    @classmethod
    def load(cls, folder: str | Path, vocab: Sequence[str] | None = None) -> NGramModel:
        """Read a folder written by :meth:`save`; ``vocab`` overrides vocab.json (lengths must match)."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        folder = Path(folder)
        config = read_json(folder / "config.json", "the model configuration", "save the model again")
        if not isinstance(config, dict) or config.get("family") != "ngram":
            family = config.get("family") if isinstance(config, dict) else None
            raise MismatchError(f"{folder} holds a {family!r} model, not an n-gram model; load it "
                                "with that family's loader")
        try:
            order, vsize = int(config["order"]), int(config["vocab_size"])
            floor_mode = config.get("scoring", "backoff") == "floor"
        except (KeyError, TypeError, ValueError) as e:
            raise FormatError(f"{folder / 'config.json'} lacks a valid {e}; save the model again") from e
        indexes = None
        if config.get("storage") == ngram_binary.STORAGE:
            keys, logp, backoff, indexes = ngram_binary.read_tables(folder, order, vsize,
                                                                    config.get("home_slots"))
            floor = None
        else:
            path = folder / "model.safetensors"
            if not path.is_file():
                raise FormatError(f"{path} is missing; save the model again")
            try:
                t = load_file(str(path))
            except (SafetensorError, OSError, ValueError) as e:
                raise FormatError(f"{path} is truncated or corrupt ({e}); save the model again") from e
            try:
                logp = [t[f"logp.{n}"] for n in range(1, order + 1)]
                keys = [np.arange(vsize, dtype=np.int64)] + [t[f"keys.{n}"] for n in range(2, order + 1)]
                backoff = [t[f"backoff.{n}"] for n in range(1, order)]
                floor = [t[f"floor.{n}"] for n in range(1, order)] if floor_mode else None
            except KeyError as e:
                raise FormatError(f"{path} lacks the table {e}; save the model again") from e
        if vocab is None:
            vocab = read_json(folder / "vocab.json", "the vocabulary", "save the model again")
            if not isinstance(vocab, list) or not all(isinstance(w, str) for w in vocab):
                raise FormatError(f"{folder / 'vocab.json'} is not a list of strings; save the "
                                  "model again")
        if len(vocab) != vsize:
            raise MismatchError(f"the vocabulary has {len(vocab)} tokens but the model was trained "
                                f"with {vsize}; use the tokenizer saved with the model")
        model = cls(vocab, keys, logp, backoff, floor=floor, smoothing=str(config.get("smoothing")),
                    options=config.get("options") or {}, discounts=config.get("discounts"))
        if indexes is not None:
            model._index = indexes  # the saved hash tables, memory-mapped
        return model


def write_config(folder: Path, vocab: Sequence[str], order: int, smoothing: str, options: dict,
                 discounts: list | None, num_ngrams: list[int], scoring: str = "backoff",
                 extra: dict | None = None) -> None:
    """An n-gram model folder's config.json (``extra`` entries added) and vocab.json."""
    config = {"family": "ngram", "format_version": FORMAT_VERSION, "order": order,
              "smoothing": smoothing, "options": options, "discounts": discounts,
              "vocab_size": len(vocab), "num_ngrams": num_ngrams, "log_base": 10,
              "scoring": scoring, **(extra or {})}
    with atomic_write(Path(folder) / "config.json") as f:
        json.dump(config, f, indent=2)
    with atomic_write(Path(folder) / "vocab.json") as f:
        json.dump(list(vocab), f, ensure_ascii=False)


"""What the decoding experiment measures on a generated text beyond :mod:`arlm.evaluate.metrics`:
loops (repetition), repeated n-grams along the text, and words that exist.

**Loops** (Holtzman et al. 2020's "Repetition": the share of generations that end in a repeating
loop). A span of tokens x_a..x_b is *periodic with period p* when x_t = x_{t-p} for every t in
a+p..b; it is a *loop* when p ≤ ``MAX_PERIOD`` and the span holds at least two full periods and at
least ``MIN_LOOP_TOKENS`` tokens (so "the the" is not a loop, sixteen "my lord, " in a row are). A
token is *inside a loop* when some loop covers it; a generation *ends in a loop* when its last token
is inside one. Computed per period p from the runs of x_t = x_{t-p}: a run of r matches ending at b
is the periodic span b-r-p+1..b, of r + p tokens.

**Repeated n-grams along the text**: at position t (0-based, t ≥ n-1) the n-gram x_{t-n+1..t}
*repeats* when it occurred earlier in the same text; its share by position is Welleck et al.'s
seq-rep-n resolved in position.

**Words**: lowercase letter runs with inner apostrophes (``o'er``, ``'tis`` → ``tis``), the unit of
Self-BLEU, Zipf and distinct-n here. A word is *known* when it occurs in the training split; the
*non-word rate* is the share of a text's words that do not (a misspelling a char or subword model
invents is a non-word, and counted apart instead of inflating diversity). distinct-n over known
words counts only the n-grams whose n words are all known.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

MAX_PERIOD = 64  # the longest repeated phrase counted as a loop, in tokens
MIN_LOOP_TOKENS = 32  # a loop covers at least this many tokens (and two periods)
REPEAT_N = 4  # the n of repeated n-grams along the text
WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")

# The decoders compared, the rows of every table (read by the experiment and its report alike).
HUMAN = "human"
TEMPERATURES = (0.5, 0.7, 0.8, 0.9)  # + pure sampling (τ = 1): the temperature sweep
TOP_PS = (0.5, 0.7, 0.8, 0.9, 0.95)  # + pure sampling (p = 1): the top-p sweep
# (label, DecodingConfig settings): Holtzman's rows that decode/ has (no stochastic beam), the sweeps,
# and min-p
DECODERS: list[tuple[str, dict[str, Any]]] = [
    ("greedy", {"strategy": "greedy"}),
    ("beam 16", {"strategy": "beam", "num_beams": 16, "num_samples": 1}),
    ("pure sampling", {"strategy": "sample", "temperature": 1.0}),
    *[(f"τ={t}", {"strategy": "sample", "temperature": t}) for t in TEMPERATURES],
    *[(f"top-p {p}", {"strategy": "top-p", "top_p": p}) for p in TOP_PS],
    ("top-k 40", {"strategy": "top-k", "top_k": 40}),
    ("top-k 640", {"strategy": "top-k", "top_k": 640}),
    ("top-k 40, τ=0.7", {"strategy": "top-k", "top_k": 40, "temperature": 0.7}),
    ("min-p 0.05", {"strategy": "sample", "min_p": 0.05}),
]
DETERMINISTIC = ("greedy", "beam 16")  # one run each: seeds change nothing
EXAMPLE_DECODERS = ("greedy", "beam 16", "pure sampling", "top-p 0.95")


def loop_mask(tokens: Sequence[int], max_period: int = MAX_PERIOD,
              min_tokens: int = MIN_LOOP_TOKENS) -> np.ndarray:
    """(T,) bool: which tokens lie inside a loop (see the module docstring)."""
    x = np.asarray(tokens, dtype=np.int64)
    n = len(x)
    inside = np.zeros(n, dtype=bool)
    for p in range(1, min(max_period, n // 2) + 1):
        match = np.concatenate([np.zeros(p, dtype=bool), x[p:] == x[:-p]])  # (T,): x_t == x_{t-p}
        # runs of True: starts and ends (exclusive)
        edges = np.diff(np.concatenate([[0], match.astype(np.int8), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            r = e - s  # matches: the span s-p..e-1 has r + p tokens and (r + p) / p periods
            if r >= p and r + p >= min_tokens:
                inside[s - p : e] = True
    return inside


def ends_in_loop(tokens: Sequence[int], max_period: int = MAX_PERIOD,
                 min_tokens: int = MIN_LOOP_TOKENS) -> bool:
    """Whether the text's last token is inside a loop."""
    return bool(len(tokens)) and bool(loop_mask(tokens, max_period, min_tokens)[-1])


def repeated_ngram_mask(tokens: Sequence[int], n: int = REPEAT_N) -> np.ndarray:
    """(T,) float: 1 where the n-gram ending at t occurred earlier in the text, 0 where not, NaN for the
    first n - 1 positions (no n-gram ends there)."""
    out = np.full(len(tokens), np.nan)
    seen: set[tuple[int, ...]] = set()
    for t in range(n - 1, len(tokens)):
        gram = tuple(int(i) for i in tokens[t - n + 1 : t + 1])
        out[t] = gram in seen
        seen.add(gram)
    return out


def by_position(masks: Iterable[np.ndarray], length: int, bin_size: int) -> list[float | None]:
    """Mean of per-token values (NaN: no value) over texts, in bins of ``bin_size`` positions over the
    first ``length`` positions -> one value per bin (None where a bin has no value)."""
    total = np.zeros(length)
    count = np.zeros(length)
    for m in masks:
        m = np.asarray(m, dtype=float)[:length]
        ok = ~np.isnan(m)
        total[: len(m)][ok] += m[ok]
        count[: len(m)][ok] += 1
    out: list[float | None] = []
    for start in range(0, length, bin_size):
        c = count[start : start + bin_size].sum()
        out.append(None if c == 0 else float(total[start : start + bin_size].sum() / c))
    return out


def words(text: str) -> list[str]:
    """The words of ``text``: lowercase letter runs with inner apostrophes."""
    return WORD.findall(text.lower())


def vocabulary(texts: Iterable[str]) -> set[str]:
    """Every word of ``texts`` (the training split's: what counts as a known word)."""
    known: set[str] = set()
    for text in texts:
        known.update(words(text))
    return known


def non_word_rate(texts: Sequence[str], known: set[str]) -> float:
    """The share of the texts' words not in ``known`` (0 when there are no words)."""
    all_words = [w for t in texts for w in words(t)]
    return sum(w not in known for w in all_words) / len(all_words) if all_words else 0.0


def distinct_known(texts: Sequence[str], n: int, known: set[str]) -> float:
    """distinct-n over the n-grams (inside one text) whose n words are all known: unique / total
    (0 when there are none)."""
    unique: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        w = words(text)
        ok = [x in known for x in w]
        for i in range(len(w) - n + 1):
            if all(ok[i : i + n]):
                unique.add(tuple(w[i : i + n]))
                total += 1
    return len(unique) / total if total else 0.0

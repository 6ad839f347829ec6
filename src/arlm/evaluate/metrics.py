"""Text-quality metrics (F17, F18): accuracy against references, diversity and repetition of generations.

Accuracy against references (one reference per hypothesis), computed by the reference libraries:

* BLEU: corpus BLEU-4 of ``sacrebleu`` with its defaults (13a tokenizer, ``exp`` smoothing).
* chrF: ``sacrebleu``'s chrF (character 6-grams, β = 2).
* ROUGE-1/2/L: F-measures of ``rouge-score``, averaged over the hypothesis/reference pairs.

Properties of the generated texts alone, written here because they are the chapter's subject:

* distinct-n (Li et al. 2016), n = 1, 2, 3: unique n-grams / total n-grams over the whole set.
* self-BLEU (Zhu et al. 2018, Texygen): each text's BLEU-4 against all the other texts, averaged.
* repeat_4gram: per text, the share of its 4-grams already seen earlier in that text, averaged.
* Zipf coefficient (Holtzman et al. 2020): the exponent s of f ∝ r^-s, fitted on the token counts.

Scales: BLEU, chrF, ROUGE and self-BLEU are on 0-100, the scale ``sacrebleu`` prints and papers report
(ROUGE is ``rouge-score``'s F-measure × 100); distinct-n and repeat_4gram are fractions in [0, 1]; the
Zipf coefficient is an exponent (about 1 for natural text).

The hand-written metrics work on tokens: whitespace split by default, or any ``tokenize`` callable
(``tokenize=list`` gives characters, for char-level models). n-grams never cross the boundary between
two texts. Degenerate input gets a defined value: an empty list of texts, or hypotheses and references
of different counts, raise :class:`~arlm.errors.DataError`; a ratio with nothing to count (distinct-n
or repeat_4gram when no text is n tokens long) is 0.0; a statistic that does not exist for the input
(self-BLEU of a single text, a Zipf fit over fewer than two distinct tokens) is NaN.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU, CHRF

from arlm.errors import ConfigError, DataError

Tokenize = Callable[[str], Sequence[str]]

DISTINCT_ORDERS = (1, 2, 3)
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
SELF_BLEU_SMOOTH_VALUE = 0.1  # Chen & Cherry's method 1 ε, the value NLTK's method1 (Texygen) uses
SELF_BLEU_MAX_TEXTS = 500  # Texygen's sample_size: self-BLEU costs O(N²) sentence BLEUs
ZIPF_MAX_RANK = 5000  # ranks 1..5000, the range of Holtzman et al.'s fit


def _whitespace(text: str) -> list[str]:
    return text.split()


def _check_texts(texts: Sequence[str], what: str) -> None:
    if len(texts) == 0:
        raise DataError(f"No {what} to evaluate; pass a non-empty list of strings.")


def _check_pairs(hyps: Sequence[str], refs: Sequence[str]) -> None:
    if len(hyps) != len(refs):
        raise DataError(f"Got {len(hyps)} hypotheses but {len(refs)} references; pass one reference "
                        f"per hypothesis.")
    _check_texts(hyps, "hypotheses")


def _ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


# ---------------------------------------------------------------------------------------------------
# Accuracy against references (library implementations)
# ---------------------------------------------------------------------------------------------------


def bleu(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Corpus BLEU-4 of ``sacrebleu`` (0-100) with one reference per hypothesis.

    BLEU = BP · exp(Σ_{n=1..4} ¼ log p_n), p_n the clipped n-gram precision pooled over the corpus and
    BP = min(1, exp(1 - r/c)) for reference length r and hypothesis length c.
    """
    _check_pairs(hyps, refs)
    return float(BLEU().corpus_score(list(hyps), [list(refs)]).score)


def chrf(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Corpus chrF of ``sacrebleu`` (0-100): character n-gram F-score, n ≤ 6, recall weighted by β = 2."""
    _check_pairs(hyps, refs)
    return float(CHRF().corpus_score(list(hyps), [list(refs)]).score)


def rouge(hyps: Sequence[str], refs: Sequence[str], use_stemmer: bool = False) -> dict[str, float]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F-measures of ``rouge-score``, mean over the pairs, on 0-100.

    ``rouge-score`` lowercases and keeps only ASCII letters and digits, so text in other scripts scores
    0; ``use_stemmer`` applies its Porter stemmer. Keys: ``rouge1``, ``rouge2``, ``rougeL``.
    """
    _check_pairs(hyps, refs)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for hyp, ref in zip(hyps, refs, strict=True):
        scores = scorer.score(ref, hyp)  # rouge-score takes (target, prediction)
        for name in ROUGE_TYPES:
            totals[name] += scores[name].fmeasure
    return {name: 100.0 * total / len(hyps) for name, total in totals.items()}


# ---------------------------------------------------------------------------------------------------
# Diversity and repetition of generated texts (hand-written)
# ---------------------------------------------------------------------------------------------------


def distinct_n(texts: Sequence[str], n: int, tokenize: Tokenize = _whitespace) -> float:
    """distinct-n (Li et al. 2016): the share of n-grams in the whole set that are unique.

        distinct-n = |{g : g an n-gram of some text}| / Σ_i (L_i - n + 1)⁺

    where L_i is the token count of text i and the n-grams are taken inside each text. A set in which
    no text has n tokens has no n-gram: distinct-n is then 0.0.
    """
    _check_texts(texts, "texts")
    if n < 1:
        raise ConfigError(f"distinct-n needs n ≥ 1, got n = {n}; pass a positive order.")
    unique: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        grams = _ngrams(tokenize(text), n)
        unique.update(grams)
        total += len(grams)
    return len(unique) / total if total else 0.0


def repeat_ngram_share(texts: Sequence[str], n: int = 4, tokenize: Tokenize = _whitespace) -> float:
    """Mean over texts of the share of a text's n-grams that already occurred earlier in that text.

    For text i with n-gram list g_1..g_K (K = L_i - n + 1 ≥ 1)::

        rep_i = |{k : g_k ∈ {g_1..g_{k-1}}}| / K = 1 - |unique n-grams of i| / K

    (Welleck et al. 2020's seq-rep-n), and the result is the unweighted mean of rep_i over the texts
    with K ≥ 1; texts shorter than n have no n-gram to repeat and are left out. When no text has n
    tokens the result is 0.0. With n = 4 this is ``repeat_4gram``.
    """
    _check_texts(texts, "texts")
    if n < 1:
        raise ConfigError(f"The repetition share needs n ≥ 1, got n = {n}; pass a positive order.")
    shares = []
    for text in texts:
        grams = _ngrams(tokenize(text), n)
        if grams:
            shares.append(1.0 - len(set(grams)) / len(grams))
    return float(np.mean(shares)) if shares else 0.0


def self_bleu(texts: Sequence[str], tokenize: Tokenize = _whitespace,
              max_texts: int | None = SELF_BLEU_MAX_TEXTS, seed: int = 0) -> float:
    """Self-BLEU (Zhu et al. 2018, Texygen), 0-100: each text's sentence BLEU-4 against all others.

        self-BLEU = (1/N) Σ_i BLEU(hyp = x_i, refs = {x_j : j ≠ i})

    Higher means the texts repeat one another (less diverse); identical texts give 100.

    Smoothing: Texygen calls NLTK's ``sentence_bleu`` with ``SmoothingFunction().method1``, which
    replaces a zero n-gram match count by ε = 0.1, i.e. p_n = 0.1 / (number of hypothesis n-grams).
    That is Chen & Cherry's method 1, ``sacrebleu``'s ``smooth_method='floor'`` with
    ``smooth_value=0.1``, used here; BLEU is 0 when not even a unigram matches, in both. Brevity
    penalty uses the closest reference length, in both. The one difference: for a text shorter than
    4 tokens NLTK still averages over 4 orders (giving the missing ones p_n = 0.1), while
    ``effective_order=True`` here averages only the orders the text has, which ``sacrebleu``
    recommends for sentence BLEU.

    Tokens come from ``tokenize`` (not from BLEU's 13a tokenizer): each distinct token is mapped to an
    id before ``sacrebleu`` sees it, so any token, a space included, counts as one word.

    ``max_texts``: with more texts than this, a random subset of ``max_texts`` texts, drawn with
    ``seed``, is scored among itself, as Texygen's fast mode scores its first 500 texts (the default
    here too; ``None`` scores every text). The cost is O(N²) in the texts scored (500 texts of 20
    tokens take seconds), and the value grows with the pool size, so compare self-BLEU at equal N.
    A single text has no other text to compare with: the result is NaN.
    """
    _check_texts(texts, "texts")
    if max_texts is not None and max_texts < 2:
        raise ConfigError(f"max_texts must be ≥ 2 or None, got {max_texts}; self-BLEU compares two texts "
                          f"at least.")
    if max_texts is not None and len(texts) > max_texts:
        keep = np.sort(np.random.default_rng(seed).choice(len(texts), size=max_texts, replace=False))
        texts = [texts[i] for i in keep]
    if len(texts) < 2:
        return float("nan")
    ids: dict[str, int] = {}
    encoded = [" ".join(str(ids.setdefault(tok, len(ids))) for tok in tokenize(text)) for text in texts]
    metric = BLEU(tokenize="none", smooth_method="floor", smooth_value=SELF_BLEU_SMOOTH_VALUE,
                  effective_order=True)
    scores = [metric.sentence_score(hyp, encoded[:i] + encoded[i + 1:]).score
              for i, hyp in enumerate(encoded)]
    return float(np.mean(scores))


def zipf_coefficient(texts: Sequence[str], tokenize: Tokenize = _whitespace,
                     max_rank: int | None = ZIPF_MAX_RANK) -> float:
    """Zipf coefficient (Holtzman et al. 2020): s in f(r) ∝ r^-s, fitted on the set's token counts.

    Count every token of every text, sort the counts in decreasing order (ties broken arbitrarily,
    each count gets its own rank) and fit by least squares

        log f(r) = c - s · log r,   r = 1..R,   R = min(number of distinct tokens, max_rank)

    returning the positive exponent s (natural text gives about 1; a flatter distribution, e.g. from
    sampling at a high temperature, gives less). ``max_rank`` = 5000 is the range of Holtzman et al.'s
    fit (``None``: all ranks). Fewer than two distinct tokens admit no line: the result is NaN.
    """
    _check_texts(texts, "texts")
    if max_rank is not None and max_rank < 2:
        raise ConfigError(f"max_rank must be ≥ 2 or None, got {max_rank}; a line needs two ranks.")
    counts = Counter(tok for text in texts for tok in tokenize(text))
    freqs = np.array(sorted(counts.values(), reverse=True)[:max_rank], dtype=np.float64)
    if len(freqs) < 2:
        return float("nan")
    ranks = np.arange(1, len(freqs) + 1, dtype=np.float64)
    slope, _ = np.polyfit(np.log(ranks), np.log(freqs), deg=1)
    return float(-slope)


# ---------------------------------------------------------------------------------------------------
# Everything at once
# ---------------------------------------------------------------------------------------------------


def text_metrics(hyps: Sequence[str], refs: Sequence[str] | None = None, tokenize: Tokenize = _whitespace,
                 max_texts: int | None = SELF_BLEU_MAX_TEXTS, seed: int = 0,
                 use_stemmer: bool = False) -> dict[str, float]:
    """All metrics of this module in one dict with stable keys.

    Always: ``distinct_1``, ``distinct_2``, ``distinct_3``, ``self_bleu``, ``repeat_4gram``, ``zipf``.
    With ``refs`` (one per hypothesis) also: ``bleu``, ``chrf``, ``rouge1``, ``rouge2``, ``rougeL``.
    ``tokenize`` feeds the diversity metrics only (BLEU, chrF and ROUGE use their own tokenizers);
    ``max_texts`` and ``seed`` go to :func:`self_bleu`, ``use_stemmer`` to :func:`rouge`. Values are
    NaN only where the module docstring says (self-BLEU of one text, Zipf over one distinct token).
    """
    _check_texts(hyps, "hypotheses")
    out: dict[str, float] = {}
    if refs is not None:
        _check_pairs(hyps, refs)
        out["bleu"] = bleu(hyps, refs)
        out["chrf"] = chrf(hyps, refs)
        out.update(rouge(hyps, refs, use_stemmer=use_stemmer))
    for n in DISTINCT_ORDERS:
        out[f"distinct_{n}"] = distinct_n(hyps, n, tokenize=tokenize)
    out["self_bleu"] = self_bleu(hyps, tokenize=tokenize, max_texts=max_texts, seed=seed)
    out["repeat_4gram"] = repeat_ngram_share(hyps, 4, tokenize=tokenize)
    out["zipf"] = zipf_coefficient(hyps, tokenize=tokenize)
    return out


# ---------------------------------------------------------------------------------------------------
# Files of texts (`arlm score-text`)
# ---------------------------------------------------------------------------------------------------

TOKENIZERS: dict[str, Tokenize] = {"whitespace": _whitespace, "char": list}


def read_lines(path: str | Path, what: str, encoding: str = "utf-8") -> list[str]:
    """The lines of a text file, one text per line (no trailing newline kept); DataError when the file
    is missing, unreadable or empty."""
    path = Path(path)
    try:
        text = path.read_text(encoding=encoding)
    except FileNotFoundError:
        raise DataError(f"{what} file {path} does not exist; pass a text file with one text per "
                        "line") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {what} file {path} ({getattr(e, 'strerror', None) or e}); pass a "
                        f"readable {encoding} text file") from None
    lines = text.splitlines()
    if not lines:
        raise DataError(f"{what} file {path} is empty; pass one text per line")
    return lines


def score_text_files(hyp: str | Path, ref: str | Path | None = None, tokenize: str = "whitespace",
                     encoding: str = "utf-8", max_texts: int | None = SELF_BLEU_MAX_TEXTS,
                     seed: int = 0) -> dict[str, float]:
    """:func:`text_metrics` of the lines of ``hyp`` against the lines of ``ref`` (line i against line
    i; without ``ref``, the diversity metrics only). ``tokenize`` is ``whitespace`` or ``char`` (for
    character-level generations). Different line counts are a DataError naming both files."""
    if tokenize not in TOKENIZERS:
        raise ConfigError(f"unknown tokenization {tokenize!r}; choose one of {', '.join(TOKENIZERS)}")
    hyps = read_lines(hyp, "hypothesis", encoding)
    refs = None
    if ref is not None:
        refs = read_lines(ref, "reference", encoding)
        if len(refs) != len(hyps):
            raise DataError(f"{hyp} has {len(hyps):,} lines but {ref} has {len(refs):,}; pass one reference "
                            "line per hypothesis line")
    return text_metrics(hyps, refs, tokenize=TOKENIZERS[tokenize], max_texts=max_texts, seed=seed)


__all__ = ["bleu", "chrf", "distinct_n", "repeat_ngram_share", "rouge", "score_text_files", "self_bleu",
           "text_metrics", "zipf_coefficient"]

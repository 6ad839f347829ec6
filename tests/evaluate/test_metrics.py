"""Text metrics against hand-computed values and the reference libraries they wrap or follow."""

import math

import numpy as np
import pytest
import sacrebleu
from hypothesis import given, settings
from hypothesis import strategies as st
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from rouge_score import rouge_scorer

from arlm.errors import ConfigError, DataError
from arlm.evaluate.metrics import (
    bleu,
    chrf,
    distinct_n,
    repeat_ngram_share,
    rouge,
    self_bleu,
    text_metrics,
    zipf_coefficient,
)

# sacrebleu's README example.
SACREBLEU_HYPS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
SACREBLEU_REFS = [["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
                  ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."]]


# --- accuracy against references --------------------------------------------------------------------


def test_bleu_and_chrf_equal_sacrebleu_on_its_readme_example():
    # The README's two-reference score, to be sure the example is the one documented.
    assert sacrebleu.corpus_bleu(SACREBLEU_HYPS, SACREBLEU_REFS).score == pytest.approx(48.53, abs=0.005)
    refs = SACREBLEU_REFS[0]
    assert bleu(SACREBLEU_HYPS, refs) == sacrebleu.corpus_bleu(SACREBLEU_HYPS, [refs]).score
    assert chrf(SACREBLEU_HYPS, refs) == sacrebleu.corpus_chrf(SACREBLEU_HYPS, [refs]).score
    assert 0.0 < bleu(SACREBLEU_HYPS, refs) < 100.0
    assert bleu(refs, refs) == pytest.approx(100.0)
    assert chrf(refs, refs) == pytest.approx(100.0)


def test_rouge_equals_rouge_score_readme_example():
    """rouge-score's README: target 'The quick brown fox jumps over the lazy dog' (9 tokens), prediction
    'The quick brown dog jumps on the log.' (8 tokens), stemmed.

    ROUGE-1: 6 shared unigrams (the ×2, quick, brown, dog, jumps): P = 6/8, R = 6/9, F = 12/17.
    ROUGE-L: LCS 'the quick brown jumps the' = 5: P = 5/8, R = 5/9, F = 10/17.
    """
    target = "The quick brown fox jumps over the lazy dog"
    prediction = "The quick brown dog jumps on the log."
    scores = rouge([prediction], [target], use_stemmer=True)
    assert scores["rouge1"] == pytest.approx(100 * 12 / 17)
    assert scores["rougeL"] == pytest.approx(100 * 10 / 17)
    reference = rouge_scorer.RougeScorer(["rouge2"], use_stemmer=True).score(target, prediction)
    assert scores["rouge2"] == pytest.approx(100 * reference["rouge2"].fmeasure)


def test_rouge_is_the_mean_over_pairs():
    hyps, refs = ["a b c", "x y"], ["a b d", "x y"]
    # pair 1: ROUGE-1 F = 2/3, ROUGE-2 F = 1/2 ('a b'); pair 2: all 1.
    scores = rouge(hyps, refs)
    assert scores["rouge1"] == pytest.approx(100 * (2 / 3 + 1) / 2)
    assert scores["rouge2"] == pytest.approx(100 * (1 / 2 + 1) / 2)


@pytest.mark.parametrize("metric", [bleu, chrf, rouge])
def test_count_mismatch_is_one_data_error_naming_both_counts(metric):
    with pytest.raises(DataError, match=r"2 hypotheses but 3 references"):
        metric(["a", "b"], ["a", "b", "c"])


def test_text_metrics_mismatch_and_empty_inputs_raise():
    with pytest.raises(DataError, match=r"1 hypotheses but 2 references"):
        text_metrics(["a"], ["a", "b"])
    for fn in (lambda: text_metrics([]), lambda: bleu([], []), lambda: self_bleu([]),
               lambda: distinct_n([], 1), lambda: repeat_ngram_share([]), lambda: zipf_coefficient([])):
        with pytest.raises(DataError, match="non-empty"):
            fn()


# --- distinct-n -------------------------------------------------------------------------------------


def test_distinct_n_by_hand():
    """Texts 'a b a b' and 'a b c'; n-grams stay inside a text.

    n=1: a b a b | a b c      -> 7 tokens, unique {a, b, c}          -> 3/7
    n=2: ab ba ab | ab bc     -> 5 bigrams, unique {ab, ba, bc}      -> 3/5
    n=3: aba bab | abc        -> 3 trigrams, all unique              -> 3/3
    n=4: abab | (none)        -> 1 four-gram                         -> 1/1
    """
    texts = ["a b a b", "a b c"]
    assert distinct_n(texts, 1) == pytest.approx(3 / 7)
    assert distinct_n(texts, 2) == pytest.approx(3 / 5)
    assert distinct_n(texts, 3) == 1.0
    assert distinct_n(texts, 4) == 1.0


def test_distinct_n_char_level_and_degenerate_cases():
    # 'abab' as characters: a b a b -> unique 2 / total 4; bigrams ab ba ab -> 2/3.
    assert distinct_n(["abab"], 1, tokenize=list) == 0.5
    assert distinct_n(["abab"], 2, tokenize=list) == pytest.approx(2 / 3)
    assert distinct_n(["a b", ""], 3) == 0.0  # no text has 3 tokens: no n-gram, defined as 0
    with pytest.raises(ConfigError):
        distinct_n(["a"], 0)


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(st.text(alphabet="ab c", max_size=12), min_size=1, max_size=6),
       n=st.integers(1, 4), chars=st.booleans())
def test_distinct_n_and_repetition_are_fractions(texts, n, chars):
    tokenize = list if chars else str.split
    assert 0.0 <= distinct_n(texts, n, tokenize=tokenize) <= 1.0
    assert 0.0 <= repeat_ngram_share(texts, n, tokenize=tokenize) <= 1.0


# --- repetition -------------------------------------------------------------------------------------


def test_repeat_4gram_by_hand():
    """'a b c a b c a': 4-grams abca bcab cabc abca; the 4th was seen before -> 1/4.
    'x y z w': one 4-gram, not repeated -> 0. 'short' has no 4-gram and is left out.
    Mean over the two texts with 4-grams: (1/4 + 0) / 2 = 1/8.
    'a a a a a a': 4-grams aaaa ×3, the last two repeat -> 2/3.
    """
    assert repeat_ngram_share(["a b c a b c a", "x y z w", "short"]) == pytest.approx(1 / 8)
    assert repeat_ngram_share(["a a a a a a"]) == pytest.approx(2 / 3)
    assert repeat_ngram_share(["a b", "c"]) == 0.0  # no 4-gram anywhere
    # the same text as characters: 'aaaaaa' is 'a a a a a a'
    assert repeat_ngram_share(["aaaaaa"], tokenize=list) == pytest.approx(2 / 3)


# --- self-BLEU --------------------------------------------------------------------------------------


def test_self_bleu_extremes():
    assert self_bleu(["the cat sat on the mat"] * 4) == pytest.approx(100.0)
    assert self_bleu(["a b c d", "e f g h", "i j k l"]) == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(self_bleu(["only one text here"]))
    # characters, spaces included, are tokens too
    assert self_bleu(["a b", "a b"], tokenize=list) == pytest.approx(100.0)


def test_self_bleu_floor_smoothing_by_hand():
    """'a b c d' against 'a b c e' (and back): p1 = 3/4, p2 = 2/3, p3 = 1/2, p4 = 0 -> ε/1 = 0.1,
    BP = 1; BLEU = 100 · (3/4 · 2/3 · 1/2 · 1/10)^(1/4) = 100 · 0.025^(1/4), the same both ways."""
    assert self_bleu(["a b c d", "a b c e"]) == pytest.approx(100 * 0.025 ** 0.25)


def test_self_bleu_equals_texygen_nltk_method1():
    """Texygen: nltk sentence_bleu(other texts, text, (¼,)*4, SmoothingFunction().method1), averaged."""
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(list("abcdefg"), size=rng.integers(4, 12))) for _ in range(12)]
    tokens = [t.split() for t in texts]
    smoothing = SmoothingFunction().method1
    texygen = np.mean([sentence_bleu(tokens[:i] + tokens[i + 1:], hyp, (0.25,) * 4,
                                     smoothing_function=smoothing) for i, hyp in enumerate(tokens)])
    assert self_bleu(texts) == pytest.approx(100 * texygen, rel=1e-9)


def test_self_bleu_subsample_is_seeded():
    rng = np.random.default_rng(1)
    texts = [" ".join(rng.choice(list("abcdef"), size=6)) for _ in range(30)]
    sub = self_bleu(texts, max_texts=10, seed=3)
    assert sub == self_bleu(texts, max_texts=10, seed=3)
    assert self_bleu(texts, max_texts=30) == self_bleu(texts, max_texts=None)
    with pytest.raises(ConfigError):
        self_bleu(texts, max_texts=1)


# --- Zipf -------------------------------------------------------------------------------------------


def _text_with_counts(counts):
    return " ".join(f"w{i}" for i, c in enumerate(counts) for _ in range(c))


def test_zipf_two_point_fit_by_hand():
    """Counts 4 and 1 at ranks 1 and 2: s = log(4/1) / log(2/1) = 2."""
    assert zipf_coefficient(["x x y x x"]) == pytest.approx(2.0)


@pytest.mark.parametrize(("s", "counts"), [(1.0, [60 // r for r in range(1, 7)]),
                                           (2.0, [3600 // r**2 for r in range(1, 7)])])
def test_zipf_recovers_the_exponent_of_exact_power_law_counts(s, counts):
    # 60/r = 60 30 20 15 12 10 and 3600/r² = 3600 900 400 225 144 100 are exact, so the fit is exact.
    rng = np.random.default_rng(0)
    tokens = _text_with_counts(counts).split()
    rng.shuffle(tokens)
    texts = [" ".join(tokens[i:i + 50]) for i in range(0, len(tokens), 50)]  # split across texts
    assert zipf_coefficient(texts) == pytest.approx(s, abs=1e-9)


def test_zipf_rank_range_and_degenerate_cases():
    # 3600/r² for r ≤ 3, then a flat tail of count 1 that max_rank=3 must leave out of the fit
    text = _text_with_counts([3600, 900, 400, 1, 1, 1])
    assert zipf_coefficient([text], max_rank=3) == pytest.approx(2.0)
    assert zipf_coefficient([text], max_rank=None) != pytest.approx(2.0)
    assert zipf_coefficient(["a b c d"]) == pytest.approx(0.0)  # all counts equal: flat
    assert math.isnan(zipf_coefficient(["a a a"]))  # one distinct token: no line to fit
    assert zipf_coefficient(["aab"], tokenize=list) == pytest.approx(1.0)  # counts 2, 1


# --- everything at once -----------------------------------------------------------------------------


def test_text_metrics_keys_and_values():
    hyps = ["the cat sat on the mat", "a dog ran in the park today", "the cat sat on the mat"]
    refs = ["the cat is on the mat", "a dog runs in the park", "there is a cat"]
    diversity = {"distinct_1", "distinct_2", "distinct_3", "self_bleu", "repeat_4gram", "zipf"}
    accuracy = {"bleu", "chrf", "rouge1", "rouge2", "rougeL"}
    without = text_metrics(hyps)
    assert set(without) == diversity
    with_refs = text_metrics(hyps, refs)
    assert set(with_refs) == diversity | accuracy
    assert all(math.isfinite(v) for v in with_refs.values())
    assert with_refs["bleu"] == bleu(hyps, refs)
    assert with_refs["distinct_2"] == distinct_n(hyps, 2)
    assert with_refs["self_bleu"] == self_bleu(hyps)
    assert {k: with_refs[k] for k in diversity} == without

"""evaluate_likelihood against direct computations on a toy model."""

import itertools
import math

import numpy as np
import pytest
import torch

from arlm.errors import DataError
from arlm.evaluate.likelihood import evaluate_likelihood, pad_batch, split_sequences, window_rows
from arlm.streams import EOS_ID, PAD_ID, SOS_ID, UNK_ID
from toy_models import BigramTable


def _corpus(n=40, V=12, seed=0):
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(n):
        body = rng.integers(3, V, size=rng.integers(0, 9))  # may contain [UNK] = 3
        seqs.append(np.concatenate([[SOS_ID], body, [EOS_ID]]).astype(np.int64))
    return seqs


def _direct_nll(model, seq):
    return -sum(float(model.table[seq[t], seq[t + 1]]) for t in range(len(seq) - 1))


def test_totals_equal_a_direct_loop():
    model, seqs = BigramTable(12), _corpus()
    report = evaluate_likelihood(model, seqs, batch_tokens=50, show_progress=False)
    nlls = [_direct_nll(model, s) for s in seqs]
    lengths = [len(s) - 1 for s in seqs]
    assert report.num_tokens == sum(lengths)
    assert report.nll == pytest.approx(sum(nlls), rel=1e-12)
    assert report.perplexity == pytest.approx(math.exp(sum(nlls) / sum(lengths)), rel=1e-12)
    mean_ppl = np.mean([math.exp(n / L) for n, L in zip(nlls, lengths, strict=True)])
    assert report.mean_sentence_ppl == pytest.approx(mean_ppl, rel=1e-12)


def test_oov_split_matches_direct_loop():
    model, seqs = BigramTable(12), _corpus(seed=3)
    report = evaluate_likelihood(model, seqs, show_progress=False)
    oov = [(s[t], s[t + 1]) for s in seqs for t in range(len(s) - 1) if s[t + 1] == UNK_ID]
    assert report.num_oov == len(oov) > 0
    in_vocab = -sum(float(model.table[a, b]) for s in seqs for a, b in itertools.pairwise(s)
                    if b != UNK_ID)
    expected = math.exp(in_vocab / (report.num_tokens - len(oov)))
    assert report.perplexity_excluding_oov == pytest.approx(expected, rel=1e-12)


def test_flat_stream_equals_list_and_batching_does_not_matter():
    model, seqs = BigramTable(12), _corpus()
    a = evaluate_likelihood(model, seqs, batch_tokens=16, show_progress=False)
    b = evaluate_likelihood(model, np.concatenate(seqs), batch_tokens=10**6, show_progress=False)
    assert a.nll == pytest.approx(b.nll, rel=1e-12)
    assert a.mean_sentence_ppl == pytest.approx(b.mean_sentence_ppl, rel=1e-12)


def test_uniform_model_has_perplexity_equal_to_its_support():
    class Uniform(BigramTable):
        def __init__(self):
            super().__init__(10)
            self.table = torch.full((10, 10), -math.log(8.0), dtype=torch.float64)
            self.table[:, [PAD_ID, SOS_ID]] = -torch.inf

    report = evaluate_likelihood(Uniform(), _corpus(V=10), num_chars=1000, show_progress=False)
    assert report.perplexity == pytest.approx(8.0)
    assert report.bits_per_token == pytest.approx(3.0)
    assert report.bits_per_char == pytest.approx(report.nll / math.log(2) / 1000)


def test_split_and_pad():
    stream = np.array([SOS_ID, 5, EOS_ID, SOS_ID, EOS_ID, SOS_ID, 6, 7, EOS_ID])
    parts = split_sequences(stream)
    assert [p.tolist() for p in parts] == [[1, 5, 2], [1, 2], [1, 6, 7, 2]]
    padded = pad_batch(parts)
    assert padded.tolist() == [[1, 5, 2, 0], [1, 2, 0, 0], [1, 6, 7, 2]]


def test_bad_streams_are_data_errors():
    with pytest.raises(DataError, match="not a run of"):
        split_sequences(np.array([5, EOS_ID]))
    with pytest.raises(DataError, match="no sequences"):
        evaluate_likelihood(BigramTable(5), [], show_progress=False)


@pytest.mark.parametrize("context", [2, 3, 4, 7, 8])
def test_window_rows_score_every_target_once_with_at_least_half_a_window_of_context(context):
    stride = context // 2
    for length in range(2, 30):
        rows = window_rows(5, length, context)
        seen = []  # (target token position, tokens of context it sees)
        for index, start, end, skip in rows:
            assert index == 5 and 0 <= start < end <= length and end - start <= context
            seen += [(t, t - start) for t in range(start + 1 + skip, end)]
        assert sorted(t for t, _ in seen) == list(range(1, length))  # each target exactly once
        for t, ctx in seen:
            assert ctx == t or ctx >= context - stride  # its whole prefix, or at least P - S tokens
        if length <= context:
            assert rows == [(5, 0, length, 0)]


def test_a_sliding_window_changes_nothing_for_a_model_that_reads_one_token():
    model, seqs = BigramTable(12), _corpus(seed=4)
    assert max(len(s) for s in seqs) > 3  # some sequences are windowed
    whole = evaluate_likelihood(model, seqs, show_progress=False)
    for context in (2, 3, 5):
        windowed = evaluate_likelihood(model, seqs, context=context, batch_tokens=20, show_progress=False)
        assert windowed.num_tokens == whole.num_tokens
        assert windowed.num_oov == whole.num_oov
        assert windowed.nll == pytest.approx(whole.nll, rel=1e-12)
        assert windowed.mean_sentence_ppl == pytest.approx(whole.mean_sentence_ppl, rel=1e-12)


class _ContextCounter:
    """log p(x_{t+1} | row) = -(tokens of the row read so far): the NLL totals the context each target saw."""

    def score(self, tokens):
        B, T = tokens.shape
        return -torch.arange(1, T, dtype=torch.float64).expand(B, T - 1)  # (B, T-1)


def test_a_windowed_target_sees_fewer_tokens_than_the_whole_prefix():
    seq = np.concatenate([[SOS_ID], np.full(10, 5), [EOS_ID]]).astype(np.int64)  # 12 tokens, 11 targets
    whole = evaluate_likelihood(_ContextCounter(), [seq], show_progress=False)
    assert whole.nll == sum(range(1, 12))
    windowed = evaluate_likelihood(_ContextCounter(), [seq], context=4, show_progress=False)
    # rows of 4 at stride 2: tokens [0,4) score targets 1-3 (contexts 1, 2, 3), then [2,6), [4,8), [6,10),
    # [8,12) score two targets each with contexts 2 and 3
    assert windowed.nll == 6 + 4 * (2 + 3)
    assert windowed.num_tokens == 11


def test_a_context_without_a_target_is_a_data_error():
    with pytest.raises(DataError, match="context"):
        evaluate_likelihood(BigramTable(12), _corpus(), context=1, show_progress=False)

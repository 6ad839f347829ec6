"""evaluate_likelihood against direct computations on a toy model."""

import itertools
import math

import numpy as np
import pytest
import torch

from arlm.errors import DataError
from arlm.evaluate.likelihood import evaluate_likelihood, pad_batch, split_sequences
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

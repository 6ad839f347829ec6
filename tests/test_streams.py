"""The ground floor: special ids and [SOS] … [EOS]-framed streams, parsed in one place."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from arlm.errors import DataError
from arlm.streams import EOS_ID, SOS_ID, as_stream, frame_sequences, sequence_spans, split_sequences

SEQS = st.lists(st.lists(st.integers(4, 70_000), max_size=6), max_size=10)


@given(SEQS)
@settings(max_examples=100, deadline=None)
def test_frame_sequences_matches_a_loop_and_parses_back(seqs):
    ids = np.array([i for s in seqs for i in s], dtype=np.int64)
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    stream = frame_sequences(ids, lengths, vocab_size=70_001)
    assert stream.dtype == np.uint32
    assert stream.tolist() == [t for s in seqs for t in [SOS_ID, *s, EOS_ID]]
    starts, spans = sequence_spans(stream)
    assert spans.tolist() == [len(s) + 2 for s in seqs]
    assert [p.tolist() for p in split_sequences(stream)] == [[SOS_ID, *s, EOS_ID] for s in seqs]
    assert (stream[starts] == SOS_ID).all()


@given(SEQS)
@settings(max_examples=50, deadline=None)
def test_one_boundary_token_opens_and_closes(seqs):
    """GPT-2 frames texts with <|endoftext|> on both sides; the same parser reads that."""
    boundary = 70_000
    seqs = [[t for t in s if t != boundary] for s in seqs]
    ids = np.array([i for s in seqs for i in s], dtype=np.int64)
    stream = frame_sequences(ids, np.array([len(s) for s in seqs]), 70_001, boundary, boundary)
    parts = split_sequences(stream, boundary, boundary)
    assert [p.tolist() for p in parts] == [[boundary, *s, boundary] for s in seqs]


@pytest.mark.parametrize("bad", [[5, EOS_ID], [SOS_ID, 5], [SOS_ID, 5, EOS_ID, 6, SOS_ID, EOS_ID],
                                 [EOS_ID, SOS_ID], [SOS_ID, SOS_ID, EOS_ID, EOS_ID]])
def test_a_broken_frame_is_a_data_error(bad):
    with pytest.raises(DataError, match="not a run of"):
        sequence_spans(np.array(bad))


def test_as_stream_keeps_memory_and_reads_tensors(tmp_path):
    np.save(tmp_path / "s.npy", np.arange(5, dtype=np.uint16))
    memmap = np.load(tmp_path / "s.npy", mmap_mode="r")
    assert np.shares_memory(as_stream(memmap), memmap)
    assert as_stream(torch.arange(3)).tolist() == [0, 1, 2]

    class Split:
        tokens = np.array([[1, 2]])

    assert as_stream(Split()).tolist() == [1, 2]

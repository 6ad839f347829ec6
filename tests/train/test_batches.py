"""Data -> batches: random chunks, TBPTT streams, full deterministic validation."""

import itertools

import numpy as np
import pytest
import torch

from arlm.errors import ConfigError
from arlm.streams import EOS_ID, PAD_ID, SOS_ID, as_stream
from arlm.train.batches import (
    TBPTTStreams,
    loss_targets,
    random_chunks,
    validation_chunks,
    validation_streams,
)

STREAM = torch.arange(100) + 10  # distinct ids, so a window's position in the stream is readable


def test_readonly_uint16_stream_is_not_copied_and_batches_are_long(tmp_path):
    np.save(tmp_path / "s.npy", np.arange(10, 110, dtype=np.uint16))
    memmap = np.load(tmp_path / "s.npy", mmap_mode="r")  # what a cached split is
    assert np.shares_memory(as_stream(memmap), memmap)
    chunks = random_chunks(memmap, 8, 3, torch.Generator().manual_seed(0))
    assert chunks.dtype == torch.long and chunks.shape == (3, 9)
    assert TBPTTStreams(memmap, 2, 8).window(1).dtype == torch.long
    assert as_stream(torch.arange(3)).tolist() == [0, 1, 2]


def test_random_chunks_are_contiguous_and_seeded():
    a = random_chunks(STREAM, 8, 5, torch.Generator().manual_seed(1))
    b = random_chunks(STREAM, 8, 5, torch.Generator().manual_seed(1))
    c = random_chunks(STREAM, 8, 5, torch.Generator().manual_seed(2))
    assert a.shape == (5, 9)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (a[:, 1:] - a[:, :-1] == 1).all()  # consecutive tokens of the stream
    assert a.min() >= 10 and a.max() <= 109


def test_block_larger_than_data():
    with pytest.raises(ConfigError, match="smaller block_size"):
        random_chunks(STREAM, 100, 2, torch.Generator())
    with pytest.raises(ConfigError, match="smaller block_size"):
        TBPTTStreams(STREAM, 10, 10)  # 10 tokens per row < 11


def test_loss_targets_never_score_sos():
    window = torch.tensor([[SOS_ID, 5, EOS_ID, SOS_ID, 6]])
    inputs, targets = loss_targets(window)
    assert inputs.tolist() == [[SOS_ID, 5, EOS_ID, SOS_ID]]
    assert targets.tolist() == [[5, EOS_ID, PAD_ID, 6]]


@pytest.mark.parametrize(("block", "batch"), [(7, 3), (99, 1), (1, 200), (10, 4)])
def test_validation_chunks_score_every_target_once(block, batch):
    windows = list(validation_chunks(STREAM, block, batch))
    assert all(w.shape[1] == block + 1 and w.shape[0] <= batch for w in windows)
    targets = torch.cat([w[:, 1:].reshape(-1) for w in windows])
    assert targets[targets != PAD_ID].tolist() == STREAM[1:].tolist()
    assert next(iter(validation_chunks(STREAM, block, batch))).tolist() == windows[0].tolist()  # repeatable


@pytest.mark.parametrize(("batch", "bptt"), [(3, 7), (1, 50), (4, 100), (7, 1)])
def test_validation_streams_score_every_target_once(batch, bptt):
    windows = list(validation_streams(STREAM, batch, bptt))
    rows = windows[0].shape[0]
    per_row = [torch.cat([w[r, 1:] for w in windows]) for r in range(rows)]
    targets = torch.cat(per_row)
    assert targets[targets != PAD_ID].tolist() == STREAM[1:].tolist()
    for a, b in itertools.pairwise(windows):  # consecutive windows overlap by one token per row
        assert torch.equal(a[:, -1], b[:, 0])


def test_tbptt_windows_continue_each_row():
    streams = TBPTTStreams(STREAM, 4, 5)  # rows of 25 tokens: (25 - 1) // 5 = 4 windows
    assert len(streams) == 4
    for i in range(len(streams) - 1):
        a, b = streams.window(i), streams.window(i + 1)
        assert a.shape == (4, 6)
        assert torch.equal(a[:, -1], b[:, 0])  # row b of batch i+1 continues row b of batch i
    assert streams.window(0)[:, 0].tolist() == [10, 35, 60, 85]  # row starts, L = 25

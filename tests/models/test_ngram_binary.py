"""The memory-mapped n-gram format: a model saved with storage='mmap' opens without reading its tables
and scores exactly as the same model read from its ARPA file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from arlm.errors import ConfigError, FormatError
from arlm.interop.arpa import read_arpa, write_arpa
from arlm.models.ngram import NGramModel
from arlm.streams import SPECIAL_TOKENS

VOCAB = [*SPECIAL_TOKENS, *(f"w{i}" for i in range(20))]


def stream(sentences: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([np.concatenate([[1], rng.integers(4, len(VOCAB), rng.integers(1, 10)), [2]])
                           for _ in range(sentences)])


@pytest.fixture(scope="module")
def model() -> NGramModel:
    return NGramModel.fit(stream(300, 0), 4, VOCAB, "mkn", discount_fallback=True)


def test_mmap_folder_scores_exactly_as_the_arpa_file(tmp_path, model):
    folder = model.save(tmp_path / "m", storage="mmap")
    mapped = NGramModel.load(folder)
    from_arpa = read_arpa(write_arpa(model, tmp_path / "m.arpa"))
    test = torch.from_numpy(stream(40, 1))[None]  # (1, T) unseen text, unseen n-grams
    assert torch.equal(mapped.score(test), from_arpa.score(test))
    assert torch.equal(mapped.score(test), model.score(test))
    assert torch.equal(mapped.log_probs(test[:, :30]), from_arpa.log_probs(test[:, :30]))
    assert mapped.score_sentence("w1 w2 w3") == from_arpa.score_sentence("w1 w2 w3")


def test_tables_and_hash_tables_are_memory_mapped(tmp_path, model):
    mapped = NGramModel.load(model.save(tmp_path / "m", storage="mmap"))
    assert isinstance(mapped.keys[3].base, np.memmap) or isinstance(mapped.keys[3], np.memmap)
    slots = mapped._index[3].slot_key
    assert isinstance(slots, np.memmap) or isinstance(slots.base, np.memmap)  # not rebuilt in memory
    assert not mapped.logp[0].flags.writeable


def test_a_truncated_table_is_a_format_error(tmp_path, model):
    folder = model.save(tmp_path / "m", storage="mmap")
    path = folder / "logp.3.npy"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(FormatError, match=r"logp\.3\.npy"):
        NGramModel.load(folder)
    (folder / "keys.2.npy").unlink()
    with pytest.raises(FormatError, match="missing"):
        NGramModel.load(folder)


def test_add_k_has_no_memory_mapped_form(tmp_path):
    m = NGramModel.fit(stream(20, 2), 2, VOCAB, "add-k")
    with pytest.raises(ConfigError, match="no memory-mapped form"):
        m.save(tmp_path / "m", storage="mmap")
    assert not (tmp_path / "m").exists()

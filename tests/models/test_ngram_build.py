"""Counting and modified Kneser–Ney on an engine (DuckDB, Spark) equal the in-memory numpy path, table
for table and in the ARPA file byte for byte; the build refuses what cannot work before writing."""

from __future__ import annotations

import filecmp

import numpy as np
import pytest

from arlm.errors import ConfigError, DataError, MismatchError
from arlm.interop.arpa import write_arpa
from arlm.models import ngram_build
from arlm.models.ngram import NGramModel
from arlm.models.ngram_build import BuildSettings, build_ngram_tables, parse_memory, stream_chunks
from arlm.streams import SPECIAL_TOKENS
from extras import require

VOCAB = [*SPECIAL_TOKENS, *(f"w{i}" for i in range(26))]


def zipf_stream(sentences: int, seed: int = 0, vocab_size: int = len(VOCAB)) -> np.ndarray:
    """[SOS] w … [EOS] sentences of 0-11 Zipf-distributed words (some unseen words, empty sentences)."""
    rng = np.random.default_rng(seed)
    parts = [np.concatenate([[1], rng.zipf(1.5, rng.integers(0, 12)).clip(4, vocab_size - 2), [2]])
             for _ in range(sentences)]
    return np.concatenate(parts).astype(np.int64)


def same_arpa(tmp_path, data, order, settings, smoothing="mkn", **kw) -> NGramModel:
    """Build on the engine and in memory; assert equal tables and byte-equal ARPA files."""
    ref = NGramModel.fit(np.concatenate(data) if isinstance(data, list) else data, order, VOCAB,
                         smoothing, discount_fallback=True)
    folder = tmp_path / f"{settings.engine}-{order}-{smoothing}"
    folder.mkdir()
    model = build_ngram_tables(data, order, VOCAB, folder, settings, smoothing, discount_fallback=True, **kw)
    for n in range(order):
        assert np.array_equal(model.keys[n], ref.keys[n])
        assert np.array_equal(model.logp[n], ref.logp[n])  # bit for bit (-inf included)
    for n in range(order - 1):
        assert np.array_equal(model.backoff[n], ref.backoff[n])
    assert model.discounts == [{"order": d["order"], "D": d["D"], "fallback": d["fallback"]}
                               for d in ref.discounts]
    a, b = write_arpa(ref, tmp_path / "memory.arpa"), write_arpa(model, tmp_path / "engine.arpa")
    assert filecmp.cmp(a, b, shallow=False)
    return model


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_duckdb_equals_memory_byte_for_byte(tmp_path, order):
    same_arpa(tmp_path, zipf_stream(400), order, BuildSettings("duckdb", 256 << 20))


def test_duckdb_kn_equals_memory(tmp_path):
    same_arpa(tmp_path, zipf_stream(300, seed=1), 3, BuildSettings("duckdb", 256 << 20), "kn")


def test_chunks_cut_inside_sentences_count_as_the_whole_stream(tmp_path, monkeypatch):
    """The token windows carry the last N-1 tokens and the run length across Parquet files."""
    monkeypatch.setattr(ngram_build, "CHUNK_TOKENS", 7)  # cuts most sentences
    x = zipf_stream(200, seed=2)
    pieces = [x[:5], x[5:40], x[40:41], x[41:]]  # a list of arrays: cut anywhere
    same_arpa(tmp_path, pieces, 4, BuildSettings("duckdb", 256 << 20))


def test_the_work_folder_is_removed_and_the_model_folder_is_memory_mapped(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    model = build_ngram_tables(zipf_stream(100), 3, VOCAB, folder, BuildSettings("duckdb", 256 << 20),
                               discount_fallback=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no work folder left
    assert isinstance(model.logp[2].base, np.memmap) or isinstance(model.logp[2], np.memmap)


@pytest.mark.slow
def test_duckdb_equals_memory_on_shakespeare(tmp_path):
    from arlm.data.cache import encode_corpus
    from arlm.data.corpora import load_corpus
    from arlm.data.tokenizers import train_tokenizer

    corpus = load_corpus("shakespeare")
    tok = train_tokenizer("word", corpus.lines("train"))
    tokens = encode_corpus(corpus, "train", tok, "lines").tokens
    ref = NGramModel.fit(tokens, 5, tok.vocab, "mkn")
    folder = tmp_path / "m"
    folder.mkdir()
    model = build_ngram_tables(tokens, 5, tok.vocab, folder, BuildSettings("duckdb", 1 << 30))
    a, b = write_arpa(ref, tmp_path / "memory.arpa"), write_arpa(model, tmp_path / "duckdb.arpa")
    assert filecmp.cmp(a, b, shallow=False)


@pytest.mark.slow
def test_spark_equals_memory_byte_for_byte(tmp_path):
    require("pyspark", "the Spark engine needs pyspark (the scale extra)")
    same_arpa(tmp_path, zipf_stream(300, seed=3), 3, BuildSettings("spark", 1 << 30, "local[1]"))


@pytest.mark.parametrize(("bad", "error", "words"), [
    (np.array([2, 4, 2]), DataError, "start with [SOS]"),
    (np.array([1, 4, 0, 2]), DataError, "[PAD]"),
    (np.array([1, 4, 2, 4, 2]), DataError, "follows [EOS]"),
    (np.array([1, 99, 2]), MismatchError, "outside the vocabulary"),
    (np.array([1.0, 4.0, 2.0]), DataError, "integer"),
])
def test_bad_streams_are_refused_as_in_memory(tmp_path, bad, error, words):
    with pytest.raises(error) as e:
        build_ngram_tables(bad, 2, VOCAB, tmp_path, BuildSettings("duckdb", 256 << 20))
    assert words in str(e.value)
    with pytest.raises(error):
        NGramModel.fit(bad, 2, VOCAB)


def test_an_order_longer_than_every_sentence_is_refused(tmp_path):
    with pytest.raises(DataError, match="no 4-grams"):
        build_ngram_tables(np.array([1, 4, 2]), 4, VOCAB, tmp_path, BuildSettings("duckdb", 256 << 20))


def test_sizes_parse():
    assert parse_memory("4GB") == 4 << 30
    assert parse_memory("512MiB") == 512 << 20
    assert parse_memory("1.5g") == 3 << 29
    assert parse_memory("1000") == 1000
    with pytest.raises(ConfigError, match="not a size"):
        parse_memory("lots")


def test_memory_below_the_engines_minimum_is_refused_before_writing(tmp_path):
    with pytest.raises(ConfigError, match="below what duckdb can work in"):
        build_ngram_tables(zipf_stream(10), 2, VOCAB, tmp_path, BuildSettings("duckdb", 1 << 20))
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_spark_master_is_refused_at_once():
    with pytest.raises(ConfigError, match=r"cannot reach the Spark master spark://127\.0\.0\.1:1"):
        BuildSettings("spark", 1 << 30, "spark://127.0.0.1:1").check(None, 3)


def test_a_corpus_larger_than_the_disk_is_refused_before_writing(tmp_path, monkeypatch):
    class Usage:
        free = 10 << 20

    monkeypatch.setattr(ngram_build.shutil, "disk_usage", lambda path: Usage())
    with pytest.raises(ConfigError, match="free but counting"):
        build_ngram_tables(zipf_stream(50), 3, VOCAB, tmp_path, BuildSettings("duckdb", 256 << 20),
                           num_tokens=10**9)
    assert list(tmp_path.iterdir()) == []


def test_smoothings_without_an_engine_form_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="--engine memory"):
        build_ngram_tables(zipf_stream(10), 2, VOCAB, tmp_path, BuildSettings("duckdb"), "add-k")


def test_stream_chunks_cover_the_stream_in_order():
    x = np.arange(10)
    assert np.array_equal(np.concatenate(list(stream_chunks(x, 3))), x)
    assert [len(c) for c in stream_chunks([x[:4], x[4:]], 3)] == [3, 1, 3, 3]


def test_an_engine_that_fails_mid_build_is_one_error_and_leaves_nothing(tmp_path, monkeypatch):
    import duckdb

    def out_of_memory(*args, **kwargs):
        raise duckdb.OutOfMemoryException("Out of Memory Error: could not allocate block of size 256 KiB")

    monkeypatch.setattr(ngram_build, "run_queries", out_of_memory)
    folder = tmp_path / "m"
    folder.mkdir()
    with pytest.raises(ConfigError, match=r"the duckdb engine failed \(Out of Memory Error.*raise --memory"):
        build_ngram_tables(zipf_stream(20), 2, VOCAB, folder, BuildSettings("duckdb", 256 << 20))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"] and not list(folder.iterdir())

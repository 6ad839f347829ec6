"""Encoded splits: the [SOS] … [EOS] stream, its on-disk cache, and what may never go wrong."""

import json
import warnings

import numpy as np
import pytest

import arlm.data.cache as cache
from arlm.data.cache import encode_corpus
from arlm.data.corpora import Corpus, Document
from arlm.data.tokenizers import train_tokenizer
from arlm.errors import ConfigError
from arlm.streams import EOS_ID, SOS_ID


def _corpus(n_docs=6, tag=""):
    docs = [Document(f"doc{i}", f"the cat {i} sat{tag}\n\n  on the mat {i}  \nend") for i in
            range(n_docs)]
    return Corpus("toy", docs, "toy corpus")


def _expected_lines(corpus, split, tok):
    out = []
    for line in corpus.lines(split):
        out += [SOS_ID, *tok.encode(line), EOS_ID]
    return out


@pytest.mark.parametrize("kind", ["char", "word", "byte"])
def test_stream_wraps_each_line_in_sos_eos(tmp_path, kind):
    corpus = _corpus()
    tok = train_tokenizer(kind, corpus.lines("train"))
    data = encode_corpus(corpus, "all", tok, cache_dir=tmp_path)
    assert data.tokens.tolist() == _expected_lines(corpus, "all", tok)
    assert data.num_sequences == len(corpus.lines("all"))
    assert data.num_chars == sum(len(x) + 1 for x in corpus.lines("all"))
    assert data.tokens.dtype == np.uint16


def test_documents_unit_makes_one_sequence_per_document(tmp_path):
    corpus = _corpus()
    tok = train_tokenizer("char", corpus.lines("train"))
    data = encode_corpus(corpus, "all", tok, unit="documents", cache_dir=tmp_path)
    expected = []
    for d in corpus.documents("all"):
        expected += [SOS_ID, *tok.encode(d.text), EOS_ID]
    assert data.tokens.tolist() == expected
    assert data.num_sequences == 6
    assert data.num_chars == len(corpus.text("all")) + 1
    with pytest.raises(ConfigError, match="unknown unit"):
        encode_corpus(corpus, "all", tok, unit="words", cache_dir=tmp_path)


def test_second_call_reads_the_cache_as_a_memmap(tmp_path, monkeypatch):
    corpus = _corpus()
    tok = train_tokenizer("word", corpus.lines("train"))
    first = encode_corpus(corpus, "train", tok, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npy"))) == 1 and len(list(tmp_path.glob("*.json"))) == 1

    def no_encoding(*args, **kwargs):
        raise AssertionError("encoded again instead of reading the cache")

    monkeypatch.setattr(cache, "_encode", no_encoding)
    second = encode_corpus(corpus, "train", tok, cache_dir=tmp_path)
    assert isinstance(second.tokens, np.memmap)
    assert np.array_equal(first.tokens, second.tokens)
    assert (second.num_chars, second.num_sequences) == (first.num_chars, first.num_sequences)


def test_a_changed_tokenizer_or_corpus_never_reuses_the_cache(tmp_path):
    corpus = _corpus()
    small = train_tokenizer("word", corpus.lines("train"), max_vocab=8)
    full = train_tokenizer("word", corpus.lines("train"))
    a = encode_corpus(corpus, "all", small, cache_dir=tmp_path)
    b = encode_corpus(corpus, "all", full, cache_dir=tmp_path)
    assert b.tokens.tolist() == _expected_lines(corpus, "all", full)
    assert a.tokens.tolist() != b.tokens.tolist()
    changed = _corpus(tag="!")
    c = encode_corpus(changed, "all", full, cache_dir=tmp_path)
    assert c.tokens.tolist() == _expected_lines(changed, "all", full)
    assert len(list(tmp_path.glob("*.npy"))) == 3


def test_a_crash_while_writing_leaves_no_cache(tmp_path, monkeypatch):
    corpus = _corpus()
    tok = train_tokenizer("char", corpus.lines("train"))

    def crash(f, arr):
        f.write(b"\x93NUMPY half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache.np, "save", crash)
    with pytest.warns(UserWarning, match="cannot write the token cache"):
        data = encode_corpus(corpus, "all", tok, cache_dir=tmp_path)
    assert data.tokens.tolist() == _expected_lines(corpus, "all", tok)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    again = encode_corpus(corpus, "all", tok, cache_dir=tmp_path)
    assert np.array_equal(again.tokens, data.tokens)


def test_a_damaged_cache_is_rebuilt(tmp_path):
    corpus = _corpus()
    tok = train_tokenizer("char", corpus.lines("train"))
    good = encode_corpus(corpus, "all", tok, cache_dir=tmp_path).tokens.tolist()
    (npy,) = tmp_path.glob("*.npy")
    npy.write_bytes(npy.read_bytes()[:-10])  # truncated
    assert encode_corpus(corpus, "all", tok, cache_dir=tmp_path).tokens.tolist() == good
    (sidecar,) = tmp_path.glob("*.json")
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "num_tokens": 1}))
    assert encode_corpus(corpus, "all", tok, cache_dir=tmp_path).tokens.tolist() == good


def test_unwritable_cache_dir_falls_back_to_memory(tmp_path):
    corpus = _corpus()
    tok = train_tokenizer("char", corpus.lines("train"))
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    with pytest.warns(UserWarning, match="encoding in memory"):
        data = encode_corpus(corpus, "all", tok, cache_dir=blocker / "cache")
    assert data.tokens.tolist() == _expected_lines(corpus, "all", tok)


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ARLM_CACHE", str(tmp_path / "env"))
    corpus = _corpus()
    tok = train_tokenizer("byte", [])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encode_corpus(corpus, "train", tok)
    assert len(list((tmp_path / "env").glob("*.npy"))) == 1


def test_no_cache_touches_no_file(tmp_path):
    corpus = _corpus()
    tok = train_tokenizer("char", corpus.lines("train"))
    data = encode_corpus(corpus, "all", tok, cache_dir=tmp_path, use_cache=False)
    assert data.tokens.tolist() == _expected_lines(corpus, "all", tok)
    assert list(tmp_path.iterdir()) == []

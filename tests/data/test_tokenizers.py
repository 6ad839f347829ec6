"""Tokenizers: lossless round trips, [UNK] for unseen pieces, save/load, and clear errors."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arlm.data.tokenizers import (
    TRAINABLE,
    WordTokenizer,
    load_tokenizer,
    train_tokenizer,
)
from arlm.errors import ConfigError, DataError, FormatError
from arlm.streams import EOS_ID, PAD_ID, SOS_ID, SPECIAL_TOKENS, UNK_ID

TEXTS = [
    "Now is the winter of our discontent",
    "Made glorious summer by this sun of York;",
    "And all the clouds that lour'd upon our house",
    "In the deep bosom of the ocean buried.",
    "def f(x):\n    return x ** 2  # café, naïve, 日本語",
] * 3

OPTIONS = {"char": {}, "byte": {}, "word": {}, "bpe": {"vocab_size": 300}}


@pytest.fixture(scope="module")
def trained():
    return {kind: train_tokenizer(kind, TEXTS, **OPTIONS[kind]) for kind in TRAINABLE}


BPE = train_tokenizer("bpe", TEXTS, vocab_size=300)
CHAR = train_tokenizer("char", TEXTS)
ALPHABET = sorted(set("".join(TEXTS)))


@pytest.mark.parametrize("kind", list(TRAINABLE))
def test_specials_first_and_vocab_consistent(trained, kind):
    tok = trained[kind]
    assert tok.kind == kind
    assert tok.vocab[:4] == list(SPECIAL_TOKENS)
    assert tok.vocab_size == len(tok.vocab)
    for i, t in enumerate(tok.vocab):
        assert tok.id_to_token(i) == t
        assert tok.token_to_id(t) == i
    ids = [i for text in TEXTS for i in tok.encode(text)]
    assert min(ids) >= 4  # trained on these texts: no [UNK], no specials


@pytest.mark.parametrize("kind", list(TRAINABLE))
def test_save_load_gives_identical_encodings(trained, kind, tmp_path):
    tok = trained[kind]
    tok.save(tmp_path / "tok.json")
    back = load_tokenizer(tmp_path / "tok.json")
    assert type(back) is type(tok)
    assert back.fingerprint == tok.fingerprint
    assert back.vocab == tok.vocab
    probe = [*TEXTS, "unseen words: zebra Ωmega!"]
    assert [back.encode(t) for t in probe] == [tok.encode(t) for t in probe]


@pytest.mark.parametrize("kind", list(TRAINABLE))
def test_encode_flat_matches_encode(trained, kind):
    tok = trained[kind]
    texts = ["", *TEXTS, "Ωmega ☃ unseen"]
    ids, lengths = tok.encode_flat(texts)
    assert lengths.tolist() == [len(tok.encode(t)) for t in texts]
    assert ids.tolist() == [i for t in texts for i in tok.encode(t)]
    assert [a.tolist() for a in tok.encode_lines(texts)] == [tok.encode(t) for t in texts]


@pytest.mark.parametrize("kind", list(TRAINABLE))
def test_decode_drops_pad_sos_eos(trained, kind):
    tok = trained[kind]
    ids = tok.encode(TEXTS[0])
    assert tok.decode([SOS_ID, *ids, EOS_ID, PAD_ID, PAD_ID]) == tok.decode(ids)


@given(st.text(max_size=200))
@settings(max_examples=150, deadline=None)
def test_byte_is_lossless_on_any_text(text):
    tok = train_tokenizer("byte", [])
    assert tok.decode(tok.encode(text)) == text
    assert len(tok.encode(text)) == len(text.encode("utf-8"))


@given(st.text(alphabet=ALPHABET, max_size=200))
@settings(max_examples=150, deadline=None)
def test_char_is_lossless_on_its_alphabet(text):
    assert CHAR.decode(CHAR.encode(text)) == text
    assert UNK_ID not in CHAR.encode(text)


@given(st.text(max_size=200))
@settings(max_examples=150, deadline=None)
def test_bpe_is_lossless_on_any_text(text):
    assert BPE.decode(BPE.encode(text)) == text


def test_bpe_treats_special_token_strings_as_text():
    text = "a [SOS] b [EOS] [PAD][UNK]"
    ids = BPE.encode(text)
    assert not set(ids) & {PAD_ID, SOS_ID, EOS_ID, UNK_ID}
    assert BPE.decode(ids) == text


def test_bpe_vocab_size_and_merges():
    assert BPE.vocab_size == 300
    # merges make common words shorter than their bytes
    assert len(BPE.encode("the winter of our discontent")) < len("the winter of our discontent")


def test_char_unseen_becomes_unk_and_min_count_drops_rare():
    tok = train_tokenizer("char", ["aab", "ab"], min_count=2)
    assert tok.vocab[4:] == ["\n", "a", "b"]  # sorted; "\n" always present
    assert tok.encode("abz") == [tok.token_to_id("a"), tok.token_to_id("b"), UNK_ID]
    rare = train_tokenizer("char", ["aab", "abc"], min_count=2)
    assert rare.encode("c") == [UNK_ID]
    assert tok.decode(tok.encode("abz")) == "ab[UNK]"


def test_word_unk_lowercase_and_frequency_order():
    tok = train_tokenizer("word", ["the cat, the dog.", "The bird"], lowercase=True)
    assert tok.vocab[4] == "the"  # most frequent first
    assert tok.encode("THE cow") == [tok.token_to_id("the"), UNK_ID]
    assert tok.decode(tok.encode("the cat, the dog.")) == "the cat , the dog ."
    assert not tok.lossless


def test_word_whitespace_mode_and_max_vocab():
    tok = train_tokenizer("word", ["a-b c-d a-b", "x.y"], whitespace=True)
    assert set(tok.vocab[4:]) == {"a-b", "c-d", "x.y"}
    capped = train_tokenizer("word", ["a a a b b c"], max_vocab=6)
    assert capped.vocab_size == 6 and capped.vocab[4:] == ["a", "b"]
    assert capped.encode("c") == [UNK_ID]


def test_word_from_vocab_accepts_kenlm_names():
    tok = WordTokenizer.from_vocab(["<unk>", "<s>", "</s>", "<unk>", "hello", "world"],
                                   whitespace=True)
    assert tok.vocab == [*SPECIAL_TOKENS, "hello", "world"]
    plain = WordTokenizer.from_vocab(["hello", "world"])
    assert plain.encode("hello world !") == [4, 5, UNK_ID]


def test_options_change_the_fingerprint():
    a = train_tokenizer("word", TEXTS)
    assert a.fingerprint == train_tokenizer("word", TEXTS).fingerprint
    assert a.fingerprint != train_tokenizer("word", TEXTS, lowercase=True).fingerprint


def test_char_encode_flat_on_a_large_text():
    tok = train_tokenizer("char", TEXTS)
    big = ["".join(TEXTS)] * 2000  # ~0.5M characters
    ids, lengths = tok.encode_flat(big)
    assert ids.dtype == np.int64 and int(lengths.sum()) == sum(map(len, big))


@pytest.mark.parametrize("call, error, message", [
    (lambda: train_tokenizer("sentencepiece", TEXTS), ConfigError, "char, byte, word, bpe"),
    (lambda: train_tokenizer("word", TEXTS, vocab=3), ConfigError, "valid options"),
    (lambda: train_tokenizer("char", TEXTS, min_count=0), ConfigError, "min_count"),
    (lambda: train_tokenizer("bpe", TEXTS, vocab_size=100), ConfigError, "vocab_size"),
    (lambda: train_tokenizer("word", TEXTS, pattern="(a)|b"), ConfigError, "capturing"),
    (lambda: train_tokenizer("word", TEXTS, pattern="(unclosed"), ConfigError, "not a valid regex"),
    (lambda: train_tokenizer("word", []), DataError, "no words"),
    (lambda: train_tokenizer("char", []), DataError, "no text"),
])
def test_bad_options_raise_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_loading_bad_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_tokenizer(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(FormatError, match="not valid JSON"):
        load_tokenizer(bad)
    bad.write_text(json.dumps({"kind": "word"}))
    with pytest.raises(FormatError, match="not an arlm tokenizer"):
        load_tokenizer(bad)
    bad.write_text(json.dumps({"format": "arlm-tokenizer", "version": 1, "kind": "word",
                               "options": {}, "tokens": "abc"}))
    with pytest.raises(FormatError, match="token strings"):
        load_tokenizer(bad)
    bad.write_text(json.dumps({"format": "arlm-tokenizer", "version": 1, "kind": "bpe",
                               "options": {}, "hf": {"model": 1}}))
    with pytest.raises(FormatError, match="HF tokenizer"):
        load_tokenizer(bad)

"""IncrementalDetokenizer: the pieces and the final flush join to ``tokenizer.decode(ids)`` for every
tokenizer kind and any ids (specials, [UNK], broken UTF-8 included), with a bounded number of ids
decoded per token."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arlm.data.detokenize import HOLD_TOKENS, IncrementalDetokenizer
from arlm.data.tokenizers import ByteTokenizer, ForeignTokenizer, Tokenizer, WordTokenizer, train_tokenizer

TEXTS = [
    "Now is the winter of our discontent, said he. Don't!",
    "def f(x):\n    return x ** 2  # café, naïve, 日本語, 😀 ÿ",
    "héllo wörld: ½ € ∑ — «quotes» 😀😁 日本語の文章",
] * 4


def _gpt2_like() -> ForeignTokenizer:
    """A GPT-2-style vocabulary: byte-level BPE whose merges split multi-byte characters."""
    from tokenizers import Tokenizer as HF
    from tokenizers import decoders, models, pre_tokenizers, trainers

    hf = HF(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.train_from_iterator(TEXTS, trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<|endoftext|>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return ForeignTokenizer(hf)


def _word_level() -> ForeignTokenizer:
    """A foreign vocabulary without a decoder: HF joins its tokens with spaces."""
    from tokenizers import Tokenizer as HF
    from tokenizers import models, pre_tokenizers

    vocab = {"<|endoftext|>": 0} | {w: i + 1 for i, w in enumerate(["the", "cat", ".", "sat", "\ufffd"])}
    hf = HF(models.WordLevel(vocab, unk_token="the"))
    hf.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return ForeignTokenizer(hf)


TOKENIZERS: dict[str, Tokenizer] = {
    "char": train_tokenizer("char", TEXTS),
    "byte": ByteTokenizer(),
    "word": train_tokenizer("word", TEXTS),
    "whitespace": train_tokenizer("word", TEXTS, whitespace=True),
    # words that end in U+FFFD are held back like a broken UTF-8 sequence, and must come out right
    "word-fffd": WordTokenizer.from_vocab(["the", "cat", "\ufffd", "a\ufffd", ".", ""]),
    "bpe": train_tokenizer("bpe", TEXTS, vocab_size=300),
    "foreign-bytes": _gpt2_like(),
    "foreign-words": _word_level(),
}


def _broken(tok: Tokenizer) -> list[int]:
    """Ids whose text on their own ends in U+FFFD (a piece of a character, or a word "a\ufffd")."""
    return [i for i in range(min(tok.vocab_size, 2000)) if tok.decode([i]).endswith("\ufffd")] or [0]


def _ids(tok: Tokenizer, max_size: int = 60) -> st.SearchStrategy[list[int]]:
    """Any ids; specials, bytes (the first ids of byte-level vocabularies) and pieces of characters
    often, so that text is held back, and long enough to be cut."""
    special = st.sampled_from(sorted({tok.pad_id, tok.sos_id, tok.eos_id, tok.unk_id or 0}))
    return st.lists(st.one_of(st.integers(0, tok.vocab_size - 1), special,
                              st.integers(0, min(tok.vocab_size, 300) - 1),
                              st.sampled_from(_broken(tok))), max_size=max_size)


def _check(tok: Tokenizer, prefix: list[int], ids: list[int]) -> None:
    detok = IncrementalDetokenizer(tok, prefix)
    assert detok.prompt_text + detok.pending == tok.decode(prefix)
    pieces = [detok.prompt_text]
    for i, t in enumerate(ids):
        pieces.append(detok.add(t))
        # at every step: what is out plus what is held back is the text so far
        assert "".join(pieces) + detok.pending == tok.decode(prefix + ids[: i + 1])
    pieces.append(detok.flush())
    assert "".join(pieces) == tok.decode(prefix + ids) == detok.text


@pytest.mark.slow  # a hypothesis property over every tokenizer kind
@pytest.mark.parametrize("kind", list(TOKENIZERS))
def test_pieces_join_to_the_decoded_text(kind):
    tok = TOKENIZERS[kind]

    @given(_ids(tok, 20), _ids(tok))
    @settings(max_examples=150, deadline=None)
    def check(prefix, ids):
        _check(tok, prefix, ids)

    check()


@pytest.mark.parametrize("kind", ["byte", "bpe", "foreign-bytes"])
def test_text_round_trips_token_by_token(kind):
    tok = TOKENIZERS[kind]

    @given(st.text(max_size=80))
    @settings(max_examples=100, deadline=None)
    def check(text):
        _check(tok, [], tok.encode(text))

    check()


def _bytes_id(tok: Tokenizer, data: bytes) -> int:
    """The id of the token made of ``data`` in a byte-level vocabulary (GPT-2's byte alphabet for BPE)."""
    if isinstance(tok, ByteTokenizer):
        return data[0] + 4
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)]
    others = [b for b in range(256) if b not in printable]
    alphabet = dict(zip(printable + others, [*printable, *range(256, 256 + len(others))], strict=True))
    found = tok.token_to_id("".join(chr(alphabet[b]) for b in data))
    assert found is not None, data
    return found


def _byte_ids(tok: Tokenizer) -> list[int]:
    """The id of each byte value 0..255 in a byte-level vocabulary."""
    return [_bytes_id(tok, bytes([b])) for b in range(256)]


@pytest.mark.slow  # a hypothesis property
@pytest.mark.parametrize("kind", ["byte", "bpe", "foreign-bytes"])
def test_characters_among_broken_bytes(kind):
    """Whole characters, byte by byte, among stray bytes that are never valid UTF-8: long runs of
    held-back text, cut where a character may span the cut."""
    tok = TOKENIZERS[kind]
    byte = _byte_ids(tok)
    char = st.characters(codec="utf-8").map(lambda c: [byte[b] for b in c.encode("utf-8")])
    stray = st.integers(0x80, 0xFF).map(lambda b: [byte[b]])

    @given(st.lists(st.one_of(char, stray, stray), max_size=40))
    @settings(max_examples=300, deadline=None)
    def check(groups):
        _check(tok, [], [i for g in groups for i in g])

    check()


@pytest.mark.parametrize("kind", ["bpe", "foreign-bytes"])
def test_a_cut_never_splits_a_character(kind):
    """A token that ends one character and starts the next (本 = e6 9c ac, 語 = e8 aa 9e; BPE merged
    "ac e8"), after stray bytes: the first cut tried would split 本; the window is cut before it."""
    tok = TOKENIZERS[kind]
    stray = _bytes_id(tok, b"\x80")
    ids = [stray] * 3 + [_bytes_id(tok, bytes([b])) for b in b"\xe6\x9c"]
    ids += [_bytes_id(tok, b"\xac\xe8"), _bytes_id(tok, b"\xaa"), _bytes_id(tok, b"\x9e")]
    assert len(ids) > HOLD_TOKENS  # every token is held back until the last one: the window is cut
    assert tok.decode(ids) == "\ufffd" * 3 + "本語"
    _check(tok, [], ids)


def test_split_characters_are_held_back_until_complete():
    tok = TOKENIZERS["byte"]
    detok = IncrementalDetokenizer(tok, tok.encode("a"))
    pieces = [detok.add(t) for t in tok.encode("€!")]  # € is 3 bytes
    assert pieces == ["", "", "€", "!"]
    assert detok.add(tok.encode("é")[0]) == "" and detok.pending == "\ufffd"
    assert detok.flush() == "\ufffd" and detok.text == "a€!\ufffd"


def test_words_get_their_space_in_context():
    tok = TOKENIZERS["word"]
    detok = IncrementalDetokenizer(tok)
    ids = tok.encode("the winter .")
    assert [detok.add(t) for t in [tok.sos_id, *ids, tok.eos_id]] == ["", "the", " winter", " .", ""]


@pytest.mark.parametrize("kind", list(TOKENIZERS))
@pytest.mark.parametrize("stream", ["text", "random", "broken"])
def test_work_per_token_is_bounded(kind, stream):
    """The ids decoded per token stay bounded however long the sequence (whole decodes would grow
    with it): counted, not timed."""
    import random

    tok = TOKENIZERS[kind]
    rng = random.Random(0)
    if stream == "text":
        ids = tok.encode(" ".join(TEXTS * 8))
    elif stream == "random":
        ids = [rng.randrange(tok.vocab_size) for _ in range(3000)]
    else:  # pieces of characters, long runs of them: text is held back, the window cut
        pieces = _broken(tok)
        ids = [rng.choice(pieces) if rng.random() < 0.9 else rng.randrange(tok.vocab_size)
               for _ in range(3000)]
    decoded = []
    real_decode = tok.decode
    tok.decode = lambda window: decoded.append(len(window)) or real_decode(window)  # type: ignore[method-assign]
    try:
        detok = IncrementalDetokenizer(tok)
        text = "".join(detok.add(t) for t in ids) + detok.flush()
    finally:
        del tok.decode
    assert text == tok.decode(ids)
    # a window holds at most 2 * HOLD_TOKENS + 2 ids; a token decodes it once or twice, a cut a few times
    assert max(decoded) <= 2 * HOLD_TOKENS + 2, max(decoded)
    assert sum(decoded) <= 16 * len(ids), sum(decoded) / len(ids)

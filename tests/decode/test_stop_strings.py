"""Stop strings read each row's text incrementally and stop at the token where the whole decoded text
first contains one, as decoding the row again at every token does."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arlm.data.tokenizers import ByteTokenizer, train_tokenizer
from arlm.decode.search import StopStrings

TEXTS = ["the cat sat on the mat. Don't!", "café, naïve, 日本語 😀 € ½"] * 3
TOKENIZERS = {"byte": ByteTokenizer(), "word": train_tokenizer("word", TEXTS),
              "bpe": train_tokenizer("bpe", TEXTS, vocab_size=300), "char": train_tokenizer("char", TEXTS)}
STOPS = ["at", "t s", "\ufffd", "日本", "€ ½", " ", "cat sat", ". D"]


def first_stop_by_whole_decodes(decode, ids: list[int], stops: list[str]) -> int | None:
    """Today's rule written plainly: the first i where decode(ids[:i + 1]) contains a stop string."""
    return next((i for i in range(len(ids)) if any(s in decode(ids[: i + 1]) for s in stops)), None)


@pytest.mark.parametrize("kind", list(TOKENIZERS))
def test_stops_at_the_same_token_as_whole_decodes(kind):
    tok = TOKENIZERS[kind]
    ids = st.lists(st.one_of(st.integers(0, tok.vocab_size - 1),
                             st.integers(0, min(tok.vocab_size, 200) - 1)), max_size=40)
    text_ids = st.text(alphabet="".join(sorted(set("".join(TEXTS)))), max_size=40).map(tok.encode)
    lines = st.tuples(st.sampled_from(TEXTS), st.integers(0, 20)).map(lambda x: tok.encode(x[0][x[1]:]))

    @given(st.one_of(ids, text_ids, lines), st.lists(st.sampled_from(STOPS), min_size=1, max_size=3))
    @settings(max_examples=200, deadline=None)
    def check(row, stops):
        watch = StopStrings(stops, tok.decode)
        got = next((i for i, t in enumerate(row) if watch.add(0, t)), None)
        assert got == first_stop_by_whole_decodes(tok.decode, row, stops)

    check()

"""Token ids -> text one token at a time, with a bounded amount of work per token.

A token's text is only known in context: a word tokenizer puts a space between words (so a word
reads " cat" after another word and "cat" first), and a byte-level tokenizer (byte, bpe, GPT-2's)
may split one character's UTF-8 bytes over several tokens, decoding the incomplete ones as U+FFFD
until the last byte arrives. Decoding the whole sequence again at every token gives the right text
at a cost that grows with the length (quadratic in all). :class:`IncrementalDetokenizer` decodes only
a short window of recent tokens instead, as vLLM's and HF's ``TextStreamer`` incremental
detokenizers do:

* ``ids[prefix:read]`` is the *context*: tokens whose text is already emitted, kept so that the next
  token is decoded in context (the space before a word); its text is ``decode(ids[prefix:read])``;
* a new token decodes ``ids[prefix:]``; what follows the context's text is new, except a trailing
  U+FFFD, which an incomplete UTF-8 sequence produces and a later byte may still change: that one
  character is *held back*;
* once the window's text no longer ends in U+FFFD, the tokens read so far become the next context
  (``prefix, read = read, len(ids)``), so the window stays a few tokens long;
* a model may also write bytes that are never valid UTF-8; after ``HOLD_TOKENS`` held tokens the
  window is cut before its last ``AFTER_CUT`` tokens (≥ 3 bytes, more than an incomplete UTF-8
  sequence has), where the decoded text splits cleanly, so the window stays short then too.

The ids [PAD], [SOS] and [EOS] are left out, as :meth:`Tokenizer.decode` leaves them out. The
concatenation of every piece :meth:`IncrementalDetokenizer.add` returns and the final
:meth:`~IncrementalDetokenizer.flush` equals ``tokenizer.decode(ids)`` for every tokenizer kind
(tested over random ids in ``tests/data/test_detokenize.py``, which also counts the decoded ids).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from arlm.data.tokenizers import Tokenizer

REPLACEMENT = "\ufffd"  # what an invalid or incomplete UTF-8 sequence decodes to
HOLD_TOKENS = 6  # tokens held back (their text ends in U+FFFD) before the window is cut
AFTER_CUT = 3  # tokens kept after a cut: at least 3 bytes, the longest incomplete UTF-8 sequence


class IncrementalDetokenizer:
    """The text each new token adds, decoding only a short window of recent tokens.

    ``tokenizer``: a :class:`Tokenizer` (or its bound ``decode``), or any function from ids to text
    that reads like one (text that only grows as ids are appended, but for a trailing U+FFFD; the
    text after a finished token reads the same in a window that starts a few tokens earlier).
    ``prefix``: ids already there (a prompt); their text is :attr:`prompt_text`.
    """

    def __init__(self, tokenizer: Tokenizer | Callable[[list[int]], str], prefix: Iterable[int] = ()):
        owner = getattr(tokenizer, "__self__", None)  # tokenizer.decode -> the tokenizer
        if isinstance(owner, Tokenizer):
            tokenizer = owner
        if isinstance(tokenizer, Tokenizer):
            self._decode: Callable[[list[int]], str] = tokenizer.decode
            self._skip = frozenset((tokenizer.pad_id, tokenizer.sos_id, tokenizer.eos_id))
        else:
            self._decode, self._skip = tokenizer, frozenset()
        self._ids: list[int] = []  # every id added, the skipped ones left out
        self._prefix = self._read = 0  # the window is ids[prefix:]; ids[prefix:read] its context
        self._context = ""  # decode(ids[prefix:read]), all of it emitted
        self._window = ""  # decode(ids[prefix:]) after the last token
        self._emitted = 0  # characters of the window after the context already emitted
        self._pieces: list[str] = []
        self.prompt_text = "".join(self.add(t) for t in prefix)

    def add(self, token: int) -> str:
        """Read one more token -> the text it adds (possibly "", when its text is held back)."""
        token = int(token)
        if token in self._skip:
            return ""
        self._ids.append(token)
        try:
            self._window = self._decode(self._ids[self._prefix:])
        except Exception:
            self._ids.pop()  # an id outside the vocabulary: nothing changes
            raise
        new = self._window[len(self._context):]
        final = not new.endswith(REPLACEMENT)
        end = len(new) if final else len(new) - 1  # a trailing U+FFFD may still change
        piece = new[self._emitted:end]
        self._emitted = max(self._emitted, end)
        if final:  # all of the window is text for good: its tokens become the next context
            self._prefix, self._read = self._read, len(self._ids)
            self._context = self._window = self._decode(self._ids[self._prefix:])
            self._emitted = 0
        elif len(self._ids) - self._read > HOLD_TOKENS:
            piece += self._cut()
        self._pieces.append(piece)
        return piece

    def _cut(self) -> str:
        """Make the tokens before the last ``AFTER_CUT`` (or a few more) final, at a cut where the
        window's text splits cleanly -> the text that makes final; "" when no cut splits cleanly."""
        n = len(self._ids)
        for cut in range(n - AFTER_CUT, max(self._read, n - AFTER_CUT - 4), -1):
            head = self._decode(self._ids[self._prefix:cut])
            if not self._window.startswith(head):
                continue  # a character spans the cut
            shown = len(self._context) + self._emitted  # the window's text emitted so far
            self._prefix, self._read = self._read, cut
            self._context = self._decode(self._ids[self._prefix:cut])
            self._emitted = max(0, shown - len(head))
            self._window = self._decode(self._ids[self._prefix:])
            return head[shown:]
        return ""

    @property
    def pending(self) -> str:
        """The text held back so far (a trailing U+FFFD that a later token may still change)."""
        return self._window[len(self._context) + self._emitted:]

    def flush(self) -> str:
        """The end of the sequence: the held-back text, now final."""
        piece = self.pending
        self._emitted += len(piece)
        self._pieces.append(piece)
        return piece

    @property
    def text(self) -> str:
        """Everything emitted so far, the prompt's text included (not the held-back text)."""
        return "".join(self._pieces)

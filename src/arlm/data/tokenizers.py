"""Tokenizers: text <-> token ids. Character, byte, word (regex) and BPE (HF ``tokenizers``).

Every tokenizer shares the same special ids (see :mod:`arlm.models.base`)::

    0 [PAD]   1 [SOS]   2 [EOS]   3 [UNK]   4… regular tokens

``encode`` never adds specials (the data pipeline wraps each sentence in [SOS] … [EOS]); ``decode``
drops [PAD], [SOS] and [EOS] and writes [UNK] as the text "[UNK]", so that a sample shows where the
model produced an unknown token.

=====  ============================================  =========================================
kind   vocabulary                                    lossless (decode(encode(x)) == x)?
=====  ============================================  =========================================
char   characters seen in training (+ "\\n"), sorted  yes, for text over the trained characters
byte   the 256 byte values of UTF-8 (ids 4..259)     always
word   regex words and punctuation, by frequency      no: decode joins tokens with spaces
bpe    byte-level BPE trained with HF tokenizers      always
=====  ============================================  =========================================

A tokenizer saves as one JSON file ``{"format": "arlm-tokenizer", "version": 1, "kind", "options",
"tokens"}`` (bpe keeps HF's own JSON under ``"hf"`` instead of ``"tokens"``); its ``fingerprint`` is
the SHA-256 of that JSON in canonical form, so any change of vocabulary or options changes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from arlm.errors import ConfigError, DataError, FormatError, MismatchError
from arlm.io import atomic_write
from arlm.streams import EOS_ID, PAD_ID, SOS_ID, SPECIAL_TOKENS, UNK_ID

FORMAT = "arlm-tokenizer"
VERSION = 1
NUM_SPECIAL = len(SPECIAL_TOKENS)


class Tokenizer:
    """The base of every tokenizer: a vocabulary (id -> token string) and encode/decode.

    Subclasses set ``kind``, ``lossless`` and ``OPTIONS`` (training options and their defaults),
    and implement ``train``, ``encode`` and ``_join``.
    """

    kind: ClassVar[str] = ""
    lossless: ClassVar[bool] = False
    OPTIONS: ClassVar[dict[str, Any]] = {}
    # the ids that frame and pad sequences (arlm's own; a foreign vocabulary has its own)
    pad_id: int = PAD_ID
    sos_id: int = SOS_ID
    eos_id: int = EOS_ID
    unk_id: int | None = UNK_ID

    def __init__(self, tokens: Sequence[str], options: dict[str, Any] | None = None):
        tokens = [t for t in tokens if t not in SPECIAL_TOKENS]
        self._vocab: list[str] = [*SPECIAL_TOKENS, *tokens]
        self._ids: dict[str, int] = {t: i for i, t in enumerate(self._vocab)}
        if len(self._ids) != len(self._vocab):
            raise FormatError(f"the {self.kind} tokenizer's vocabulary has duplicate tokens; "
                              "retrain the tokenizer")
        self.options: dict[str, Any] = {**self.OPTIONS, **(options or {})}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, options={self.options})"

    # --------------------------------------------------------------------------- vocabulary
    @property
    def vocab_size(self) -> int:
        """Number of ids, the 4 specials included."""
        return len(self._vocab)

    @property
    def vocab(self) -> list[str]:
        """Token string of each id: ``vocab[0:4]`` are the specials."""
        return list(self._vocab)

    def token_to_id(self, token: str) -> int | None:
        """The id of a token string, or None if it is not in the vocabulary."""
        return self._ids.get(token)

    def id_to_token(self, i: int) -> str:
        """The token string of an id."""
        if not 0 <= i < len(self._vocab):
            raise MismatchError(f"token id {i} is outside this {self.kind} tokenizer's vocabulary "
                                f"of {self.vocab_size}; use the tokenizer the ids were made with")
        return self._vocab[i]

    # ------------------------------------------------------------------------ encode/decode
    @classmethod
    def train(cls, texts: Iterable[str], **options: Any) -> Tokenizer:
        """Build the vocabulary from training texts."""
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, no specials added; unknown pieces become [UNK]."""
        raise NotImplementedError

    def encode_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Encode many texts at once -> (all ids concatenated (int64), number of ids of each text).

        The fast path for whole corpora; subclasses override it with vectorised versions.
        """
        parts = [self.encode(t) for t in texts]
        lengths = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
        ids = np.fromiter((i for p in parts for i in p), dtype=np.int64, count=int(lengths.sum()))
        return ids, lengths

    def encode_lines(self, lines: Sequence[str]) -> list[np.ndarray]:
        """One id array per line (no specials)."""
        ids, lengths = self.encode_flat(lines)
        return np.split(ids, np.cumsum(lengths)[:-1]) if len(lines) else []

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``: [PAD], [SOS], [EOS] dropped, [UNK] written as "[UNK]"."""
        ids = [int(i) for i in ids]
        for i in ids:
            if not 0 <= i < len(self._vocab):
                self.id_to_token(i)  # raises MismatchError
        dropped = {self.pad_id, self.sos_id, self.eos_id}
        return self._join([i for i in ids if i not in dropped])

    def _join(self, ids: list[int]) -> str:
        raise NotImplementedError

    # ------------------------------------------------------------------------------ saving
    def to_json(self) -> dict[str, Any]:
        """Everything needed to rebuild this tokenizer, as plain JSON data."""
        return {"format": FORMAT, "version": VERSION, "kind": self.kind, "options": self.options,
                "tokens": self._vocab[NUM_SPECIAL:]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tokenizer:
        """Rebuild from :meth:`to_json` data (:func:`tokenizer_from_json` checks the kind)."""
        tokens = data.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise FormatError(f"the {cls.kind} tokenizer JSON has no list of token strings; "
                              "save it again with Tokenizer.save")
        return cls(tokens, data.get("options") or {})

    def save(self, path: str | os.PathLike) -> None:
        """Write the tokenizer as JSON, atomically."""
        with atomic_write(path) as f:
            json.dump(self.to_json(), f, ensure_ascii=False, indent=1)
            f.write("\n")

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the canonical JSON: equal fingerprints mean identical encodings."""
        if not hasattr(self, "_fingerprint"):
            canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"),
                                   ensure_ascii=False)
            self._fingerprint = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
        return self._fingerprint


def _check_count(name: str, value: Any, minimum: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer ≥ {minimum}, not {value!r}")


def _as_texts(texts: Iterable[str]) -> Iterable[str]:
    return [texts] if isinstance(texts, str) else texts


# ---------------------------------------------------------------------------------------- char
class CharTokenizer(Tokenizer):
    """One token per character seen in training (≥ ``min_count`` times), sorted by code point.

    "\\n" is always in the vocabulary, so documents (which contain newlines) encode without [UNK].
    Encoding maps the UTF-32 code points through a lookup table with numpy.
    """

    kind = "char"
    lossless = True
    OPTIONS: ClassVar[dict[str, Any]] = {"min_count": 1}

    def __init__(self, tokens: Sequence[str], options: dict[str, Any] | None = None):
        if any(len(t) != 1 for t in tokens if t not in SPECIAL_TOKENS):
            raise FormatError("a char tokenizer's tokens must be single characters; "
                              "save it again with Tokenizer.save")
        super().__init__(tokens, options)
        points = [ord(t) for t in self._vocab[NUM_SPECIAL:]]
        size = max(points, default=0) + 2  # the last slot catches every larger code point
        self._table = np.full(size, UNK_ID, dtype=np.int64)
        self._table[points] = np.arange(NUM_SPECIAL, self.vocab_size)

    @classmethod
    def train(cls, texts: Iterable[str], min_count: int = 1) -> CharTokenizer:
        _check_count("min_count", min_count, 1)
        counts = np.zeros(0, dtype=np.int64)
        chunk: list[str] = []
        size, seen_text = 0, False
        for t in [*_as_texts(texts), None]:  # None: count the last chunk
            if t is not None:
                seen_text = True
                chunk.append(t)
                size += len(t)
            if t is None or size > 4_000_000:  # count in chunks: bounded memory
                new = np.bincount(_code_points("".join(chunk)))
                counts, new = (counts, new) if len(counts) >= len(new) else (new, counts)
                counts[: len(new)] += new
                chunk, size = [], 0
        if not seen_text:
            raise DataError("no text to train the char tokenizer on; give a non-empty split")
        chars = [chr(c) for c in np.flatnonzero(counts >= min_count)]
        if "\n" not in chars:
            chars = sorted([*chars, "\n"])
        return cls(chars, {"min_count": min_count})

    def _lookup(self, text: str) -> np.ndarray:
        points = _code_points(text)
        return self._table[np.minimum(points, len(self._table) - 1)]

    def encode(self, text: str) -> list[int]:
        return self._lookup(text).tolist()

    def encode_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
        return self._lookup("".join(texts)), lengths

    def _join(self, ids: list[int]) -> str:
        return "".join(self._vocab[i] for i in ids)


def _code_points(text: str) -> np.ndarray:
    data = text.encode("utf-32-le", "surrogatepass")
    return np.frombuffer(data, dtype=np.uint32).astype(np.int64)


# ---------------------------------------------------------------------------------------- byte
def _byte_name(b: int) -> str:
    return chr(b) if 32 <= b < 127 else f"<0x{b:02X}>"


class ByteTokenizer(Tokenizer):
    """The 256 bytes of the UTF-8 encoding, byte b at id 4 + b. Nothing to train; always lossless.

    Printable ASCII bytes are named by their character, the others ``<0xNN>``. A byte sequence that
    is not valid UTF-8 (a sample can produce one) decodes with U+FFFD replacement characters.
    """

    kind = "byte"
    lossless = True

    def __init__(self, tokens: Sequence[str] | None = None, options: dict[str, Any] | None = None):
        expected = [_byte_name(b) for b in range(256)]
        if tokens is not None and list(tokens) != expected:
            raise FormatError("a byte tokenizer's tokens must be the 256 byte names; "
                              "save it again with Tokenizer.save")
        super().__init__(expected, options)
        for b in range(256):  # "<0x41>" finds "A" too
            self._ids.setdefault(f"<0x{b:02X}>", NUM_SPECIAL + b)

    @classmethod
    def train(cls, texts: Iterable[str] = ()) -> ByteTokenizer:
        return cls()

    def encode(self, text: str) -> list[int]:
        return (np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)
                + NUM_SPECIAL).tolist()

    def encode_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        encoded = [t.encode("utf-8") for t in texts]
        lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
        ids = np.frombuffer(b"".join(encoded), dtype=np.uint8).astype(np.int64) + NUM_SPECIAL
        return ids, lengths

    def _join(self, ids: list[int]) -> str:
        parts, run = [], bytearray()
        for i in ids:
            if i == UNK_ID:
                parts.append(run.decode("utf-8", errors="replace") + "[UNK]")
                run = bytearray()
            else:
                run.append(i - NUM_SPECIAL)
        return "".join(parts) + run.decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------------------- word
DEFAULT_WORD_PATTERN = r"\w+|[^\w\s]"  # words, and each punctuation mark on its own


class WordTokenizer(Tokenizer):
    """Words by a regex (default: runs of word characters, and single punctuation marks).

    Options: ``pattern``; ``lowercase``; ``whitespace=True`` splits on whitespace only (text that is
    already tokenized, as KenLM expects); ``min_count`` and ``max_vocab`` (the largest vocab_size,
    specials included) drop rare words, which then encode as [UNK]. The vocabulary is ordered by
    frequency, then alphabetically. Not lossless: decode joins the words with single spaces.
    """

    kind = "word"
    lossless = False
    OPTIONS: ClassVar[dict[str, Any]] = {"pattern": DEFAULT_WORD_PATTERN, "lowercase": False,
                                         "whitespace": False, "min_count": 1, "max_vocab": None}

    def __init__(self, tokens: Sequence[str], options: dict[str, Any] | None = None):
        super().__init__(tokens, options)
        o = self.options
        self._regex = _compile(o["pattern"])
        self._lower = bool(o["lowercase"])
        self._whitespace = bool(o["whitespace"])

    @classmethod
    def from_vocab(cls, vocab: Sequence[str], **options: Any) -> WordTokenizer:
        """A word tokenizer with a given vocabulary (e.g. an ARPA file's words), ids in that order.

        ``vocab`` is either the full id -> token list (its first four entries are the specials,
        under arlm's names or KenLM's ``<s>``/``</s>``/``<unk>``) or the regular words only (ids
        from 4).
        """
        _check_options(cls, options)
        vocab = list(vocab)
        if len(vocab) >= NUM_SPECIAL and (
                tuple(vocab[:NUM_SPECIAL]) == SPECIAL_TOKENS
                or set(vocab[1:NUM_SPECIAL]) == {"<s>", "</s>", "<unk>"}):
            vocab = vocab[NUM_SPECIAL:]
        return cls(vocab, options)

    @classmethod
    def train(cls, texts: Iterable[str], pattern: str = DEFAULT_WORD_PATTERN,
              lowercase: bool = False, whitespace: bool = False, min_count: int = 1,
              max_vocab: int | None = None) -> WordTokenizer:
        _check_count("min_count", min_count, 1)
        _check_count("max_vocab", max_vocab, NUM_SPECIAL + 1, allow_none=True)
        options = {"pattern": pattern, "lowercase": lowercase, "whitespace": whitespace,
                   "min_count": min_count, "max_vocab": max_vocab}
        splitter = cls([], options)
        counts: Counter[str] = Counter()
        for t in _as_texts(texts):
            counts.update(splitter.split(t))
        if not counts:
            raise DataError("no words to train the word tokenizer on; give a non-empty split")
        words = sorted((w for w, c in counts.items() if c >= min_count and w not in SPECIAL_TOKENS),
                       key=lambda w: (-counts[w], w))
        if max_vocab is not None:
            words = words[: max_vocab - NUM_SPECIAL]
        return cls(words, options)

    def split(self, text: str) -> list[str]:
        """The word strings of ``text`` (before the vocabulary lookup)."""
        if self._lower:
            text = text.lower()
        return text.split() if self._whitespace else self._regex.findall(text)

    def encode(self, text: str) -> list[int]:
        get = self._ids.get
        return [get(w, UNK_ID) for w in self.split(text)]

    def encode_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        get, split = self._ids.get, self.split
        lengths = np.empty(len(texts), dtype=np.int64)
        ids: list[int] = []
        for n, t in enumerate(texts):
            words = split(t)
            lengths[n] = len(words)
            ids.extend([get(w, UNK_ID) for w in words])
        return np.array(ids, dtype=np.int64), lengths

    def _join(self, ids: list[int]) -> str:
        return " ".join(self._vocab[i] for i in ids)


def _compile(pattern: str) -> re.Pattern:
    try:
        regex = re.compile(pattern)
    except (re.error, TypeError) as e:
        raise ConfigError(f"the word pattern {pattern!r} is not a valid regex ({e}); "
                          f"fix it, e.g. {DEFAULT_WORD_PATTERN!r}") from None
    if regex.groups:
        raise ConfigError(f"the word pattern {pattern!r} has capturing groups; "
                          "write them as (?:...)")
    return regex


# ------------------------------------------------------------------------------------ HF-backed
class _HFBacked:
    """Encoding, decoding and JSON for a tokenizer held by HF ``tokenizers`` (in ``self._hf``)."""

    kind: ClassVar[str]
    options: dict[str, Any]
    _hf: Any

    def encode(self, text: str) -> list[int]:
        return self._hf.encode(text, add_special_tokens=False).ids

    def encode_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        parts: list[list[int]] = []
        for start in range(0, len(texts), 8192):
            batch = self._hf.encode_batch_fast(list(texts[start:start + 8192]),
                                               add_special_tokens=False)
            parts.extend(e.ids for e in batch)
        lengths = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
        ids = np.fromiter((i for p in parts for i in p), dtype=np.int64, count=int(lengths.sum()))
        return ids, lengths

    def _join(self, ids: list[int]) -> str:
        return self._hf.decode(ids, skip_special_tokens=False)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "kind": self.kind, "options": self.options,
                "hf": json.loads(self._hf.to_str())}

    @classmethod
    def from_json(cls, data: dict[str, Any]):
        from tokenizers import Tokenizer as HFTokenizer

        try:
            hf = HFTokenizer.from_str(json.dumps(data["hf"]))
        except Exception as e:  # KeyError, or HF's own parse error
            raise FormatError(f"the {cls.kind} tokenizer JSON has no valid HF tokenizer under 'hf' ({e}); "
                              "save it again with Tokenizer.save") from None
        return cls(hf, data.get("options") or {})


# ----------------------------------------------------------------------------------------- bpe
class BpeTokenizer(_HFBacked, Tokenizer):
    """Byte-level BPE trained with HF ``tokenizers`` (as GPT-2): lossless on any text.

    Options: ``vocab_size`` (specials and the 256 bytes included, ≥ 260) and ``min_frequency`` (of a
    pair to be merged). Special-token strings inside the text ("[SOS]") are encoded as plain text.
    """

    kind = "bpe"
    lossless = True
    OPTIONS: ClassVar[dict[str, Any]] = {"vocab_size": 4096, "min_frequency": 2}

    def __init__(self, hf: Any, options: dict[str, Any] | None = None):
        hf.encode_special_tokens = True  # "[SOS]" in the text is text, not the special token
        vocab = sorted(hf.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1])
        tokens = [t for t, _ in vocab]
        if tuple(tokens[:NUM_SPECIAL]) != SPECIAL_TOKENS or [i for _, i in vocab] != list(
                range(len(vocab))):
            raise FormatError("the BPE tokenizer must have [PAD] [SOS] [EOS] [UNK] at ids 0..3 and "
                              "no gaps; train it with arlm")
        super().__init__(tokens[NUM_SPECIAL:], options)
        self._hf = hf

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 4096,
              min_frequency: int = 2) -> BpeTokenizer:
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        _check_count("vocab_size", vocab_size, NUM_SPECIAL + 256)
        _check_count("min_frequency", min_frequency, 1)
        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                      special_tokens=list(SPECIAL_TOKENS), show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        hf.train_from_iterator(_as_texts(texts), trainer)
        return cls(hf, {"vocab_size": vocab_size, "min_frequency": min_frequency})


# ------------------------------------------------------------------------------------- foreign
class ForeignTokenizer(_HFBacked, Tokenizer):
    """Somebody else's vocabulary, read from an HF ``tokenizers`` file (a GPT-2 folder's tokenizer.json).

    Its ids are the file's own: no [PAD]/[SOS]/[EOS]/[UNK] are reserved. One token, ``boundary``
    (GPT-2's ``<|endoftext|>``), both opens and closes a sequence, and pads; a byte-level vocabulary
    has no unknown pieces, so ``unk_id`` is None. Not trainable: it comes with the model.
    """

    kind = "foreign"
    lossless = True
    OPTIONS: ClassVar[dict[str, Any]] = {"boundary": "<|endoftext|>"}
    unk_id = None

    def __init__(self, hf: Any, options: dict[str, Any] | None = None):
        self.options = {**self.OPTIONS, **(options or {})}
        vocab = sorted(hf.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1])
        if [i for _, i in vocab] != list(range(len(vocab))):
            raise FormatError("the HF tokenizer's ids have gaps; arlm needs ids 0..V-1")
        self._vocab = [t for t, _ in vocab]
        self._ids = dict(vocab)
        boundary = self._ids.get(self.options["boundary"])
        if boundary is None:
            raise FormatError(f"the HF tokenizer has no {self.options['boundary']!r} token to frame "
                              "sequences; name its boundary token in the options")
        self.pad_id = self.sos_id = self.eos_id = boundary
        self._hf = hf

    @classmethod
    def from_file(cls, path: str | os.PathLike, boundary: str = "<|endoftext|>") -> ForeignTokenizer:
        """Read an HF ``tokenizer.json``."""
        from tokenizers import Tokenizer as HFTokenizer

        try:
            hf = HFTokenizer.from_file(str(path))
        except Exception as e:  # HF's own parse error
            raise FormatError(f"{path} is not an HF tokenizers file ({e}); pass the tokenizer.json "
                              "that came with the model") from None
        return cls(hf, {"boundary": boundary})

    @classmethod
    def train(cls, texts: Iterable[str], **options: Any) -> Tokenizer:
        raise ConfigError("a foreign tokenizer comes with its model and cannot be trained; "
                          "train a char, byte, word or bpe tokenizer instead")


# --------------------------------------------------------------------------------------- pixel
PIXEL_CHARS = "0123456789abcdefghijklmnopqrstuvwxyz"  # grey level g is written PIXEL_CHARS[g]


class PixelTokenizer(CharTokenizer):
    """Grey-level images as text: one character per pixel, grey level g <-> id 4 + g (the digits'
    ``VOCAB`` of :mod:`arlm.data.images`). An image is a line of H·W characters ``PIXEL_CHARS[g]``
    in raster order (the ``digits`` corpus), so every tokenizer-based tool reads images. Its
    vocabulary is fixed by ``levels``: nothing is learned from data.
    """

    kind = "pixel"
    lossless = True
    OPTIONS: ClassVar[dict[str, Any]] = {"height": 8, "width": 8, "levels": 17}

    def __init__(self, tokens: Sequence[str] | None = None, options: dict[str, Any] | None = None):
        options = {**self.OPTIONS, **(options or {})}
        levels = int(options["levels"])
        if not 2 <= levels <= len(PIXEL_CHARS):
            raise ConfigError(f"a pixel tokenizer has 2..{len(PIXEL_CHARS)} grey levels, not {levels}")
        expected = list(PIXEL_CHARS[:levels])
        if tokens is not None and [t for t in tokens if t not in SPECIAL_TOKENS] != expected:
            raise FormatError("a pixel tokenizer's tokens must be its grey-level characters in order; "
                              "save it again with Tokenizer.save")
        super().__init__(expected, options)  # a char tokenizer over the grey-level characters

    @property
    def image_shape(self) -> tuple[int, int]:
        """(H, W) of the images."""
        return int(self.options["height"]), int(self.options["width"])

    @classmethod
    def train(cls, texts: Iterable[str] = (), **options: Any) -> PixelTokenizer:
        return cls(None, options)


# ----------------------------------------------------------------------------------------- API
TOKENIZERS: dict[str, type[Tokenizer]] = {
    "char": CharTokenizer, "byte": ByteTokenizer, "word": WordTokenizer, "bpe": BpeTokenizer,
    "foreign": ForeignTokenizer, "pixel": PixelTokenizer}
TRAINABLE = ("char", "byte", "word", "bpe")


def _check_options(cls: type[Tokenizer], options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - set(cls.OPTIONS))
    if unknown:
        valid = ", ".join(cls.OPTIONS) or "none"
        raise ConfigError(f"unknown option {', '.join(unknown)} for the {cls.kind} tokenizer; "
                          f"valid options: {valid}")


def train_tokenizer(kind: str, texts: Iterable[str], **options: Any) -> Tokenizer:
    """Train a tokenizer of ``kind`` (char, byte, word, bpe) on ``texts`` (a corpus's lines)."""
    if kind not in TRAINABLE:
        raise ConfigError(f"unknown tokenizer {kind!r}; choose one of {', '.join(TRAINABLE)}")
    cls = TOKENIZERS[kind]
    _check_options(cls, options)
    return cls.train(texts, **options)


def tokenizer_from_json(data: Any) -> Tokenizer:
    """Rebuild a tokenizer from the dict that :meth:`Tokenizer.to_json` made."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise FormatError("this JSON is not an arlm tokenizer (no \"format\": \"arlm-tokenizer\"); "
                          "pass a tokenizer.json saved by arlm")
    if data.get("version") != VERSION:
        raise FormatError(f"tokenizer format version {data.get('version')!r} is not supported "
                          f"(this arlm reads version {VERSION}); retrain or upgrade arlm")
    kind = data.get("kind")
    if kind not in TOKENIZERS:
        raise FormatError(f"the tokenizer JSON names an unknown kind {kind!r}; "
                          f"known: {', '.join(TOKENIZERS)}")
    options = data.get("options") or {}
    if not isinstance(options, dict):
        raise FormatError("the tokenizer JSON's options are not an object; save it again")
    _check_options(TOKENIZERS[kind], options)
    return TOKENIZERS[kind].from_json(data)


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Read a tokenizer saved by :meth:`Tokenizer.save`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"tokenizer file {path} does not exist; save one with Tokenizer.save")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FormatError(f"{path} is not valid JSON ({e}); the tokenizer file is damaged"
                          ) from None
    try:
        return tokenizer_from_json(data)
    except FormatError as e:
        raise FormatError(f"{path}: {e}") from None

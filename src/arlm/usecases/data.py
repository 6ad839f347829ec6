"""Data for the use cases: a corpus, a tokenizer trained on it, and its splits encoded.

* :func:`prepare_data`: the training data of a run, the ``train`` split and an optional ``val``
  split (:class:`TrainingData`), with a tokenizer trained on the training split unless one is given;
* :func:`encode_split`: one split to score with a model's own tokenizer (:class:`CorpusSplit`);
* :func:`order_spec`: an order for a corpus's (or a tokenizer's) sequences.

Encoded splits are cached on disk (:mod:`arlm.data.cache`). Image corpora (``digits``) are read with
their own pixel tokenizer, whatever tokenizer is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

from arlm.data.cache import EncodedSplit, encode_corpus
from arlm.data.corpora import Corpus, load_corpus
from arlm.data.orders import OrderSpec
from arlm.data.tokenizers import PixelTokenizer, Tokenizer, train_tokenizer
from arlm.errors import MismatchError


@dataclass
class TokenizerSpec:
    """How to build a tokenizer: a kind and its options (see arlm.data.tokenizers)."""

    kind: str = "word"
    lowercase: bool = False
    vocab_size: int | None = None  # bpe: merges target; word: keep the most frequent
    min_count: int = 1

    def options(self) -> dict:
        """The keyword arguments of :func:`~arlm.data.tokenizers.train_tokenizer` for this kind."""
        opts: dict = {}
        if self.kind == "word":
            opts["lowercase"] = self.lowercase
            opts["min_count"] = self.min_count
            if self.vocab_size is not None:
                opts["max_vocab"] = self.vocab_size
        elif self.kind == "whitespace":
            opts["whitespace"] = True
            opts["min_count"] = self.min_count
            if self.vocab_size is not None:
                opts["max_vocab"] = self.vocab_size
        elif self.kind == "char":
            opts["min_count"] = self.min_count
        elif self.kind == "bpe" and self.vocab_size is not None:
            opts["vocab_size"] = self.vocab_size
        return opts


def image_shape(corpus_or_tokenizer) -> tuple[int, int] | None:
    """(H, W) when a corpus or tokenizer is of images (``digits``, the pixel tokenizer), else None."""
    return getattr(corpus_or_tokenizer, "image_shape", None)


def build_tokenizer(corpus: Corpus, spec: TokenizerSpec, split: str = "train") -> Tokenizer:
    """Train a tokenizer of ``spec`` on the ``split`` lines of ``corpus`` (an image corpus: its own
    pixel tokenizer, whatever ``spec`` says)."""
    if image_shape(corpus) is not None:
        return corpus.tokenizer()
    kind = "word" if spec.kind == "whitespace" else spec.kind
    return train_tokenizer(kind, corpus.lines(split), **spec.options())


def order_spec(name: str, data: Corpus | Tokenizer, seed: int = 0) -> OrderSpec:
    """The order ``name`` for a corpus's (or a tokenizer's) sequences: text orders for text; for
    images also the pixel orders of their shape. A bad name, or an order that does not fit the data
    (a pixel order on text, Hilbert on a non-square image), is a ConfigError."""
    return OrderSpec(name, seed, image_shape(data))


def _corpus_and_tokenizer(corpus: str | Corpus, tokenizer: TokenizerSpec | Tokenizer, split: str,
                          encoding: str) -> tuple[Corpus, Tokenizer]:
    """The corpus (loaded by name or path), the tokenizer (trained on ``split`` unless one is given),
    checked to agree on text or images."""
    corp = corpus if isinstance(corpus, Corpus) else load_corpus(corpus, encoding)
    tok = tokenizer if isinstance(tokenizer, Tokenizer) else build_tokenizer(corp, tokenizer, split)
    if (image_shape(corp) is None) != (not isinstance(tok, PixelTokenizer)):
        raise MismatchError(f"the model reads {'images' if isinstance(tok, PixelTokenizer) else 'text'} "
                            f"but corpus {corp.name} is {'images' if image_shape(corp) else 'text'}; "
                            + ("pass --corpus digits" if isinstance(tok, PixelTokenizer)
                               else "pass a text corpus"))
    return corp, tok


@dataclass
class TrainingData:
    """A corpus, its tokenizer, and the encoded training (and validation) splits of a run."""

    corpus: Corpus
    tokenizer: Tokenizer
    train: EncodedSplit
    val: EncodedSplit | None


def prepare_data(corpus: str | Corpus, tokenizer: TokenizerSpec | Tokenizer, split: str = "train",
                 val_split: str | None = "val", unit: str = "lines", encoding: str = "utf-8"
                 ) -> TrainingData:
    """Load ``corpus`` (a name or path), train the tokenizer on ``split`` (unless one is given) and
    encode ``split`` for training and ``val_split`` for validation (None or "": none)."""
    corp, tok = _corpus_and_tokenizer(corpus, tokenizer, split, encoding)
    train = encode_corpus(corp, split, tok, unit)
    val = encode_corpus(corp, val_split, tok, unit) if val_split else None
    return TrainingData(corp, tok, train, val)


@dataclass
class CorpusSplit:
    """One split of a corpus encoded with a model's tokenizer, to score: ``encoded`` holds the
    ``[SOS] … [EOS]`` stream and the characters and bytes it covers."""

    corpus: Corpus
    tokenizer: Tokenizer
    name: str  # train, val, test or all
    encoded: EncodedSplit


def encode_split(corpus: str | Corpus, tokenizer: Tokenizer, split: str = "test", unit: str = "lines",
                 encoding: str = "utf-8") -> CorpusSplit:
    """The ``split`` of ``corpus`` (a name or path) encoded with ``tokenizer`` (a model's), checked to
    be of the kind the model reads (text or images)."""
    corp, tok = _corpus_and_tokenizer(corpus, tokenizer, split, encoding)
    return CorpusSplit(corp, tok, split, encode_corpus(corp, split, tok, unit))

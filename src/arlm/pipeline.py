"""The steps that commands string together: corpus → tokenizer, and model folders.

A model folder holds ``config.json`` (with ``family``), the weights or tables the family saves, and
``tokenizer.json``. :func:`load_model` reads a folder (or an ARPA file, whose tokenizer is KenLM's:
whitespace-separated words) and returns the model with its tokenizer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from arlm.data.corpora import Corpus
from arlm.data.tokenizers import Tokenizer, WordTokenizer, load_tokenizer, train_tokenizer
from arlm.errors import ConfigError, DataError, FormatError, MismatchError
from arlm.io import atomic_dir
from arlm.models.base import ARModel
from arlm.models.neural import load_neural
from arlm.models.ngram import NGramModel


@dataclass
class TokenizerSpec:
    """How to build a tokenizer: a kind and its options (see arlm.data.tokenizers)."""

    kind: str = "word"
    lowercase: bool = False
    vocab_size: int | None = None  # bpe: merges target; word: keep the most frequent
    min_count: int = 1

    def options(self) -> dict:
        opts: dict = {}
        if self.kind == "word":
            opts["lowercase"] = self.lowercase
            opts["min_count"] = self.min_count
            if self.vocab_size:
                opts["max_vocab"] = self.vocab_size
        elif self.kind == "whitespace":
            opts["whitespace"] = True
            opts["min_count"] = self.min_count
            if self.vocab_size:
                opts["max_vocab"] = self.vocab_size
        elif self.kind == "char":
            opts["min_count"] = self.min_count
        elif self.kind == "bpe" and self.vocab_size:
            opts["vocab_size"] = self.vocab_size
        return opts


def build_tokenizer(corpus: Corpus, spec: TokenizerSpec, split: str = "train") -> Tokenizer:
    """Train a tokenizer of ``spec`` on the ``split`` lines of ``corpus``."""
    kind = "word" if spec.kind == "whitespace" else spec.kind
    return train_tokenizer(kind, corpus.lines(split), **spec.options())


def save_model(folder: str | Path, model: ARModel, tokenizer: Tokenizer) -> Path:
    """Write a model folder atomically: the family's files plus ``tokenizer.json``."""
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        model.save_files(tmp)
        tokenizer.save(tmp / "tokenizer.json")
    return folder


ARPA_SPLITS = ("whitespace", "word")


def load_model(path: str | Path, arpa_split: str = "whitespace",
               lowercase: bool = False) -> tuple[ARModel, Tokenizer]:
    """A model folder or an ARPA file -> (model, tokenizer). Checks that the two belong together.

    An ARPA file holds no tokenizer: its text is split on whitespace (``arpa_split="whitespace"``,
    KenLM's convention for pre-tokenized text) or with arlm's word regex (``"word"``, for ARPA files
    that ``arlm train ngram`` wrote with its default word tokenizer), optionally lowercased.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"model {path} does not exist; train one with `arlm train ngram … --out {path}`")
    if path.is_file():
        return _load_arpa(path, arpa_split, lowercase)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FormatError(f"{path} is not a model folder (no config.json); pass the folder that "
                          "`arlm train` wrote, or an .arpa file")
    try:
        family = json.loads(config_file.read_text()).get("family")
    except (json.JSONDecodeError, AttributeError) as e:
        raise FormatError(f"{config_file} is not valid JSON ({e}); the model folder is damaged") from e
    loaders = {"ngram": NGramModel.load, "window": load_neural, "rnn": load_neural,
               "transformer": load_neural}
    if family not in loaders:
        raise FormatError(f"{config_file} names an unknown model family {family!r}; "
                          f"known: {', '.join(loaders)}")
    model = loaders[family](path)
    tokenizer = load_tokenizer(path / "tokenizer.json")
    model_vocab = getattr(model, "vocab", None)
    if tokenizer.vocab_size != model.vocab_size or (
            model_vocab is not None and list(model_vocab) != list(tokenizer.vocab)):
        raise MismatchError(f"the tokenizer in {path} does not match the model ({tokenizer.vocab_size} "
                            f"vs {model.vocab_size} tokens, or other tokens); save a model and its "
                            "tokenizer together, as `arlm train` does")
    return model, tokenizer


def _load_arpa(path: Path, split: str, lowercase: bool) -> tuple[ARModel, Tokenizer]:
    from arlm.interop.arpa import read_arpa

    if split not in ARPA_SPLITS:
        raise ConfigError(f"unknown ARPA text split {split!r}; choose one of {', '.join(ARPA_SPLITS)}")
    model = read_arpa(path)
    tokenizer = WordTokenizer.from_vocab(model.vocab, whitespace=split == "whitespace",
                                         lowercase=lowercase)
    return model, tokenizer

"""Tokenized corpus splits as flat ``[SOS] … [EOS]`` streams, cached on disk as ``.npy``.

``encode_corpus(corpus, split, tokenizer)`` returns an :class:`EncodedSplit`: one flat array of
token ids in which every sequence is ``[SOS] tokens… [EOS]``, sequences back to back. A sequence is
a line (``unit="lines"``, the "sentences" of n-gram models) or a whole document
(``unit="documents"``).

The array is cached under ``cache_dir`` (default ``$ARLM_CACHE``, else ``~/.cache/arlm``) as
``<key>.npy`` plus a ``<key>.json`` sidecar, where the key hashes the corpus fingerprint, the split,
the unit, the tokenizer fingerprint and :data:`FORMAT_VERSION`. So a changed corpus or tokenizer
never reuses a stale cache. Both files are written atomically and the sidecar last: a crash leaves
no cache (never half of one), and the next call rebuilds it. If the cache folder cannot be written,
the split is encoded in memory, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from arlm.data.corpora import Corpus
from arlm.data.tokenizers import Tokenizer
from arlm.errors import ConfigError, UnwritableError
from arlm.io import atomic_write
from arlm.streams import frame_sequences

FORMAT_VERSION = 2  # 2: the sidecar records num_bytes
UNITS = ("lines", "documents")


@dataclass(frozen=True)
class EncodedSplit:
    """A split as one token stream.

    tokens: flat ids (uint16 when the vocabulary fits, else uint32; read-only, often a memmap),
        each sequence ``[SOS] … [EOS]``.
    num_chars: characters the stream stands for, for bits per character: each line's (or
        document's) characters plus one for the newline that its [EOS] stands for.
    num_sequences: number of ``[SOS] … [EOS]`` sequences (lines or documents).
    num_bytes: UTF-8 bytes the stream stands for, for bits per byte, counted like ``num_chars``
        (each text's bytes plus one for its newline): the unit that compares any two tokenizers.
        None where unknown (a stream cut or reordered by hand).
    """

    tokens: np.ndarray
    num_chars: int
    num_sequences: int
    num_bytes: int | None = None

    @property
    def num_tokens(self) -> int:
        """Length of the stream, [SOS] and [EOS] included."""
        return len(self.tokens)


def default_cache_dir() -> Path:
    """``$ARLM_CACHE`` if set, else ``~/.cache/arlm``."""
    return Path(os.environ.get("ARLM_CACHE") or Path.home() / ".cache" / "arlm")


def cache_key(corpus: Corpus, split: str, tokenizer: Tokenizer, unit: str) -> str:
    """The file stem of a cached split: changes with corpus, split, unit, tokenizer or format."""
    parts = {"format": FORMAT_VERSION, "corpus": corpus.fingerprint, "split": split, "unit": unit,
             "tokenizer": tokenizer.fingerprint}
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]
    return f"{_safe(corpus.name)}-{split}-{unit}-{tokenizer.kind}-{digest}"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)[-40:].strip("_") or "corpus"


def _encode(corpus: Corpus, split: str, tokenizer: Tokenizer, unit: str) -> EncodedSplit:
    by_line = unit == "lines"
    texts = corpus.lines(split) if by_line else [d.text for d in corpus.documents(split)]
    ids, lengths = tokenizer.encode_flat(texts)
    num_chars = sum(len(t) for t in texts) + len(texts)
    num_bytes = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts) + len(texts)
    tokens = frame_sequences(ids, lengths, tokenizer.vocab_size, tokenizer.sos_id, tokenizer.eos_id)
    tokens.setflags(write=False)  # the same as a cached (memmap) split: read-only
    return EncodedSplit(tokens, num_chars, len(texts), num_bytes)


def _read(npy: Path, sidecar: Path) -> EncodedSplit | None:
    """The cached split, or None when it is missing or does not check out."""
    try:
        meta = json.loads(sidecar.read_text())
        tokens = np.load(npy, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if (meta.get("format") != FORMAT_VERSION or meta.get("num_tokens") != len(tokens)
            or "num_bytes" not in meta):
        return None
    return EncodedSplit(tokens, int(meta["num_chars"]), int(meta["num_sequences"]), int(meta["num_bytes"]))


def _write(npy: Path, sidecar: Path, data: EncodedSplit, description: dict) -> None:
    with atomic_write(npy, "wb") as f:
        np.save(f, data.tokens)
    meta = {"format": FORMAT_VERSION, "num_tokens": data.num_tokens, "num_chars": data.num_chars,
            "num_bytes": data.num_bytes, "num_sequences": data.num_sequences, **description}
    with atomic_write(sidecar) as f:  # written last: its presence says the .npy is complete
        json.dump(meta, f, indent=1)


def encode_corpus(corpus: Corpus, split: str, tokenizer: Tokenizer, unit: str = "lines",
                  cache_dir: str | os.PathLike | None = None, use_cache: bool = True
                  ) -> EncodedSplit:
    """A corpus split as a flat ``[SOS] … [EOS]`` stream, from the disk cache when it is there.

    ``unit="lines"``: one sequence per non-empty line; ``unit="documents"``: one per document.
    ``use_cache=False`` encodes in memory and touches no file.
    """
    if unit not in UNITS:
        raise ConfigError(f"unknown unit {unit!r}; use lines or documents")
    if not use_cache:
        return _encode(corpus, split, tokenizer, unit)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = cache_key(corpus, split, tokenizer, unit)
    npy, sidecar = folder / f"{key}.npy", folder / f"{key}.json"
    cached = _read(npy, sidecar)
    if cached is not None:
        return cached
    data = _encode(corpus, split, tokenizer, unit)
    try:
        _write(npy, sidecar, data, {"corpus": corpus.name, "split": split, "unit": unit,
                                    "tokenizer": tokenizer.kind,
                                    "corpus_fingerprint": corpus.fingerprint,
                                    "tokenizer_fingerprint": tokenizer.fingerprint})
    except (OSError, UnwritableError) as e:
        warnings.warn(f"cannot write the token cache in {folder} ({getattr(e, 'strerror', None) or e}); "
                      "encoding in memory (set ARLM_CACHE to a writable folder to cache)", stacklevel=2)
        return data
    return _read(npy, sidecar) or data

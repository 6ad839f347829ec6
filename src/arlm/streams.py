"""The ground floor: the vocabulary's special ids and ``[SOS] … [EOS]``-framed token streams.

Every arlm tokenizer reserves the same four ids, and every model, decoder and evaluator relies on them:

    [PAD] = 0   fills the right end of a batch row; never a scored target, never predicted
    [SOS] = 1   starts every sequence; read by the model, never predicted
    [EOS] = 2   ends every sequence; predicted and scored (as KenLM scores ``</s>``)
    [UNK] = 3   stands for a piece the vocabulary lacks (an OOV)

A split of a corpus is one flat **stream** of sequences back to back,

    [SOS] a b c [EOS] [SOS] d e [EOS] …

and :func:`sequence_spans` is the one parser of that framing (the evaluator, the n-gram counter and
the orders all use it). A foreign vocabulary (GPT-2's, where ``<|endoftext|>`` both opens and closes
a text) frames its streams with its own ids: pass them as ``sos_id`` / ``eos_id``.

This module imports nothing of arlm but the errors, so every layer can import it.
"""

from __future__ import annotations

import numpy as np

from arlm.errors import DataError

# Special token ids, the same for every arlm tokenizer.
PAD_ID, SOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
SPECIAL_TOKENS = ("[PAD]", "[SOS]", "[EOS]", "[UNK]")


def as_stream(stream) -> np.ndarray:
    """A flat id array -> a 1-D numpy array, not copied where avoidable.

    Accepts numpy (a read-only uint16 memmap stays one), torch tensors, lists, or anything with a
    ``tokens`` attribute holding one of those (an :class:`~arlm.data.cache.EncodedSplit`).
    """
    stream = getattr(stream, "tokens", stream)
    if hasattr(stream, "detach"):  # a torch tensor (imported lazily: this module stays torch-free)
        return stream.detach().cpu().reshape(-1).numpy()
    return np.asarray(stream).reshape(-1)


def sequence_spans(stream, sos_id: int = SOS_ID, eos_id: int = EOS_ID) -> tuple[np.ndarray, np.ndarray]:
    """(start, length) of each ``[SOS] … [EOS]`` sequence of a flat stream, framing included.

    ``stream[start : start + length]`` is one whole sequence, ``[SOS]`` first and ``[EOS]`` last, so
    its content is ``length - 2`` tokens. Raises :class:`DataError` unless the stream is exactly a run
    of such sequences (an empty stream has none). With ``sos_id == eos_id`` the markers pair up in
    order: open, close, open, close, …
    """
    x = as_stream(stream)
    if sos_id == eos_id:
        marks = np.flatnonzero(x == sos_id)
        sos, eos = marks[0::2], marks[1::2]
    else:
        sos, eos = np.flatnonzero(x == sos_id), np.flatnonzero(x == eos_id)
    ok = len(sos) == len(eos) and (len(x) == 0 or (x[0] == sos_id and x[-1] == eos_id)) \
        and bool(np.all(sos < eos)) and bool(np.all(sos[1:] == eos[:-1] + 1))
    if not ok:
        raise DataError("the token stream is not a run of [SOS] … [EOS] sequences; encode the text with "
                        "arlm's tokenizers (encode_corpus), and cut streams between sequences only")
    return sos, eos - sos + 1


def split_sequences(stream, sos_id: int = SOS_ID, eos_id: int = EOS_ID) -> list[np.ndarray]:
    """A flat stream ``[SOS] … [EOS] [SOS] …`` -> one array per sequence, ``[SOS]`` … ``[EOS]``."""
    x = as_stream(stream)
    starts, lengths = sequence_spans(x, sos_id, eos_id)
    return [x[s : s + n] for s, n in zip(starts.tolist(), lengths.tolist(), strict=True)]


def frame_sequences(ids: np.ndarray, lengths: np.ndarray, vocab_size: int,
                    sos_id: int = SOS_ID, eos_id: int = EOS_ID) -> np.ndarray:
    """Wrap consecutive runs of ``ids`` (of the given ``lengths``) in [SOS] … [EOS], vectorised.

    The inverse of :func:`sequence_spans`. The stream is uint16 when the vocabulary fits, else uint32.
    """
    dtype = np.uint16 if vocab_size <= 2**16 else np.uint32
    lengths = np.asarray(lengths, dtype=np.int64)
    out = np.empty(len(ids) + 2 * len(lengths), dtype=dtype)
    starts = np.cumsum(lengths + 2) - (lengths + 2)  # where each [SOS] goes
    content = np.ones(len(out), dtype=bool)
    content[starts] = False
    content[starts + lengths + 1] = False
    out[starts] = sos_id
    out[starts + lengths + 1] = eos_id
    out[content] = ids
    return out

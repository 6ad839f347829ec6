"""The memory-mapped n-gram format: a model folder whose tables are ``.npy`` files opened with ``np.memmap``.

An ARPA file must be read and parsed whole before the first query, and even our safetensors folder
is read into memory. This format is the tables of :class:`~arlm.models.ngram.NGramModel` as they
are used, one fixed-width array per file, so opening a model maps the files and a query touches only
the pages it needs (as KenLM's binary format does)::

    keys.N.npy           (G_N,) int64 sorted   prefix id * V + last word   (orders 2..N)
    logp.N.npy           (G_N,) float64        log10 p(w_N | w_1..w_{N-1}) (orders 1..N)
    backoff.N.npy        (G_N,) float64        log10 backoff weight        (orders 1..N-1)
    index.N.slots.npy    (S_N,) int64          the hash table of keys.N (KeyIndex): the key in each slot
    index.N.pos.npy      (S_N,) int32|int64    its position in keys.N

``config.json`` says ``"storage": "mmap"`` and holds each index's ``home_slots``. The hash tables
are saved too, so the first query does not build them in memory: a lookup reads about two slots.
Tables are written through :func:`open_table` (a writable memmap), so a builder can stream a table
of any size to disk without holding it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from arlm.errors import FormatError
from arlm.models.ngram_counts import KeyIndex

STORAGE = "mmap"


def table_path(folder: Path, name: str, n: int) -> Path:
    return Path(folder) / f"{name}.{n}.npy"


def open_table(folder: Path, name: str, n: int, length: int, dtype=np.float64) -> np.memmap:
    """A new writable (length,) table ``name.n.npy`` in ``folder``, mapped (nothing held in memory)."""
    return np.lib.format.open_memmap(table_path(folder, name, n), mode="w+", dtype=dtype, shape=(length,))


def write_tables(folder: Path, keys: list[np.ndarray], logp: list[np.ndarray],
                 backoff: list[np.ndarray]) -> dict[str, int]:
    """Write every table of a model (and the hash tables of its keys) -> ``{order: home_slots}``."""
    order = len(logp)
    for n in range(1, order + 1):
        np.save(table_path(folder, "logp", n), np.asarray(logp[n - 1], dtype=np.float64))
        if n < order:
            np.save(table_path(folder, "backoff", n), np.asarray(backoff[n - 1], dtype=np.float64))
        if n > 1:
            np.save(table_path(folder, "keys", n), np.asarray(keys[n - 1], dtype=np.int64))
    return write_indexes(folder, order)


def write_indexes(folder: Path, order: int) -> dict[str, int]:
    """Build and save the hash table of every order's keys (read back memory-mapped) -> home_slots."""
    home = {}
    for n in range(2, order + 1):
        keys = np.load(table_path(folder, "keys", n), mmap_mode="r")
        index = KeyIndex(np.asarray(keys))
        np.save(table_path(folder, "index", n).with_suffix(".slots.npy"), index.slot_key)
        np.save(table_path(folder, "index", n).with_suffix(".pos.npy"), index.slot_pos)
        home[str(n)] = index.home_slots
        del index
    return home


def _load(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FormatError(f"{path} is missing; save the model again")
    try:
        return np.load(path, mmap_mode="r")
    except (ValueError, OSError) as e:
        raise FormatError(f"{path} is truncated or corrupt ({e}); save the model again") from e


def read_tables(folder: Path, order: int, vocab_size: int, home_slots: dict
                ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[KeyIndex | None]]:
    """The memory-mapped tables of a folder -> (keys, logp, backoff, key indexes), orders 1..N."""
    folder = Path(folder)
    keys = [np.arange(vocab_size, dtype=np.int64)]
    keys += [_load(table_path(folder, "keys", n)) for n in range(2, order + 1)]
    logp = [_load(table_path(folder, "logp", n)) for n in range(1, order + 1)]
    backoff = [_load(table_path(folder, "backoff", n)) for n in range(1, order)]
    indexes: list[KeyIndex | None] = [None]
    for n in range(2, order + 1):
        slots = _load(table_path(folder, "index", n).with_suffix(".slots.npy"))
        pos = _load(table_path(folder, "index", n).with_suffix(".pos.npy"))
        try:
            home = int(home_slots[str(n)])
        except (KeyError, TypeError, ValueError) as e:
            raise FormatError(f"{folder / 'config.json'} lacks the hash table size of order {n}; "
                              "save the model again") from e
        if len(slots) != len(pos) or len(slots) < home:
            raise FormatError(f"the hash table of order {n} in {folder} is truncated; save the model again")
        indexes.append(KeyIndex.from_slots(slots, pos, home))
    return keys, logp, backoff, indexes

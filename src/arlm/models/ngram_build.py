"""Building a modified Kneser–Ney model out of core: the token stream to Parquet, the SQL on an engine,
the tables to memory-mapped files.

:meth:`arlm.models.ngram.NGramModel.fit` holds the whole stream and its n-gram keys in memory. Here
memory stays flat in the corpus size:

1. the stream is read in chunks (any iterable of ``[SOS] … [EOS]`` id arrays, a memmap included),
   checked as :func:`~arlm.models.ngram_counts.training_stream` checks it, and each chunk is written
   as one Parquet file of token windows ``w1 … wN`` (:mod:`arlm.models.ngram_sql`'s ``tokens``);
2. the engine runs the queries of :mod:`arlm.models.ngram_sql` under its memory cap; only the
   count-of-counts (5 numbers per order) come back to Python, for the discounts;
3. the final tables are read back in id ranges and written into the model folder's memory-mapped
   ``.npy`` tables (:mod:`arlm.models.ngram_binary`), log10 taken there by numpy.

The result equals ``NGramModel.fit`` table for table, bit for bit, so both write the same ARPA file.

Before anything is written the build refuses (one :class:`~arlm.errors.ConfigError` line): a memory
cap below what the engine can work in, an unreachable Spark master, and a work folder whose disk has
less free space than :func:`disk_needed` estimates.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from arlm.errors import ArlmError, ConfigError, DataError, MismatchError
from arlm.models import ngram_binary, ngram_sql
from arlm.models.ngram import (
    NGramModel,
    discounts_from_count_of_counts,
    parse_discount_fallback,
    write_config,
)
from arlm.models.ngram_engines import (
    MIN_MEMORY,
    DuckDBEngine,
    Engine,
    ParquetReader,
    SparkEngine,
    check_spark_master,
    engine_error,
)
from arlm.streams import EOS_ID, PAD_ID, SOS_ID

ENGINES = ("memory", "duckdb", "spark")
CHUNK_TOKENS = 1 << 22  # tokens per Parquet file of windows (4M: 80 MB of int32 windows at N = 5)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
          "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tb": 1 << 40,
          "tib": 1 << 40}


def parse_memory(text: str | int) -> int:
    """``4GB``, ``512MiB``, ``1.5g`` or a number of bytes -> bytes (units are powers of 1024)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise ConfigError(f"--memory {text!r} is not a size; write it like 4GB, 512MB or 1.5GiB")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def disk_needed(num_tokens: int, order: int) -> int:
    """Bytes the build may write: the token windows uncompressed (N int32 per token; Parquet keeps
    a fraction of that, the rest covers the engine's spill) plus 256 MiB."""
    return num_tokens * order * 4 + (256 << 20)


@dataclass
class BuildSettings:
    """Where and how to build: ``engine`` (duckdb or spark), its memory cap in bytes, the Spark
    master URL, and the work folder for Parquet files and the engine's spill (removed after)."""

    engine: str = "duckdb"
    memory: int = 4 << 30
    spark_master: str = "local[*]"
    work_dir: Path | None = None
    threads: int | None = None

    def check(self, num_tokens: int | None, order: int, work_parent: Path | None = None) -> None:
        """Refuse what cannot work, before anything is written (the disk check needs the number of
        tokens and the folder the work folder goes in: ``work_dir`` or else ``work_parent``)."""
        if self.engine not in ENGINES[1:]:
            raise ConfigError(f"unknown engine {self.engine!r}; choose one of {', '.join(ENGINES)}")
        low = MIN_MEMORY[self.engine]
        if self.memory < low:
            raise ConfigError(f"--memory {_size(self.memory)} is below what {self.engine} can work in "
                              f"({_size(low)}); give at least --memory {_size(low)}")
        if self.engine == "spark":
            check_spark_master(self.spark_master)
        work = self.work_dir or work_parent
        if num_tokens is not None and work is not None:
            where = _existing_parent(work)
            free, need = shutil.disk_usage(where).free, disk_needed(num_tokens, order)
            if free < need:
                raise ConfigError(f"{where} has {_size(free)} free but counting {num_tokens:,} tokens at "
                                  f"order {order} needs about {_size(need)}; free space or give --work-dir "
                                  "on a larger disk")


def _size(b: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if b >= scale:
            return f"{b / scale:.3g}{unit}"
    return f"{b}B"


def _existing_parent(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return path


# ----- 1. the stream as Parquet token windows ---------------------------------------------------


def stream_chunks(data: np.ndarray | Sequence[np.ndarray] | Iterable[np.ndarray],
                  size: int = CHUNK_TOKENS) -> Iterator[np.ndarray]:
    """Pieces of at most ``size`` tokens of a flat array (a memmap is read piece by piece), of each
    array of a list, or of each array an iterable yields."""
    parts = [data] if isinstance(data, np.ndarray) else data
    for part in parts:
        part = np.asarray(part).reshape(-1)
        for s in range(0, len(part), size):
            yield part[s : s + size]


class WindowWriter:
    """Checks a ``[SOS] … [EOS]`` stream chunk by chunk and writes its token windows as Parquet.

    Row t holds ``w1 … wN`` = x_{t-N+1} … x_t, -1 where x_{t-j} precedes the sentence's [SOS]
    (j ≥ run(t), the tokens of the sentence ending at t). The last N-1 tokens and the run length
    carry over from one chunk to the next.
    """

    def __init__(self, folder: Path, order: int, vocab_size: int, writer: ParquetReader):
        self.folder, self.order, self.V, self.writer = folder, order, vocab_size, writer
        self.tail = np.full(order - 1, -1, dtype=np.int32)  # the previous N-1 tokens
        self.run = 0  # run length at the last token written
        self.last = -1  # the last token written
        self.num_tokens = 0
        self.files = 0

    def write(self, x: np.ndarray) -> None:
        if x.size == 0:
            return
        self._check(x)
        L, N = len(x), self.order
        t = np.arange(L, dtype=np.int64)
        last_sos = np.maximum.accumulate(np.where(x == SOS_ID, t, -1))
        run = np.where(last_sos >= 0, t - last_sos + 1, self.run + t + 1)  # (L,)
        ext = np.concatenate([self.tail, x.astype(np.int32)])  # (N-1+L,)
        cols = {}
        for j in range(N - 1, -1, -1):  # column w_{N-j} holds x_{t-j}
            w = ext[N - 1 - j : N - 1 - j + L]
            cols[f"w{N - j}"] = np.where(run > j, w, -1).astype(np.int32)
        self.writer.write(cols, self.folder / f"tokens-{self.files:06d}.parquet")
        self.files += 1
        self.tail = ext[len(ext) - (N - 1):] if N > 1 else self.tail
        self.run, self.last = int(run[-1]), int(x[-1])
        self.num_tokens += L

    def _check(self, x: np.ndarray) -> None:
        """:func:`~arlm.models.ngram_counts.training_stream`'s checks, on one chunk."""
        if not np.issubdtype(x.dtype, np.integer):
            raise DataError(f"training data must hold integer token ids, got dtype {x.dtype}; "
                            "encode the text with a tokenizer first")
        if self.num_tokens == 0 and x[0] != SOS_ID:
            raise DataError("every training sequence must start with [SOS] (id 1); encode the text "
                            "with arlm's tokenizers, which put [SOS] … [EOS] around each sequence")
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi >= self.V:
            bad = lo if lo < 0 else hi
            raise MismatchError(f"token id {bad} in the training data is outside the vocabulary of "
                                f"{self.V} tokens; pass the vocabulary the data was encoded with")
        if lo == PAD_ID:
            raise DataError("the training data contains [PAD] (id 0); give unpadded sequences "
                            "(a flat stream or a list of 1-D arrays)")
        prev = np.concatenate([[self.last], x[:-1]])
        if (x[prev == EOS_ID] != SOS_ID).any():
            raise DataError("a token follows [EOS] without a new [SOS]; every sequence must be "
                            "[SOS] … [EOS], so start each sequence with [SOS]")


# ----- 2. the queries ---------------------------------------------------------------------------


def run_queries(engine: Engine, order: int, vocab_size: int, smoothing: str,
                fallback: tuple[float, float, float] | None) -> tuple[list, list[bool], list[int]]:
    """Count and estimate on ``engine`` (tables ``tokens`` and ``vocab`` registered) ->
    (discounts per order, fallback used per order, n-grams per order)."""
    engine.create("padded", ngram_sql.padded(order))
    sizes = []
    for n in range(1, order + 1):
        engine.create(f"count{n}", ngram_sql.count(n, order))
        sizes.append(int(engine.rows(ngram_sql.num_rows(f"count{n}"))[0][0]))
        if sizes[-1] == 0:
            raise DataError(f"the training data has no {n}-grams (every sentence is shorter than "
                            f"{n} tokens with [SOS] and [EOS]); use an order below {n} or more data")
    tables = []
    for n in range(order, 0, -1):  # a(n) needs count{n+1}
        engine.create(f"adj{n}", ngram_sql.adjusted(n, order))
    for n in range(1, order + 1):
        t = np.zeros(6, dtype=np.int64)
        for k, c in engine.rows(ngram_sql.count_of_counts(n)):
            t[int(k)] = int(c)
        tables.append(t[:5])
    discounts, used = discounts_from_count_of_counts(tables, smoothing, fallback)
    for n in range(1, order + 1):
        d = tuple(discounts[n - 1])
        engine.create(f"ctx{n}", ngram_sql.contexts(n, d))
        if n > 1:
            engine.create(f"adjctx{n}", ngram_sql.with_context(n))
        engine.create(f"prob{n}", ngram_sql.probabilities(n, d, vocab_size - 2))
    for n in range(1, order + 1):
        engine.create(f"final{n}", ngram_sql.final(n, order, vocab_size))
    sizes[0] = vocab_size
    return discounts, used, sizes


# ----- 3. the tables ----------------------------------------------------------------------------


def _log10(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log10(p)


def write_tables(engine: Engine, reader: ParquetReader, folder: Path, work: Path, order: int,
                 sizes: list[int]) -> None:
    """Each ``final{n}`` -> keys.n, logp.n, backoff.n in ``folder`` (memory-mapped, in chunks)."""
    for n in range(1, order + 1):
        glob = engine.export(ngram_sql.table_rows(n), work / f"final{n}.parquet")
        G = sizes[n - 1]
        logp = ngram_binary.open_table(folder, "logp", n, G)
        backoff = ngram_binary.open_table(folder, "backoff", n, G) if n < order else None
        keys = ngram_binary.open_table(folder, "keys", n, G, np.int64) if n > 1 else None
        for lo, cols in reader.chunks(glob, G, "id, key, p, gamma"):
            hi = lo + len(cols["id"])
            logp[lo:hi] = np.minimum(0.0, _log10(np.ma.filled(cols["p"], np.nan)))
            if keys is not None:
                keys[lo:hi] = cols["key"]
            if backoff is not None:
                gamma = cols["gamma"]
                seen = ~np.ma.getmaskarray(gamma)
                backoff[lo:hi] = np.where(seen, _log10(np.ma.filled(gamma, 1.0)), 0.0)
        for table in (logp, backoff, keys):
            if table is not None:
                table.flush()
        del logp, backoff, keys


def build_ngram_tables(data, order: int, vocab: Sequence[str], folder: Path, settings: BuildSettings,
                       smoothing: str = "mkn", discount_fallback=False,
                       num_tokens: int | None = None) -> NGramModel:
    """Count ``data`` (a ``[SOS] … [EOS]`` stream: array, memmap, list or iterable of chunks) on an
    engine and write the model's memory-mapped tables and config into ``folder`` (which exists, e.g.
    an ``atomic_dir``); return the model, opened from those files. ``mkn`` and ``kn`` only."""
    if smoothing not in ("mkn", "kn"):
        raise ConfigError(f"--engine {settings.engine} estimates kn and mkn; use --engine memory for "
                          f"{smoothing} smoothing")
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ConfigError(f"order must be an integer ≥ 1, got {order!r}; use e.g. order=3")
    V = len(vocab)
    if V < 4:
        raise MismatchError(f"the vocabulary has {V} entries but must start with the 4 special tokens "
                            "[PAD] [SOS] [EOS] [UNK]; use arlm's tokenizers")
    fallback = parse_discount_fallback(discount_fallback, smoothing)
    if num_tokens is None and isinstance(data, np.ndarray):
        num_tokens = data.size
    settings.check(num_tokens, order, folder.parent)
    work = _make_work_dir(settings.work_dir or folder.parent)
    reader = ParquetReader()
    engine: Engine | None = None
    try:
        windows = WindowWriter(work / "tokens", order, V, reader)
        (work / "tokens").mkdir()
        for chunk in stream_chunks(data):
            windows.write(chunk)
        if windows.num_tokens == 0:
            raise DataError("the training data is empty; give at least one [SOS] … [EOS] sequence")
        reader.write({"v1": np.arange(V, dtype=np.int32)}, work / "vocab.parquet")
        engine = _start(settings, work)
        engine.register_parquet("tokens", work / "tokens" / "*.parquet")
        engine.register_parquet("vocab", work / "vocab.parquet")
        discounts, used, sizes = run_queries(engine, order, V, smoothing, fallback)
        write_tables(engine, reader, folder, work, order, sizes)
    except ArlmError:
        raise
    except Exception as e:  # the engine ran out of memory or disk, or failed: one line
        if type(e).__module__.split(".")[0] not in ("duckdb", "_duckdb", "pyspark", "py4j"):
            raise
        raise ConfigError(f"the {settings.engine} engine failed ({engine_error(e)}); raise --memory, free "
                          "disk space in the work folder, or try --engine duckdb") from e
    finally:
        if engine is not None:
            engine.close()
        reader.close()
        shutil.rmtree(work, ignore_errors=True)
    options = {"discount_fallback": None if fallback is None else list(fallback)}
    disc = [{"order": n, "D": d if smoothing == "mkn" else d[:1], "fallback": u}
            for n, (d, u) in enumerate(zip(discounts, used, strict=True), start=1)]
    home = ngram_binary.write_indexes(folder, order)
    write_config(folder, vocab, order, smoothing, options, disc, [V - 1, *sizes[1:]],
                 extra={"storage": ngram_binary.STORAGE, "home_slots": home,
                        "built_by": {"engine": settings.engine, "tokens": windows.num_tokens}})
    return NGramModel.load(folder)


def _make_work_dir(parent: Path) -> Path:
    import tempfile

    parent = Path(parent).absolute()  # a Spark JVM started earlier keeps its own working folder
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".arlm-ngram-work-", dir=parent))


def _start(settings: BuildSettings, work: Path) -> Engine:
    if settings.engine == "spark":
        return SparkEngine(work, settings.memory, settings.spark_master)
    return DuckDBEngine(work, settings.memory, settings.threads)

"""The engines that run :mod:`arlm.models.ngram_sql`: DuckDB (one machine, spills to disk) and Spark.

An engine does four things with SQL text: read Parquet files as a table, keep a query's result as a
table (:meth:`Engine.create`), return a small result (:meth:`Engine.rows`), and write a result to
Parquet (:meth:`Engine.export`). Everything it keeps lives in its work folder, and its memory is
capped: DuckDB's ``memory_limit`` (beyond it, DuckDB spills sorts, joins and aggregates to its temp
folder), Spark's driver memory (``local[*]`` runs in the driver; on a cluster the executors are the
cluster's own). Both engines read and write the same Parquet, so the table files a build reads
back (:class:`ParquetReader`, DuckDB in a small memory budget) do not depend on the engine.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from arlm.errors import ConfigError

MIN_MEMORY = {"duckdb": 64 << 20, "spark": 512 << 20}  # below these the engines cannot work
SPARK_CONNECT_TIMEOUT = 3.0  # seconds to reach a spark:// master before giving up


def engine_error(e: BaseException) -> str:
    """An engine's exception -> its first line (the engines put the cause there)."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


class Engine:
    """The interface of a SQL engine for the n-gram build (see the module docstring)."""

    name = "engine"

    def register_parquet(self, name: str, path: Path) -> None:
        raise NotImplementedError

    def create(self, name: str, sql: str) -> None:
        raise NotImplementedError

    def rows(self, sql: str) -> list[tuple]:
        raise NotImplementedError

    def export(self, sql: str, path: Path) -> Path:
        """Write the result of ``sql`` to Parquet at ``path``; return the glob of its files."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class DuckDBEngine(Engine):
    """DuckDB with a database file and a spill folder in ``work``, at most ``memory`` bytes."""

    name = "duckdb"

    def __init__(self, work: Path, memory: int, threads: int | None = None):
        import duckdb

        self.con = duckdb.connect(str(work / "ngrams.duckdb"))
        self.con.execute(f"SET memory_limit = '{memory // (1 << 20)}MiB'")
        self.con.execute(f"SET temp_directory = '{work / 'spill'}'")
        self.con.execute("SET preserve_insertion_order = false")  # lets big sorts stream
        self.con.execute("SET enable_progress_bar = false")
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")

    def register_parquet(self, name: str, path: Path) -> None:
        self.con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet('{path}')")

    def create(self, name: str, sql: str) -> None:
        self.con.execute(f"CREATE OR REPLACE TABLE {name} AS {sql}")

    def rows(self, sql: str) -> list[tuple]:
        return self.con.execute(sql).fetchall()

    def export(self, sql: str, path: Path) -> Path:
        self.con.execute(f"COPY ({sql}) TO '{path}' (FORMAT parquet)")
        return path

    def close(self) -> None:
        self.con.close()


def check_spark_master(master: str) -> None:
    """A ``spark://host:port`` master must answer within a few seconds (Spark itself retries for
    minutes); ``local[…]`` and other schemes are left to Spark."""
    if not master.startswith("spark://"):
        return
    for hostport in master[len("spark://"):].split(","):  # several masters: standby setup
        url = urlparse(f"spark://{hostport}")
        try:
            with socket.create_connection((url.hostname or "", url.port or 7077), SPARK_CONNECT_TIMEOUT):
                return
        except (OSError, ValueError):
            continue
    raise ConfigError(f"cannot reach the Spark master {master} (no answer in {SPARK_CONNECT_TIMEOUT:g} s); "
                      "start it, fix --spark-master, or use --engine duckdb")


class SparkEngine(Engine):
    """Spark SQL (pyspark): tables are Parquet folders in ``work``; ``memory`` is the driver's."""

    name = "spark"

    def __init__(self, work: Path, memory: int, master: str = "local[*]"):
        try:
            from pyspark.sql import SparkSession
        except ImportError as e:
            raise ConfigError("--engine spark needs pyspark (pip install 'arlm[scale]') and Java 17; "
                              "or use --engine duckdb") from e
        check_spark_master(master)
        self.work = work
        mem = f"{max(memory // (1 << 20), 1)}m"
        builder = (SparkSession.builder.master(master).appName("arlm-ngram")
                   .config("spark.driver.memory", mem)
                   .config("spark.local.dir", str(work / "spark-local"))
                   .config("spark.ui.enabled", "false")
                   .config("spark.ui.showConsoleProgress", "false")
                   .config("spark.sql.shuffle.partitions", "8")
                   .config("spark.sql.warehouse.dir", str(work / "spark-warehouse")))
        try:
            self.spark = builder.getOrCreate()
        except Exception as e:  # no Java, a master that refuses: one line
            raise ConfigError(f"Spark did not start ({engine_error(e)}); check Java 17 and --spark-master, "
                              "or use --engine duckdb") from e
        self.spark.sparkContext.setLogLevel("ERROR")

    def register_parquet(self, name: str, path: Path) -> None:
        self.spark.read.parquet(str(path)).createOrReplaceTempView(name)

    def create(self, name: str, sql: str) -> None:
        path = self.work / "tables" / name
        self.spark.sql(sql).write.mode("overwrite").parquet(str(path))
        self.register_parquet(name, path)

    def rows(self, sql: str) -> list[tuple]:
        return [tuple(r) for r in self.spark.sql(sql).collect()]

    def export(self, sql: str, path: Path) -> Path:
        self.spark.sql(sql).write.mode("overwrite").parquet(str(path))
        return path / "*.parquet"

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.spark.stop()


class ParquetReader:
    """Reads Parquet tables back in id ranges as numpy arrays (DuckDB in a small memory budget)."""

    def __init__(self, memory: int = 256 << 20):
        import duckdb

        self.con = duckdb.connect()
        self.con.execute(f"SET memory_limit = '{max(memory // (1 << 20), 64)}MiB'")
        self.con.execute("SET enable_progress_bar = false")

    def write(self, arrays: dict[str, np.ndarray], path: Path) -> None:
        """Write numpy columns (equal lengths) as one Parquet file."""
        self.con.register("chunk", arrays)
        try:
            self.con.execute(f"COPY chunk TO '{path}' (FORMAT parquet, COMPRESSION zstd)")
        finally:
            self.con.unregister("chunk")

    def chunks(self, glob: Path | str, length: int, columns: str, step: int = 1 << 20
               ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """(start id, columns of ids start..start+step-1) for ids 0..length-1 of the files ``glob``."""
        for lo in range(0, length, step):
            q = (f"SELECT {columns} FROM read_parquet('{glob}') WHERE id >= {lo} AND id < {lo + step} "
                 "ORDER BY id")
            yield lo, self.con.execute(q).fetchnumpy()

    def close(self) -> None:
        self.con.close()

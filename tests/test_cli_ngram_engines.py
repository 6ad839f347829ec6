"""`arlm train ngram --engine duckdb|spark`: the same model as --engine memory (ARPA byte for byte,
scores equal through `arlm eval`), and bad engine settings as one line, exit 2, nothing written."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import pytest

from cli_helpers import arlm, only_an_error, word_lines
from extras import require


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "train.txt").write_text(word_lines(300, 0))
    (tmp_path / "test.txt").write_text(word_lines(30, 1))
    return tmp_path


def train(files: Path, engine: str, *extra: str):
    return arlm("train", "ngram", "--corpus", "train.txt", "--split", "all", "-n", "3", "--discount-fallback",
                "--engine", engine, "--out", engine, "--arpa", f"{engine}.arpa", *extra, cwd=files)


@pytest.mark.slow
def test_duckdb_writes_the_same_model_as_memory(files):
    for engine in ("memory", "duckdb"):
        r = train(files, engine, "--memory", "256MB")
        assert r.returncode == 0, r.stderr
    assert filecmp.cmp(files / "memory.arpa", files / "duckdb.arpa", shallow=False)
    assert json.loads((files / "duckdb" / "config.json").read_text())["storage"] == "mmap"
    evals = []
    for model in ("memory", "duckdb"):
        r = arlm("eval", model, "--corpus", "test.txt", "--split", "all", "--json", cwd=files)
        assert r.returncode == 0, r.stderr
        evals.append(json.loads(r.stdout))
    assert evals[0]["perplexity"] == evals[1]["perplexity"]


@pytest.mark.slow
def test_spark_writes_the_same_model_as_memory(files):
    require("pyspark", "the Spark engine needs pyspark (the scale extra)")
    for engine, extra in (("memory", ()), ("spark", ("--spark-master", "local[1]", "--memory", "1GB"))):
        r = train(files, engine, *extra)
        assert r.returncode == 0, r.stderr
    assert filecmp.cmp(files / "memory.arpa", files / "spark.arpa", shallow=False)


def _untouched(files: Path, engine: str) -> None:
    assert not (files / engine).exists() and not (files / f"{engine}.arpa").exists()
    assert not [p for p in files.iterdir() if p.name.startswith(".")]  # no work or temp folder left


def test_memory_below_the_engines_minimum(files):
    only_an_error(train(files, "duckdb", "--memory", "1MB"), "below what duckdb can work in", "--memory")
    _untouched(files, "duckdb")


def test_a_memory_that_is_no_size(files):
    only_an_error(train(files, "duckdb", "--memory", "plenty"), "not a size")


def test_an_unknown_engine(files):
    only_an_error(train(files, "postgres"), "unknown engine", "duckdb")


def test_an_unreachable_spark_master(files):
    r = train(files, "spark", "--spark-master", "spark://127.0.0.1:1")
    only_an_error(r, "cannot reach the Spark master spark://127.0.0.1:1")
    _untouched(files, "spark")


def test_a_corpus_larger_than_the_disk_leaves_the_old_model(files, monkeypatch):
    from arlm.models import ngram_build

    (files / "duckdb").mkdir()
    (files / "duckdb" / "keep.txt").write_text("an earlier model")

    class Usage:
        free = 1 << 20

    monkeypatch.setattr(ngram_build.shutil, "disk_usage", lambda path: Usage())
    r = train(files, "duckdb")
    only_an_error(r, "free but counting")
    assert [p.name for p in (files / "duckdb").iterdir()] == ["keep.txt"]
    assert not (files / "duckdb.arpa").exists()

"""The command line end to end on small files: the user's own train/test flow, and bad input.

Bad input must give one line on stderr, exit code 2, no traceback, and no output written.
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest

from cli_helpers import arlm

COMMON = ["the", "a", "cat", "dog", "sat", "on", "mat", "log", "saw", "and", "met", "was", "."]
WORDS = COMMON + [f"w{i}" for i in range(150)]
WEIGHTS = [1 / (rank + 1) for rank in range(len(WORDS))]  # Zipf: a few common words, many rare ones


def _train_text(lines: int = 300, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "".join(" ".join(rng.choices(WORDS, WEIGHTS, k=rng.randint(3, 9))) + "\n" for _ in range(lines))


TEST = "the cat sat on the log .\na dog saw the mat .\nthe bird sat .\n"




@pytest.fixture()
def files(tmp_path: Path) -> Path:
    (tmp_path / "train.txt").write_text(_train_text())
    (tmp_path / "test.txt").write_text(TEST)
    return tmp_path


def assert_user_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert result.stderr.rstrip().endswith(errors[0])  # the error is the last word, on one line
    for word in words:
        assert word.lower() in errors[0].lower(), errors[0]


def test_own_files_train_export_eval(files: Path) -> None:
    r = arlm("train", "ngram", "--corpus", "train.txt", "--split", "all", "--tokenizer", "whitespace",
             "--order", "3", "--smoothing", "kn", "--out", "m", "--arpa", "m.arpa", cwd=files)
    assert r.returncode == 0, r.stderr
    assert (files / "m" / "config.json").is_file() and (files / "m.arpa").is_file()
    evals = []
    for model in ("m", "m.arpa"):
        r = arlm("eval", model, "--corpus", "test.txt", "--split", "all", "--json", cwd=files)
        assert r.returncode == 0, r.stderr
        evals.append(json.loads(r.stdout))
    folder, arpa = evals
    assert folder["num_tokens"] == 7 + 1 + 6 + 1 + 4 + 1  # words + [EOS] per line
    assert folder["num_oov"] == 1  # "bird"
    assert arpa["perplexity"] == pytest.approx(folder["perplexity"], rel=1e-4)
    assert folder["perplexity_excluding_oov"] < folder["perplexity"] or folder["num_oov"] == 0
    # an ARPA file written from a model with arlm's default regex word tokenizer
    text = "the cat, the dog.\n" * 3
    (files / "punct.txt").write_text(_train_text() + text)
    r = arlm("train", "ngram", "--corpus", "punct.txt", "--split", "all", "--order", "2", "--out", "p",
             "--arpa", "p.arpa", cwd=files)
    assert r.returncode == 0, r.stderr
    (files / "punct_test.txt").write_text(text)
    folder, kenlm_split, regex_split = (
        json.loads(arlm("eval", model, "--corpus", "punct_test.txt", "--split", "all", *extra, "--json",
                        cwd=files).stdout)
        for model, extra in (("p", ()), ("p.arpa", ()), ("p.arpa", ("--arpa-split", "word"))))
    assert regex_split["perplexity"] == pytest.approx(folder["perplexity"], rel=1e-4)
    assert kenlm_split["num_tokens"] < folder["num_tokens"]  # "cat," is one whitespace token
    r = arlm("sample", "m", "--num-samples", "2", "--seed", "1", cwd=files)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 2


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--corpus", "missing.txt"), ("missing.txt",)),
        (("--corpus", "empty.txt"), ("empty",)),
        (("--corpus", "bad.txt"), ("bad.txt",)),
        (("--order", "0"), ("order",)),
        (("--smoothing", "witten-bell"), ("witten-bell",)),
        (("--tokenizer", "sentencepiece"), ("sentencepiece",)),
    ],
)
def test_bad_training_input(files: Path, args: tuple[str, ...], words: tuple[str, ...]) -> None:
    (files / "empty.txt").write_text("")
    (files / "bad.txt").write_bytes(b"fine line\n\xff\xfe broken\n")
    base = ["train", "ngram", "--corpus", "train.txt", "--split", "all", "--out", "m"]
    r = arlm(*base, *args, cwd=files)
    assert_user_error(r, *words)
    assert not (files / "m").exists()


def test_discounts_from_too_little_data_say_what_to_do(files: Path) -> None:
    (files / "tiny.txt").write_text("a b\n")
    base = ["train", "ngram", "--corpus", "tiny.txt", "--split", "all", "--order", "2", "--out", "m"]
    assert_user_error(arlm(*base, cwd=files), "discount")
    assert not (files / "m").exists()
    assert arlm(*base, "--discount-fallback", cwd=files).returncode == 0


def test_malformed_arpa_and_mismatched_tokenizer(files: Path) -> None:
    (files / "bad.arpa").write_text("\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0\thello\n\\end\\\n")
    assert_user_error(arlm("eval", "bad.arpa", "--corpus", "test.txt", "--split", "all", cwd=files),
                      "bad.arpa")
    r = arlm("train", "ngram", "--corpus", "train.txt", "--split", "all", "--order", "2", "--out", "m",
             cwd=files)
    assert r.returncode == 0, r.stderr
    (files / "other.txt").write_text("completely different words here\n" * 5)
    r = arlm("train", "ngram", "--corpus", "other.txt", "--split", "all", "--order", "2",
             "--smoothing", "add-k", "--out", "o", cwd=files)
    assert r.returncode == 0, r.stderr
    (files / "m" / "tokenizer.json").write_bytes((files / "o" / "tokenizer.json").read_bytes())
    assert_user_error(arlm("eval", "m", "--corpus", "test.txt", "--split", "all", cwd=files),
                      "tokenizer")


def test_existing_model_survives_a_failed_run(files: Path) -> None:
    r = arlm("train", "ngram", "--corpus", "train.txt", "--split", "all", "--order", "2", "--out", "m",
             cwd=files)
    assert r.returncode == 0, r.stderr
    before = {p.name: p.read_bytes() for p in (files / "m").iterdir()}
    r = arlm("train", "ngram", "--corpus", "missing.txt", "--split", "all", "--out", "m", cwd=files)
    assert r.returncode == 2
    assert {p.name: p.read_bytes() for p in (files / "m").iterdir()} == before


def test_help_explains_every_command(tmp_path: Path) -> None:
    for cmd in (["--help"], ["train", "ngram", "--help"], ["eval", "--help"], ["sample", "--help"]):
        r = arlm(*cmd, cwd=tmp_path)
        assert r.returncode == 0 and "Usage" in r.stdout

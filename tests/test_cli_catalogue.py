"""The catalogue of bad inputs and interruptions found by trying arlm as a new user would, run
through the command line: each case exits with code 2 and one `error:` line on stderr (nothing
printed before it), and the folders it touches hold the same files, byte for byte, afterwards."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from cli_helpers import arlm, ok, only_an_error, word_lines

FAST = ["--threads", "1", "--set", "max_steps=2", "--set", "eval_interval=2", "--set", "log_interval=1"]


def contents(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path -> SHA-256): what a failed command must not change."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "cache" not in p.parts}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A toy corpus and one finished tiny Transformer run, ``run/``."""
    folder = tmp_path_factory.mktemp("catalogue")
    (folder / "text.txt").write_text(word_lines(200, seed=1))
    ok(arlm("train", "transformer", "--corpus", "text.txt", "--split", "all", "--val-split", "all",
            "--out", "run", *FAST, cwd=folder))
    return folder


def train(work: Path, out: str, *extra: str) -> subprocess.CompletedProcess:
    return arlm("train", "transformer", "--corpus", "text.txt", "--split", "all", "--val-split", "all",
                "--out", out, *FAST, *extra, cwd=work)


def test_training_into_a_folder_that_holds_a_run_is_refused_and_changes_nothing(work):
    before = contents(work / "run")
    error = only_an_error(train(work, "run"), "already holds a training run", "--resume", "--overwrite")
    assert "run/last" in error
    assert contents(work / "run") == before


def test_overwrite_replaces_the_old_run_whole(work, tmp_path):
    ok(arlm("train", "transformer", "--corpus", str(work / "text.txt"), "--split", "all", "--val-split",
            "all", "--out", "old", *FAST, cwd=tmp_path))
    (tmp_path / "old" / "notes.txt").write_text("the user's own file stays")
    ok(arlm("train", "transformer", "--corpus", str(work / "text.txt"), "--split", "all", "--val-split",
            "all", "--out", "old", *FAST, "--set", "max_steps=3", "--set", "seed=7", "--overwrite",
            cwd=tmp_path))
    metrics = (tmp_path / "old" / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in metrics]
    assert steps == sorted(steps) and steps[0] == 1 and steps[-1] == 3  # one run, the new one
    assert json.loads((tmp_path / "old" / "run.json").read_text())["overrides"][-1] == "seed=7"
    assert (tmp_path / "old" / "notes.txt").read_text() == "the user's own file stays"


def test_resuming_a_corrupt_checkpoint_writes_nothing(work, tmp_path):
    import shutil

    shutil.copytree(work / "run" / "last", tmp_path / "broken")
    weights = tmp_path / "broken" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    r = arlm("train", "transformer", "--corpus", str(work / "text.txt"), "--split", "all", "--val-split",
             "all", "--out", "new", *FAST, "--resume", "broken", cwd=tmp_path)
    only_an_error(r, "corrupt or truncated")
    assert not (tmp_path / "new").exists()


def test_resuming_with_another_block_size_fails_before_the_summary(work):
    before = contents(work / "run")
    r = train(work, "run", "--resume", str(work / "run" / "last"), "--set", "block_size=64")
    only_an_error(r, "block_size")
    assert contents(work / "run") == before


@pytest.mark.parametrize(("value", "words"), [("nan", "lr must be a finite number"),
                                              ("inf", "lr must be a finite number")])
def test_a_learning_rate_that_is_not_finite_is_refused(work, value, words):
    only_an_error(train(work, "nan-run", "--set", f"lr={value}"), words)
    assert not (work / "nan-run").exists()


def test_a_hand_edited_config_is_one_line_for_eval(work, tmp_path):
    import shutil

    shutil.copytree(work / "run" / "best", tmp_path / "edited")
    meta = json.loads((tmp_path / "edited" / "config.json").read_text())
    meta["config"]["n_layer"] = "two"
    (tmp_path / "edited" / "config.json").write_text(json.dumps(meta))
    before = contents(tmp_path / "edited")
    only_an_error(arlm("eval", "edited", "--corpus", str(work / "text.txt"), "--split", "all", cwd=tmp_path),
                  "n_layer must be of type int, not 'two'")
    assert contents(tmp_path / "edited") == before


def test_export_arpa_of_a_neural_checkpoint_names_the_fix(work):
    only_an_error(arlm("export-arpa", "run/best", "m.arpa", cwd=work), "only n-gram models", "train ngram")
    assert not (work / "m.arpa").exists()


def test_export_arpa_into_a_folder_names_the_folder(work, tmp_path):
    ok(arlm("train", "ngram", "--corpus", str(work / "text.txt"), "--split", "all", "-n", "2",
            "--discount-fallback", "--out", "ng", cwd=tmp_path))
    (tmp_path / "dir").mkdir()
    error = only_an_error(arlm("export-arpa", "ng", "dir", cwd=tmp_path), "is a folder; name a file")
    assert ".tmp" not in error
    assert list((tmp_path / "dir").iterdir()) == []


def test_import_gpt2_of_a_truncated_weights_file_writes_nothing(work, tmp_path):
    ok(arlm("export-gpt2", str(work / "run" / "best"), "hf", cwd=tmp_path))
    weights = tmp_path / "hf" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    only_an_error(arlm("import-gpt2", "hf", "imported", cwd=tmp_path), "truncated")
    assert not (tmp_path / "imported").exists()


def test_serving_a_run_folder_suggests_its_checkpoints(work):
    only_an_error(arlm("serve", "run", cwd=work), "is a training run", "run/best")


def test_serving_on_a_host_that_does_not_resolve_fails_before_it_says_serving(work):
    r = arlm("serve", "run/best", "--host", "no.such.host.invalid", cwd=work)
    only_an_error(r, "cannot listen on no.such.host.invalid")
    assert "serving" not in r.stderr


def test_an_unknown_encoding_is_refused(work):
    only_an_error(arlm("train", "ngram", "--corpus", "text.txt", "--split", "all", "--encoding",
                       "nosuch-enc", "--out", "enc", cwd=work), "unknown encoding 'nosuch-enc'")
    assert not (work / "enc").exists()


@pytest.mark.parametrize(("extra", "words"), [
    (["--smoothing", "add-k", "--arpa", "m.arpa"], "no exact ARPA form"),
    (["--arpa", "."], "is a folder; name a file"),
])
def test_an_arpa_file_that_cannot_be_written_is_refused_before_counting(work, tmp_path, extra, words):
    r = arlm("train", "ngram", "--corpus", str(work / "text.txt"), "--split", "all", "-n", "2",
             "--discount-fallback", "--out", "ng", *extra, cwd=tmp_path)
    only_an_error(r, words)
    assert not (tmp_path / "ng").exists() and not (tmp_path / "m.arpa").exists()

"""`arlm train window|rnn|lstm|gru|transformer` end to end (tiny preset, a few steps).

A run writes OUT/last and OUT/best with tokenizer.json beside the model files, so `arlm eval` and
`arlm sample` read them; bad input gives one line on stderr, exit code 2, and nothing written or lost.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from cli_helpers import arlm, only_an_error, word_lines

FAST = ["--threads", "1", "--set", "max_steps=4", "--set", "eval_interval=2", "--set", "log_interval=2"]




def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("train")
    (tmp / "text.txt").write_text(word_lines(400, seed=0))
    return tmp


def _train(work: Path, command: str, out: str, *extra: str) -> subprocess.CompletedProcess:
    return arlm("train", command, "--corpus", "text.txt", "--split", "all", "--val-split", "all",
                "--out", out, *FAST, *extra, cwd=work)


@pytest.fixture(scope="module")
def lstm_run(work: Path) -> Path:
    r = _train(work, "lstm", "lstm")
    assert r.returncode == 0, r.stderr
    return work / "lstm"


def test_transformer_run_is_evaluable_and_sampleable(work: Path) -> None:
    r = _train(work, "transformer", "gpt", "--preset", "tiny", "--set", "model.d_model=16")
    assert r.returncode == 0, r.stderr
    run = work / "gpt"
    for sub in ("last", "best"):
        assert {"config.json", "model.safetensors", "tokenizer.json", "trainer_state.json"} <= {
            p.name for p in (run / sub).iterdir()}
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("val_loss" in x for x in lines) and lines[-1]["step"] == 4
    config = json.loads((run / "best" / "config.json").read_text())
    assert config["family"] == "transformer" and config["config"]["d_model"] == 16
    ev = arlm("eval", "gpt/best", "--corpus", "text.txt", "--split", "all", "--json", cwd=work)
    assert ev.returncode == 0, ev.stderr
    result = json.loads(ev.stdout)
    assert 0 < result["bits_per_char"] < 8
    sa = arlm("sample", "gpt/best", "-n", "2", "--max-new-tokens", "20", cwd=work)
    assert sa.returncode == 0, sa.stderr
    assert len(sa.stdout.splitlines()) >= 1


@pytest.mark.parametrize("command", ["window", "gru"])
def test_other_families_train(work: Path, command: str) -> None:
    r = _train(work, command, command)
    assert r.returncode == 0, r.stderr
    config = json.loads((work / command / "best" / "config.json").read_text())
    assert config["family"] == ("rnn" if command == "gru" else command)
    if command == "gru":
        assert config["config"]["cell"] == "gru"


def test_resume_continues(work: Path, lstm_run: Path) -> None:
    r = _train(work, "lstm", "lstm", "--resume", "lstm/last", "--set", "max_steps=6")
    assert r.returncode == 0, r.stderr
    state = json.loads((lstm_run / "last" / "trainer_state.json").read_text())
    assert state["step"] == 6


@pytest.mark.parametrize("extra, words", [
    (["--preset", "huge"], "unknown preset"),
    (["--set", "no_such_field=3"], "unknown"),
    (["--set", "model.no_such_field=3"], "unknown"),
    (["--set", "lr"], "field=value"),
    (["--set", "block_size=100000", "--set", "batch_tokens=100000", "--set", "micro_batch_size=1"],
     "fewer than block_size"),
    (["--set", "micro_batch_size=64"], "micro-batch"),
])
def test_bad_settings_exit_2_and_write_nothing(work: Path, extra: list[str], words: str) -> None:
    r = _train(work, "transformer", "bad", *extra)
    assert words in only_an_error(r)
    assert not (work / "bad").exists()


def test_resume_from_another_model_or_tokenizer_is_refused(work: Path, lstm_run: Path) -> None:
    before = _digest(lstm_run / "last")
    r = _train(work, "transformer", "lstm", "--resume", "lstm/last")
    assert "model" in only_an_error(r)
    r = _train(work, "lstm", "lstm", "--resume", "lstm/last", "--tokenizer", "byte")
    assert "tokenizer" in only_an_error(r)
    r = _train(work, "lstm", "lstm", "--resume", "lstm/last", "--set", "model.d_hidden=32")
    assert "configuration" in only_an_error(r)
    assert _digest(lstm_run / "last") == before

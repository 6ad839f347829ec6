"""Interrupts end every command with one line and the signal's exit code, and lose nothing.

Ctrl-C (SIGINT) exits 130 and SIGTERM 143 (128 + the signal's number), so `arlm train … && arlm eval …`
stops there; the line says what is on disk: for training, the last checkpoint and how to resume.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from arlm.train import read_state
from cli_helpers import arlm


def _wait_for(condition, process: subprocess.Popen, timeout: float = 240.0) -> None:
    """Poll a real condition (a file the run writes) until it holds; fail if the run ends first."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "the run never reached the point to interrupt it at"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGINT, 130, "interrupted"),
                                                   (signal.SIGTERM, 143, "terminated")])
def test_an_interrupted_training_run_says_where_its_last_checkpoint_is(tmp_path, sig, code, word):
    out = tmp_path / "run"
    cmd = [sys.executable, "-c", "from arlm.cli import main; main()", "train", "transformer",
           "--preset", "tiny", "--set", "max_steps=100000", "--set", "eval_interval=2", "--val-split", "",
           "--threads", "1", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _wait_for(lambda: (out / "last" / "trainer_state.json").is_file(), process)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code
    last_line = stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"{word}: training stopped at step ")
    assert f"continue with --resume {out / 'last'}" in last_line
    assert "Traceback" not in stderr
    step = int(last_line.split("(step ")[1].split(")")[0])
    assert read_state(out / "last")["step"] == step  # the checkpoint named is whole and is that step
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temp folder left behind


def test_ctrl_c_in_any_command_exits_130_with_one_line(tmp_path, monkeypatch):
    from arlm.data import corpora

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(corpora, "list_corpora", interrupted)
    result = arlm("corpus", "list", cwd=tmp_path)
    assert result.returncode == 130
    assert result.stderr.strip().splitlines() == ["interrupted: nothing was written"]


def test_sigterm_in_any_command_exits_143_with_one_line(tmp_path, monkeypatch):
    from arlm.data import corpora

    def terminated():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises in this thread long before
        raise AssertionError("SIGTERM did not stop the command")

    monkeypatch.setattr(corpora, "list_corpora", terminated)
    result = arlm("corpus", "list", cwd=tmp_path)
    assert result.returncode == 143
    assert result.stderr.strip().splitlines() == ["terminated: nothing was written"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the command's handler is gone again

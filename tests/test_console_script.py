"""The installed `arlm` console script in a process of its own, as a user runs it: its help, a bad
option (one line, exit code 2), and a real command whose output equals what the in-process runner
(`cli_helpers.arlm`, which every other CLI test uses) gets. The server's start and SIGTERM
(tests/serve/test_cli_serve.py) and a training run killed with SIGKILL (tests/test_cli_registry.py)
are the other tests that start the script."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import arlm, arlm_process, ok, one_line_error

pytestmark = pytest.mark.slow  # each test starts the installed script: a new Python that imports torch

TEXT = "the cat sat on the mat .\na dog saw the cat .\nthe dog sat on the log .\n"


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A folder with a text file and a bigram model trained on it (in this process: fast)."""
    work = tmp_path_factory.mktemp("script")
    (work / "t.txt").write_text(TEXT)
    ok(arlm("train", "ngram", "--corpus", "t.txt", "--split", "all", "--order", "2", "--out", "m", cwd=work))
    return work


def test_help_lists_the_commands(tmp_path: Path) -> None:
    help_text = ok(arlm_process("--help", cwd=tmp_path))
    assert "Usage: arlm" in help_text
    for command in ("train", "eval", "generate", "serve", "experiment"):
        assert command in help_text


def test_a_bad_option_is_one_line_and_exit_code_2(work: Path) -> None:
    script = arlm_process("eval", "m", "--bogus", cwd=work)
    one_line_error(script, "--bogus")
    assert script.stderr.strip() == one_line_error(script)  # nothing else on stderr
    inproc = arlm("eval", "m", "--bogus", cwd=work)
    assert (inproc.returncode, inproc.stdout, inproc.stderr) == (script.returncode, script.stdout,
                                                                 script.stderr)


def test_a_real_command_prints_what_the_in_process_runner_prints(work: Path) -> None:
    args = ("eval", "m", "--corpus", "t.txt", "--split", "all", "--json")
    script = arlm_process(*args, cwd=work)
    report = json.loads(ok(script))
    assert report["num_sequences"] == 3 and report["num_tokens"] == 23 and report["perplexity"] > 1
    inproc = arlm(*args, cwd=work)
    assert (inproc.returncode, inproc.stdout, inproc.stderr) == (script.returncode, script.stdout,
                                                                 script.stderr)

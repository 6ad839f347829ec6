"""Property: no numeric option of train, eval, sample, generate or serve gives a traceback.

Hypothesis draws each option's value from the edges (0, negative, NaN, ±inf, subnormal, 10^12, huge,
empty, non-numbers, surrogates and undecodable bytes as the shell hands them over) and runs the
command in this process: it exits 0 (the value was fine and the command ran) or 2 with one line
saying what is wrong, never a traceback. `arlm serve` is stopped before it listens (a valid
configuration would serve forever); the bind is checked on its own in tests/test_bad_input.py.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli_helpers import arlm

pytestmark = pytest.mark.slow

EDGES = ["0", "-1", "1", "nan", "inf", "-inf", "1e-320", "-0.0", "0.5", "1000000000000", str(2**63),
         "1e308", "", "abc", "1_0", "\ud800", "\udcff", " 3", "0x10"]

NUMERIC_OPTIONS = {
    "train-ngram": ["--ngram-order", "--k", "--vocab-size", "--min-count"],
    "train-transformer": ["--threads", "--vocab-size"],
    "eval": ["--orders", "--seed"],
    "sample": ["--num-samples", "--max-new-tokens", "--temperature", "--seed"],
    "generate": ["--temperature", "--top-k", "--top-p", "--min-p", "--repetition-penalty",
                 "--no-repeat-ngram-size", "--num-beams", "--length-penalty", "--num-samples", "--seed",
                 "--max-new-tokens", "--draft-tokens"],
    "distill-draft": ["--order", "--max-tokens", "--rollouts"],
    "serve": ["--port", "--max-new-tokens-cap", "--max-prompt-chars", "--queue", "--workers", "--threads",
              "--request-timeout"],
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A tiny corpus and an n-gram model trained on it (the commands need something to work on)."""
    folder = tmp_path_factory.mktemp("cli-validation")
    (folder / "c.txt").write_text("\n".join(f"the {w} sat on the mat" for w in
                                            ("cat", "dog", "cow", "owl", "hen", "pig") * 5))
    done = arlm("train", "ngram", "--corpus", "c.txt", "--split", "all", "-n", "3", "--discount-fallback",
                "--out", "m", cwd=folder)
    assert done.returncode == 0, done.stderr
    return folder


def command(kind: str) -> list[str]:
    """The command line of ``kind``, valid and small, before the option under test."""
    return {
        "train-ngram": ["train", "ngram", "--corpus", "c.txt", "--split", "all", "--smoothing", "add-k",
                        "--out", "m2"],
        "train-transformer": ["train", "transformer", "--corpus", "c.txt", "--split", "all", "--val-split",
                              "", "--set", "max_steps=1", "--set", "block_size=16", "--set",
                              "batch_tokens=32", "--set", "micro_batch_size=2", "--overwrite", "--out", "t"],
        "eval": ["eval", "m", "--corpus", "c.txt", "--split", "all"],
        "sample": ["sample", "m"],
        "generate": ["generate", "m", "--prompt", "the"],
        "serve": ["serve", "m"],
        "distill-draft": ["distill-draft", "m", "--corpus", "c.txt", "--split", "all", "--out",
                          "d.safetensors"],
    }[kind]


OPTIONS = [(kind, option) for kind, options in NUMERIC_OPTIONS.items() for option in options]


@settings(max_examples=600, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=st.sampled_from(OPTIONS), value=st.sampled_from(EDGES))
def test_no_numeric_option_gives_a_traceback(workspace, monkeypatch, case, value):
    from arlm.serve import server

    monkeypatch.setattr(server, "serve", lambda *a, **k: None)  # never listen in a test
    monkeypatch.setattr(server, "listen", lambda *a, **k: None)
    kind, option = case
    argv = [*command(kind), option, value]
    if kind == "generate" and option in ("--num-beams", "--length-penalty"):
        argv += ["--strategy", "beam"]
    if kind == "generate" and option == "--draft-tokens":
        argv += ["--draft", "prompt-lookup", "--strategy", "greedy"]
    if kind == "generate" and option == "--max-new-tokens" and value not in EDGES[-7:]:
        argv += ["--strategy", "greedy"]
    result = arlm(*argv, cwd=workspace)
    assert "Traceback" not in result.stderr, (argv, result.stderr)
    assert result.returncode in (0, 2), (argv, result.returncode, result.stderr)
    if result.returncode == 2:
        lines = result.stderr.strip().splitlines()
        assert lines and lines[-1].startswith("error: "), (argv, result.stderr)

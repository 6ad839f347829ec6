"""`arlm generate` end to end: every strategy on an n-gram folder, an ARPA file and a tiny Transformer,
and bad input (one line on stderr, exit code 2, no traceback)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from arlm.interop.arpa import write_arpa
from arlm.usecases.checkpoints import load_model
from cli_helpers import arlm, only_an_error, save_toy_word_models


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gen")
    _, ngram = save_toy_word_models(root, block_size=16, n_layer=1)
    write_arpa(ngram, root / "lm.arpa")
    return {"root": root, "ngram": root / "ngram", "arpa": root / "lm.arpa", "tf": root / "tf"}


def _ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return r.stdout


@pytest.mark.parametrize("kind", ["arpa", "tf"])
def test_greedy_streams_prompt_and_continuation(models, kind):
    out = _ok(arlm("generate", str(models[kind]), "--prompt", "the cat", "--strategy", "greedy",
                   "--max-new-tokens", "6", cwd=models["root"]))
    assert out.startswith("the cat") and out.endswith("\n")


def test_greedy_matches_library(models):
    from arlm.decode.search import greedy_search

    model, tok = load_model(models["ngram"])
    ids = [1, *tok.encode("the dog")]
    s = greedy_search(model, [ids], max_new_tokens=8)
    want = tok.decode(ids[1:] + s.rows()[0])
    out = _ok(arlm("generate", str(models["ngram"]), "--prompt", "the dog", "--strategy", "greedy",
                   "--max-new-tokens", "8", "--seed", "5", cwd=models["root"]))
    assert out.strip() == want


@pytest.mark.parametrize("strategy", ["top-p"])
def test_sampling_is_seeded(models, strategy):
    args = ("generate", str(models["ngram"]), "--prompt", "a", "--strategy", strategy,
            "--num-samples", "3", "--seed", "3", "--max-new-tokens", "10")
    out = _ok(arlm(*args, cwd=models["root"]))
    assert sorted(line[:3] for line in out.splitlines()) == ["[1]", "[2]", "[3]"]
    assert _ok(arlm(*args, cwd=models["root"])) == out


def test_sampling_options_and_stop(models):
    for strategy in ("sample", "top-k"):
        out = _ok(arlm("generate", str(models["ngram"]), "--strategy", strategy, "-n", "2",
                       "--max-new-tokens", "5", cwd=models["root"]))
        assert len(out.splitlines()) == 2
    out = _ok(arlm("generate", str(models["tf"]), "--temperature", "0.7", "--top-k", "5",
                   "--top-p", "0.9", "--min-p", "0.01", "--repetition-penalty", "1.3",
                   "--no-repeat-ngram-size", "2", "--max-new-tokens", "10", cwd=models["root"]))
    assert out.endswith("\n")
    r = arlm("generate", str(models["ngram"]), "--prompt", "the", "--stop", "sat",
             "--stop", "saw", "--strategy", "greedy", "--max-new-tokens", "12", cwd=models["root"])
    out = _ok(r)
    # the stop reason goes to stderr, the text (ending with the stop string) to stdout
    assert "stop_string" in r.stderr and "stop_string" not in out
    assert out == "the dog sat\n"  # greedy: "dog", then "sat" completes a stop string


@pytest.mark.parametrize("kind", ["ngram", "tf"])
def test_beam_prints_nbest_with_scores(models, kind):
    out = _ok(arlm("generate", str(models[kind]), "--prompt", "the", "--strategy", "beam",
                   "--num-beams", "3", "--length-penalty", "0.5", "--max-new-tokens", "6",
                   cwd=models["root"]))
    lines = out.strip().splitlines()
    assert 1 <= len(lines) <= 3 and lines[0].startswith("1. score ")
    scores = [float(line.split()[2]) for line in lines]
    assert scores == sorted(scores, reverse=True)
    one = _ok(arlm("generate", str(models[kind]), "--prompt", "the", "--strategy", "beam",
                   "--num-beams", "3", "--num-samples", "1", "--length-penalty", "0.5",
                   "--max-new-tokens", "6", cwd=models["root"]))
    assert one.strip() == lines[0]


def test_unknown_prompt_piece_warns_and_uses_unk(models):
    r = arlm("generate", str(models["ngram"]), "--prompt", "the zebra", "--strategy", "greedy",
             "--max-new-tokens", "3", cwd=models["root"])
    out = _ok(r)
    assert out.startswith("the [UNK]")
    assert "warning" in r.stderr and "'zebra'" in r.stderr


@pytest.mark.parametrize("args,words", [
    (["--top-p", "0"], ["--top-p", "(0, 1]"]),
    (["--top-p", "1.5"], ["--top-p"]),
    (["--top-k", "-1"], ["--top-k"]),
    (["--temperature", "-0.5"], ["--temperature"]),
    (["--strategy", "beam", "--num-beams", "0"], ["--num-beams"]),
    (["--max-new-tokens", "0"], ["--max-new-tokens"]),
    (["--strategy", "nucleus"], ["--strategy"]),
    (["--strategy", "top-k", "--top-k", "0"], ["--top-k"]),
    (["--strategy", "beam", "--stop", "."], ["--stop"]),
])
def test_bad_settings(models, args, words):
    only_an_error(arlm("generate", str(models["ngram"]), *args, cwd=models["root"]), *words)


def test_prompt_longer_than_context_is_an_error(models):
    long = " ".join(["the cat sat"] * 5)  # 15 words + [SOS] = 16 tokens = block_size
    only_an_error(arlm("generate", str(models["tf"]), "--prompt", long, cwd=models["root"]),
         "block_size", "16")
    only_an_error(arlm("generate", str(models["tf"]), "--prompt", "the cat", "--max-new-tokens", "20",
            cwd=models["root"]), "block_size", "--max-new-tokens to ≤ 14")
    # exactly fitting: 3 prompt tokens + 14 new = 16 fed positions + the last, never fed
    _ok(arlm("generate", str(models["tf"]), "--prompt", "the cat", "--max-new-tokens", "14",
           "--strategy", "greedy", cwd=models["root"]))
    # n-gram models have no context limit
    _ok(arlm("generate", str(models["ngram"]), "--prompt", long * 20, "--max-new-tokens", "3",
           cwd=models["root"]))


def test_missing_checkpoint(models):
    only_an_error(arlm("generate", str(models["root"] / "nope"), cwd=models["root"]), "does not exist")

"""`arlm train infinigram` and `arlm eval … --mix CKPT [--lambda λ]` through the command line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from tests.cli_helpers import arlm, ok, one_line_error, word_lines


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("infinigram")
    (tmp / "text.txt").write_text(word_lines(400, seed=3))
    ok(arlm("train", "infinigram", "-c", "text.txt", "-o", "inf", cwd=tmp))
    ok(arlm("train", "ngram", "-c", "text.txt", "--tokenizer", "char", "-n", "4", "--discount-fallback",
            "-o", "kn", cwd=tmp))
    return tmp


def test_the_infinigram_samples_its_training_lines(work):
    training = set((work / "text.txt").read_text().splitlines())
    text = ok(arlm("sample", "inf", "-n", "5", "--seed", "1", cwd=work))
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 5 and all(line in training for line in lines)


def test_eval_mix_with_a_given_lambda_and_with_lambda_chosen_on_validation(work):
    alone = json.loads(ok(arlm("eval", "kn", "-c", "text.txt", "--json", cwd=work)))
    given = json.loads(ok(arlm("eval", "kn", "-c", "text.txt", "--mix", "inf", "--lambda", "0.4", "--json",
                               cwd=work)))
    assert given["mixture"] == {"model": "inf", "lambda": 0.4, "chosen_on": None}
    assert given["num_tokens"] == alone["num_tokens"] and given["nll"] != alone["nll"]
    chosen = json.loads(ok(arlm("eval", "kn", "-c", "text.txt", "--mix", "inf", "--json", cwd=work)))
    m = chosen["mixture"]
    nll = [math.inf if x is None else x for x in m["nll_per_token"]]  # None: infinite (λ = 1)
    best = nll.index(min(nll))
    assert m["chosen_on"] == "val" and m["lambda"] == m["grid"][best]
    zero = json.loads(ok(arlm("eval", "kn", "-c", "text.txt", "--mix", "inf", "--lambda", "0", "--json",
                              cwd=work)))
    assert zero["nll"] == pytest.approx(alone["nll"])
    table = ok(arlm("eval", "kn", "-c", "text.txt", "--mix", "inf", cwd=work))
    assert "mixed with" in table and "chosen on val" in table


def test_bad_mixes_are_one_line_errors(work):
    ok(arlm("train", "infinigram", "-c", "text.txt", "--tokenizer", "word", "-o", "words", cwd=work))
    one_line_error(arlm("eval", "kn", "-c", "text.txt", "--mix", "words", "--lambda", "0.5", cwd=work),
                   "same tokenizer")
    one_line_error(arlm("eval", "kn", "-c", "text.txt", "--mix", "inf", "--lambda", "1.5", cwd=work),
                   "--lambda")
    one_line_error(arlm("eval", "kn", "-c", "text.txt", "--split", "val", "--mix", "inf", cwd=work),
                   "held-out")
    one_line_error(arlm("eval", "kn", "-c", "text.txt", "--mix", "nowhere", cwd=work), "does not exist")


def test_a_transformer_mixed_with_the_infinigram_scores_lines_longer_than_its_context(work):
    ok(arlm("train", "transformer", "-c", "text.txt", "--set", "max_steps=2", "--set", "block_size=16",
            "--set", "eval_interval=0", "-o", "tf", cwd=work))  # rows of 16: most lines are longer
    mixed = json.loads(ok(arlm("eval", "tf/last", "-c", "text.txt", "--mix", "inf", "--json", cwd=work)))
    alone = json.loads(ok(arlm("eval", "tf/last", "-c", "text.txt", "--mix", "inf", "--lambda", "0", "--json",
                               cwd=work)))
    assert mixed["num_tokens"] == alone["num_tokens"]
    assert mixed["mixture"]["chosen_on"] == "val" and math.isfinite(alone["nll"])


def test_image_models_mix_too_with_lambda_chosen_on_the_digits_validation_split(tmp_path):
    ok(arlm("train", "infinigram", "-c", "digits", "-o", "inf", cwd=tmp_path))
    ok(arlm("train", "ngram", "-c", "digits", "-n", "3", "--discount-fallback", "-o", "kn", cwd=tmp_path))
    result = json.loads(ok(arlm("eval", "kn", "--mix", "inf", "--json", cwd=tmp_path)))
    assert result["corpus"] == "digits" and result["mixture"]["chosen_on"] == "val"
    assert math.isfinite(result["bits_per_dim"])

"""Orders through the command line: every family trains in R2L and scores the same text as a
left-to-right model would (its own order, same tokens); an exact model gives every order the same
bits per character; generation comes back in reading order; σ-GPT trains, evaluates in random orders
and infills; digits give bits per dimension and PNG grids; bad input is one line, exit 2."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from arlm.data.corpora import load_corpus
from arlm.data.orders import reorder_split
from arlm.streams import split_sequences
from arlm.usecases.checkpoints import load_model, load_order
from arlm.usecases.data import encode_split
from cli_helpers import arlm, ok, one_line_error

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = ["the", "a", "cat", "dog", "sat", "on", "mat", "log", "saw", "and", "met", "was", "."]
STEPS = ["--threads", "1", "--preset", "tiny", "--set", "max_steps=3", "--set", "eval_interval=3",
         "--set", "block_size=64", "--set", "batch_tokens=512"]
VAL = ["--val-split", "all"]
FAMILIES = {"ngram": ["--tokenizer", "char", "-n", "3"], "window": VAL + STEPS, "lstm": VAL + STEPS,
            "transformer": VAL + STEPS}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("orders")
    rng = random.Random(3)
    text = "".join(" ".join(rng.choices(WORDS, k=rng.randint(2, 6))) + "\n" for _ in range(200))
    (tmp / "text.txt").write_text(text)
    return tmp


def _folder(work: Path, name: str, family: str) -> Path:
    return work / name if family == "ngram" else work / name / "last"


@pytest.mark.parametrize("family", list(FAMILIES))
def test_r2l_model_scores_the_same_text_in_its_own_order(work, family):
    name = f"r2l-{family}"
    ok(arlm("train", family, "--corpus", "text.txt", "--split", "all", "--order", "r2l", "--out", name,
            *FAMILIES[family], cwd=work))
    folder = _folder(work, name, family)
    assert json.loads((folder / "order.json").read_text())["order"] == "r2l"
    report = json.loads(ok(arlm("eval", str(folder), "--corpus", "text.txt", "--split", "all", "--json",
                                cwd=work)))
    # the reference: every test line reversed between [SOS] and [EOS], scored by the model itself
    model, tok = load_model(folder)
    lines = load_corpus(str(work / "text.txt")).lines("all")
    nll = 0.0
    for line in lines:
        ids = [tok.sos_id, *tok.encode(line)[::-1], tok.eos_id]
        with torch.no_grad():
            nll -= float(model.score(torch.tensor([ids])).double().sum())
    chars = sum(len(line) + 1 for line in lines)
    assert report["order"] == "r2l"
    assert report["nll"] == pytest.approx(nll, rel=1e-5)
    assert report["bits_per_char"] == pytest.approx(nll / math.log(2) / chars, rel=1e-5)
    assert report["num_chars"] == chars  # the same characters as a left-to-right evaluation


def test_an_exact_model_gives_every_order_the_same_probability(tmp_path):
    # an MLE n-gram longer than every line is the empirical distribution of the lines: p(x) = c(x)/N
    # in every order, so left-to-right, right-to-left and a fixed shuffle agree exactly
    lines = ["abcab", "bca", "abcab", "ccab", "a"]
    (tmp_path / "t.txt").write_text("\n".join(lines) + "\n")
    bits = {}
    for order in ("l2r", "r2l", "fixed-random"):
        ok(arlm("train", "ngram", "--corpus", "t.txt", "--split", "all", "--tokenizer", "char", "-n", "7",
                "--smoothing", "mle", "--order", order, "--out", order, cwd=tmp_path))
        bits[order] = json.loads(ok(arlm("eval", order, "--corpus", "t.txt", "--split", "all", "--json",
                                         cwd=tmp_path)))["bits_per_char"]
    empirical = -sum(math.log2(lines.count(x) / len(lines)) for x in lines) / sum(len(x) + 1 for x in lines)
    for value in bits.values():
        assert value == pytest.approx(empirical, rel=1e-9)
    # a smoothed finite-context model does not: on new text, the orders give different numbers
    (tmp_path / "new.txt").write_text("cabb\nbac\n")
    for order in ("l2r", "r2l"):
        ok(arlm("train", "ngram", "--corpus", "t.txt", "--split", "all", "--tokenizer", "char", "-n", "3",
                "--smoothing", "add-k", "--order", order, "--out", f"tri-{order}", cwd=tmp_path))
    l2r, r2l = (json.loads(ok(arlm("eval", f"tri-{o}", "--corpus", "new.txt", "--split", "all", "--json",
                                   cwd=tmp_path)))["bits_per_char"] for o in ("l2r", "r2l"))
    assert l2r != pytest.approx(r2l, rel=1e-3)


def test_r2l_generation_is_shown_in_reading_order(tmp_path):
    (tmp_path / "t.txt").write_text("hello world\n" * 30)
    for order in ("l2r", "r2l"):
        ok(arlm("train", "ngram", "--corpus", "t.txt", "--split", "all", "--tokenizer", "char", "-n", "4",
                "--smoothing", "mle", "--order", order, "--out", order, cwd=tmp_path))
        assert ok(arlm("generate", order, "--strategy", "greedy", cwd=tmp_path)).strip() == "hello world"
        assert ok(arlm("sample", order, "-n", "2", cwd=tmp_path)).split("\n")[:2] == ["hello world"] * 2
    # an R2L model continues a prompt to the left: the prompt is the end of the text
    assert ok(arlm("generate", "r2l", "--prompt", "world", "--strategy", "greedy",
                   cwd=tmp_path)).strip() == "hello world"
    one_line_error(arlm("generate", "r2l", "--prompt", "x", "--strategy", "beam", "--stop", "q",
                        cwd=tmp_path))  # a character the model never saw, then a beam: still one line


def test_same_seed_same_weights_for_random_orders(work):
    for name in ("a", "b"):
        ok(arlm("train", "transformer", "--corpus", "text.txt", "--split", "all", "--val-split", "all",
                "--order", "random", "--out", f"rand-{name}", *STEPS, cwd=work))
        ok(arlm("train", "sigma_gpt", "--corpus", "text.txt", "--split", "all", "--val-split", "all",
                "--out", f"sigma-{name}", *STEPS, cwd=work))
    for kind in ("rand", "sigma"):
        a, b = ((work / f"{kind}-{n}" / "last" / "model.safetensors").read_bytes() for n in "ab")
        assert a == b
    first, second = (ok(arlm("eval", "sigma-a/last", "--corpus", "text.txt", "--split", "all", "--json",
                             "--orders", "3", cwd=work)) for _ in range(2))
    assert first == second


def test_sigma_gpt_evaluates_in_random_orders_and_infills(work):
    ok(arlm("train", "sigma_gpt", "--corpus", "text.txt", "--split", "all", "--val-split", "all",
            "--out", "sigma", *STEPS, cwd=work))
    report = json.loads(ok(arlm("eval", "sigma/last", "--corpus", "text.txt", "--split", "all", "--json",
                                "--orders", "3", cwd=work)))
    orders = report["random_orders"]
    assert len(orders["bits_per_char"]) == 3 and 0 < orders["bits_per_char_mean"] < 10
    assert orders["bits_per_char_std"] > 0 and 0 < report["bits_per_char"] < 10  # orders differ
    template = "the cat ___ on the mat"
    lines = ok(arlm("infill", "sigma/last", "--template", template, "-n", "3", cwd=work)).splitlines()
    assert len(lines) == 3
    for line in lines:  # the known characters stay, each blank becomes one character
        assert len(line) == len(template)
        assert line[:8] == template[:8] and line[11:] == template[11:]
    one_line_error(arlm("infill", "sigma/last", "--template", "the cat", cwd=work), "no blank")
    one_line_error(arlm("infill", "sigma/last", "--template", "____", cwd=work), "only blanks")
    ok(arlm("train", "transformer", "--corpus", "text.txt", "--split", "all", "--val-split", "all",
            "--out", "l2r", *STEPS, cwd=work))
    one_line_error(arlm("infill", "l2r/last", "--template", "the _", cwd=work), "σ-GPT")


def test_digits_bits_per_dim_and_png_samples(work):
    from PIL import Image

    ok(arlm("train", "transformer", "--corpus", "digits", "--order", "hilbert", "--out", "dig", *STEPS,
            "--set", "block_size=66", "--set", "batch_tokens=528", cwd=work))
    report = json.loads(ok(arlm("eval", "dig/last", "--json", cwd=work)))  # digits by default
    assert report["corpus"] == "digits" and report["order"] == "hilbert"
    assert report["bits_per_dim"] == pytest.approx(report["nll"] / math.log(2) / (180 * 64))
    assert 0 < report["bits_per_dim"] < math.log2(21)
    text = ok(arlm("sample", "dig/last", "-n", "6", "--png", "s.png", "--seed", "1", cwd=work))
    assert len(text.splitlines()) == 8  # one row of 6 digits, 8 lines of ASCII shades
    with Image.open(work / "s.png") as im:
        pixels = np.asarray(im.convert("L"), dtype=np.float64)
    assert pixels.shape[0] > 32 and pixels.shape[1] > 6 * 32 and pixels.std() > 10  # decodes, not blank
    assert ok(arlm("sample", "dig/last", "-n", "6", "--seed", "1", cwd=work)) == text  # same seed

    # the n-gram family reads images too, in any pixel order
    ok(arlm("train", "ngram", "--corpus", "digits", "--order", "snake", "-n", "3", "--discount-fallback",
            "--out", "dig-ng", cwd=work))
    report = json.loads(ok(arlm("eval", "dig-ng", "--json", cwd=work)))
    assert report["order"] == "snake" and 0 < report["bits_per_dim"] < math.log2(21)


@pytest.mark.parametrize("args, words", [
    (["train", "transformer", "--order", "zigzag"], ["unknown order", "zigzag"]),
    (["train", "ngram", "--order", "hilbert"], ["hilbert", "text"]),
    (["train", "transformer", "--corpus", "digits", "--order", "spiral"], ["spiral", "raster"]),
    (["train", "sigma_gpt", "--order", "r2l"], ["σ-GPT", "r2l"]),
])
def test_bad_orders_are_one_line_and_write_nothing(work, args, words):
    one_line_error(arlm(*args, "--out", "bad", cwd=work), *words)
    assert not (work / "bad").exists()


def test_text_commands_refuse_what_the_order_cannot_do(work):
    ok(arlm("train", "transformer", "--corpus", "text.txt", "--split", "all", "--val-split", "all",
            "--order", "fixed-random", "--out", "fixed", *STEPS, cwd=work))
    one_line_error(arlm("generate", "fixed/last", "--prompt", "the", cwd=work), "prompt")
    assert ok(arlm("sample", "fixed/last", "-n", "2", "--max-new-tokens", "10", cwd=work))
    one_line_error(arlm("sample", "fixed/last", "--png", "x.png", cwd=work), "--png")
    assert not (work / "x.png").exists()
    one_line_error(arlm("eval", "fixed/last", "--corpus", "digits", cwd=work), "images")


def test_random_order_streams_are_the_same_tokens(work):
    # the evaluation reorders each line and nothing else: same multiset per line, [SOS]/[EOS] in place
    if not (work / "rand-a").exists():  # made by the same-seed test when it ran first
        ok(arlm("train", "transformer", "--corpus", "text.txt", "--split", "all", "--val-split", "all",
                "--order", "random", "--out", "rand-a", *STEPS, cwd=work))
    _, tok = load_model(work / "rand-a" / "last")
    spec = load_order(work / "rand-a" / "last")
    split = encode_split(str(work / "text.txt"), tok, "all").encoded
    ordered = reorder_split(split, spec)
    for a, b in zip(split_sequences(split.tokens), split_sequences(ordered.tokens), strict=True):
        assert a[0] == b[0] and a[-1] == b[-1] and sorted(a.tolist()) == sorted(b.tolist())
    assert not np.array_equal(split.tokens, ordered.tokens)
    assert np.array_equal(reorder_split(split, spec).tokens, ordered.tokens)  # repeatable

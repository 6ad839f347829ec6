"""`arlm generate` streams the text of one sample token by token: with a byte-level model, whose
characters span several tokens, the streamed text is the sample's text, on one line (the stream
used to start a fresh line whenever a character was completed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

TEXT = "日本語の文章です。 café naïve € ½ 😀 — «quotes»\n" * 40


@pytest.fixture(scope="module")
def byte_model(tmp_path_factory) -> Path:
    from arlm import cli

    root = tmp_path_factory.mktemp("bytes")
    (root / "train.txt").write_text(TEXT, encoding="utf-8")
    argv = sys.argv
    sys.argv = ["arlm", "train", "ngram", "--corpus", str(root / "train.txt"), "--split", "all",
                "--order", "3", "--tokenizer", "byte", "--discount-fallback", "--out", str(root / "m")]
    try:
        cli.main()
    except SystemExit as e:
        assert not e.code
    finally:
        sys.argv = argv
    return root / "m"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streamed_text_is_the_sample_on_one_line(byte_model, inproc, seed):
    args = ("generate", byte_model, "--prompt", "日本", "--seed", seed, "--max-new-tokens", 40)
    streamed = inproc(*args)
    assert streamed.returncode == 0, streamed.stderr
    whole = inproc(*args, "--json")
    assert whole.returncode == 0, whole.stderr
    text = json.loads(whole.stdout)["sequences"][0]["text"]
    assert any(ord(c) > 127 for c in text[2:])  # it wrote characters of several bytes
    assert streamed.stdout == text + "\n"

"""`arlm generate` streams the text of one sample token by token: with a byte-level model, whose
characters span several tokens, the streamed text is the sample's text, on one line (the stream
used to start a fresh line whenever a character was completed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import arlm, ok

TEXT = "日本語の文章です。 café naïve € ½ 😀 — «quotes»\n" * 40


@pytest.fixture(scope="module")
def byte_model(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bytes")
    (root / "train.txt").write_text(TEXT, encoding="utf-8")
    ok(arlm("train", "ngram", "--corpus", "train.txt", "--split", "all", "--order", "3", "--tokenizer",
            "byte", "--discount-fallback", "--out", "m", cwd=root))
    return root / "m"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streamed_text_is_the_sample_on_one_line(byte_model, seed):
    args = ("generate", byte_model, "--prompt", "日本", "--seed", seed, "--max-new-tokens", 40)
    streamed = arlm(*args, cwd=byte_model.parent)
    assert streamed.returncode == 0, streamed.stderr
    whole = arlm(*args, "--json", cwd=byte_model.parent)
    assert whole.returncode == 0, whole.stderr
    text = json.loads(whole.stdout)["sequences"][0]["text"]
    assert any(ord(c) > 127 for c in text[2:])  # it wrote characters of several bytes
    assert streamed.stdout == text + "\n"

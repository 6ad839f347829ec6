"""`arlm quickstart`: the n-gram table, then the char-level ladder for fixed step counts."""

from __future__ import annotations

import io
import math

import pytest
from rich.console import Console

from arlm.quickstart import run_quickstart

pytestmark = pytest.mark.slow  # trains the quickstart's model ladder


def _run(**kw) -> tuple[dict, str]:
    buffer = io.StringIO()
    results = run_quickstart(max_order=2, num_samples=1, console=Console(file=buffer, width=200),
                             show_progress=False, fast=True, threads=1, **kw)
    return results, buffer.getvalue()


def test_quickstart_fast_ladder_reports_bits_per_char_and_repeats() -> None:
    results, text = _run(seed=3)
    assert "Test perplexity of word n-gram models" in text
    assert "bits per character" in text and "Transformer" in text and "LSTM" in text
    assert math.isinf(results["MLE (no smoothing)", 2])
    bpc = results["bits_per_char"]
    assert len(bpc) == 5  # word n-gram, char n-gram, window, LSTM, Transformer
    vocab_bits = math.log2(100)
    for name, value in bpc.items():
        assert 0.5 < value < vocab_bits, (name, value)
    char_ngram = next(v for k, v in bpc.items() if k.startswith("char"))
    assert char_ngram < 3.0  # a 5-gram of characters is already good
    # fixed step counts, seeded weights: the same seed prints the same numbers
    again, _ = _run(seed=3)
    assert again["bits_per_char"] == bpc
    other, _ = _run(seed=4, neural=True)
    assert other["bits_per_char"] != bpc


def test_quickstart_without_neural_keeps_the_ngram_table() -> None:
    buffer = io.StringIO()
    results = run_quickstart(max_order=1, num_samples=1, console=Console(file=buffer, width=200),
                             show_progress=False, neural=False)
    assert "bits_per_char" not in results and ("modified Kneser-Ney", 1) in results

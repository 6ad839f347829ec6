"""`arlm quickstart`: the n-gram table, then the char-level ladder within a (tiny) CPU budget."""

from __future__ import annotations

import io
import math
import time

from rich.console import Console

from arlm.quickstart import run_quickstart


def test_quickstart_fast_ladder_reports_bits_per_char() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, width=200)
    t0 = time.perf_counter()
    results = run_quickstart(max_order=2, num_samples=1, console=console, show_progress=False,
                             fast=True, budget_minutes=0.25, threads=1)
    took = time.perf_counter() - t0
    text = buffer.getvalue()
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
    assert took < 60


def test_quickstart_without_neural_keeps_the_ngram_table() -> None:
    buffer = io.StringIO()
    results = run_quickstart(max_order=1, num_samples=1, console=Console(file=buffer, width=200),
                             show_progress=False, neural=False)
    assert "bits_per_char" not in results and ("modified Kneser-Ney", 1) in results

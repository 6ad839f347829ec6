"""The quickstart: the model ladder on Shakespeare, from counting n-grams to a Transformer, printed.

``arlm quickstart`` runs a fixed plan of the ladder (:mod:`arlm.experiments.fixed_ladder`: one seed,
nothing chosen; the comparison of the rungs under the protocol, with settings chosen on validation and 3
seeds, is ``arlm experiment ladder``) and prints its tables: the test perplexity of word n-gram models of
orders 1..5 with each smoothing (corpus perplexity, [EOS] scored, OOV words counted as [UNK]) and samples
from the best one; then the character n-grams, the fixed-window MLP, the LSTM and the Transformer, each
network trained for a fixed number of steps, and a table of test **bits per character** for every rung on
the same characters, with samples from each network. It shows the chapter's points on real text: without
smoothing (MLE) one unseen event makes perplexity infinite; add-k fixes that badly; Kneser–Ney well,
modified Kneser–Ney best; and the networks, each at its step budget.

The step counts are calibrated so that the default run takes about :data:`EXPECTED_MINUTES` minutes
on 2 cores; the run prints the time it took. Nothing depends on the clock, so the same seed and thread
count print the same numbers.
"""

from __future__ import annotations

import math
import time

from rich.console import Console
from rich.table import Table

from arlm.experiments.fixed_ladder import DEFAULT, QUICK, WORD_SMOOTHINGS, run_ladder

EXPECTED_MINUTES = 10
SMOOTHINGS = WORD_SMOOTHINGS  # (label, smoothing, options), as the table shows them


def run_quickstart(max_order: int = 5, num_samples: int = 3, seed: int = 0,
                   console: Console | None = None, show_progress: bool | None = None,
                   neural: bool = True, scale: float = 1.0, fast: bool = False,
                   threads: int = 0) -> dict:
    """Run the ladder; print the tables and samples; return {(label, order): test perplexity} plus,
    with ``neural``, ``"bits_per_char"``: {model name: test bits per character}.

    ``fast`` runs the ``--quick`` plan (tiny models, a few steps, the first 200 test lines);
    ``scale`` multiplies the neural rungs' training steps (1.0: the calibrated default)."""
    import dataclasses

    import torch

    console = console or Console()
    t0 = time.perf_counter()
    if threads:
        torch.set_num_threads(threads)
    plan = dataclasses.replace((QUICK if fast else DEFAULT).scaled(scale), max_order=max_order,
                               num_samples=num_samples)
    results = run_ladder(plan, seed=seed, show_progress=show_progress, neural=neural)
    print_ladder(results, console, fast=fast)
    console.print(f"done in {time.perf_counter() - t0:.1f} s")

    word = results["word_ngrams"]
    out: dict = {(row["label"], order): ppl for row in word["rows"]
                 for order, ppl in zip(word["orders"], row["perplexity"], strict=True)}
    if neural:
        out["bits_per_char"] = results["bits_per_char"]
    return out


def print_ladder(results: dict, console: Console, fast: bool = False) -> None:
    """The ladder's tables and samples, as the quickstart prints them."""
    d, word = results["data"], results["word_ngrams"]
    console.print(f"Shakespeare, word tokens: train {d['word_train_tokens']:,} tokens, test "
                  f"{d['word_test_tokens']:,} tokens; vocabulary {d['word_vocab']:,}")
    table = Table(title="Test perplexity of word n-gram models on Shakespeare (lower is better)")
    table.add_column("smoothing")
    for order in word["orders"]:
        table.add_column(f"{order}-gram", justify="right")
    for row in word["rows"]:
        table.add_row(row["label"], *("inf" if math.isinf(p) else f"{p:,.1f}" for p in row["perplexity"]))
    console.print(table)
    best = word["best"]
    console.print(f"Samples from the best model ({best['label']}):")
    for text in best["samples"]:
        console.print("  " + text, markup=False, highlight=False)
    if "neural" not in results:
        return

    char = results["char_ngrams"]
    table = Table(title="Test bits per character of character n-gram models")
    table.add_column("smoothing")
    for order in char["orders"]:
        table.add_column(f"{order}-gram", justify="right")
    for row in char["rows"]:
        table.add_row(row["label"], *(f"{b:.3f}" for b in row["bits_per_char"]))
    console.print(table)

    info = {best["label"]: "counting (OOV words as [UNK])", char["best"]["label"]: "counting"}
    for row in results["neural"]:
        info[row["name"]] = (f"{row['params']:,} params, {row['steps']:,} steps, {row['seconds']:.0f} s, "
                             f"{row['tokens']:,} tokens")
    table = Table(title="Test bits per character on Shakespeare (lower is better; same characters "
                        "for every model)" + (f" — first {d['test_lines']} test lines" if fast else ""))
    table.add_column("model")
    table.add_column("bits/char", justify="right")
    table.add_column("training", justify="right")
    for label, value in results["bits_per_char"].items():
        table.add_row(label, f"{value:.3f}", info.get(label, ""))
    console.print(table)
    for row in results["neural"]:
        console.print(f"Samples from the {row['name']}:")
        for text in row["samples"]:
            console.print("  " + text, markup=False, highlight=False)

"""The quickstart: the model ladder on Shakespeare, from counting n-grams to a Transformer.

Builds word-level n-gram models of orders 1..5 with each smoothing on the training plays, and prints
the test perplexity of each (corpus perplexity, [EOS] scored, OOV words counted as [UNK]) and a few
sentences sampled from the best model. It shows the chapter's points on real text: without smoothing
(MLE) one unseen event makes perplexity infinite (already at order 1, where the test's OOV words get
p(<unk>) = 0, and ever more so as unseen n-grams multiply); add-k fixes that badly; Kneser–Ney fixes it
well, and modified Kneser–Ney best.

Then (unless ``neural=False``) the neural rungs on characters within a CPU budget that it prints:
a char-level n-gram (modified Kneser–Ney), a fixed-window MLP, an LSTM and a Transformer, each
neural model trained by wall clock for its share of the budget (the ``cpu-small`` preset; ``tiny``
with ``fast=True``), and a table of test **bits per character** for every model on the same unit
(the word n-gram's NLL over the same characters: each line's characters plus its newline), with a
few samples from each neural model.
"""

from __future__ import annotations

import math
import time

from rich.console import Console
from rich.table import Table

from arlm import pipeline
from arlm.data.cache import encode_corpus
from arlm.data.corpora import load_corpus
from arlm.decode.search import ancestral_sample
from arlm.evaluate.likelihood import evaluate_likelihood
from arlm.models.ngram import NGramModel
from arlm.progress import progress
from arlm.streams import EOS_ID

# (label, smoothing, options) in the order the table shows them
SMOOTHINGS = [
    ("MLE (no smoothing)", "mle", {}),
    ("Laplace (add-1)", "add-k", {"k": 1.0}),
    ("add-k, k=0.01", "add-k", {"k": 0.01}),
    ("Kneser-Ney", "kn", {}),
    ("modified Kneser-Ney", "mkn", {}),
]


def run_quickstart(max_order: int = 5, num_samples: int = 3, seed: int = 0,
                   console: Console | None = None, show_progress: bool | None = None,
                   neural: bool = True, budget_minutes: float = 10.0, fast: bool = False,
                   threads: int = 0) -> dict:
    """Run the ladder; print the tables and samples; return {(label, order): test perplexity} plus,
    with ``neural``, ``"bits_per_char"``: {model name: test bits per character}."""
    console = console or Console()
    budget_s = budget_minutes * 60.0
    t0 = time.perf_counter()
    corpus = load_corpus("shakespeare")
    tokenizer = pipeline.build_tokenizer(corpus, pipeline.TokenizerSpec("word"))
    train = encode_corpus(corpus, "train", tokenizer)
    test = encode_corpus(corpus, "test", tokenizer)
    console.print(f"Shakespeare, word tokens: train {len(train.tokens):,} tokens in "
                  f"{train.num_sequences:,} lines, test {len(test.tokens):,} tokens; "
                  f"vocabulary {tokenizer.vocab_size:,}")

    results: dict = {}
    best: tuple[float, NGramModel | None] = (math.inf, None)
    with progress(show_progress) as bar:
        task = bar.add_task("n-gram ladder", total=len(SMOOTHINGS) * max_order)
        for label, smoothing, options in SMOOTHINGS:
            for order in range(1, max_order + 1):
                bar.update(task, description=f"{label}, order {order}")
                model = NGramModel.fit(train.tokens, order=order, vocab=tokenizer.vocab,
                                       smoothing=smoothing, **options)
                report = evaluate_likelihood(model, test.tokens, show_progress=False)
                results[label, order] = report.perplexity
                if report.perplexity < best[0]:
                    best = (report.perplexity, model)
                bar.advance(task)

    table = Table(title="Test perplexity of word n-gram models on Shakespeare (lower is better)")
    table.add_column("smoothing")
    for order in range(1, max_order + 1):
        table.add_column(f"{order}-gram", justify="right")
    for label, _, _ in SMOOTHINGS:
        row = [results[label, n] for n in range(1, max_order + 1)]
        table.add_row(label, *("inf" if math.isinf(p) else f"{p:,.1f}" for p in row))
    console.print(table)

    model = best[1]
    console.print(f"Samples from the best model ({model.order}-gram, {model.smoothing}):")
    samples = ancestral_sample(model, num_samples=num_samples, max_new_tokens=40, seed=seed)
    for row in samples.tokens.tolist():
        console.print("  " + tokenizer.decode(row), markup=False, highlight=False)
    if neural:
        word_bpc = evaluate_likelihood(model, test.tokens, num_chars=test.num_chars,
                                       show_progress=False).bits_per_char
        label = f"word {model.order}-gram ({model.smoothing})"
        results["bits_per_char"] = run_char_ladder(
            corpus, budget_s - (time.perf_counter() - t0), {label: word_bpc}, num_samples=num_samples,
            seed=seed, console=console, fast=fast, threads=threads)
    console.print(f"done in {time.perf_counter() - t0:.1f} s")
    return results


# (name, `arlm train` command, share of the neural training time)
NEURAL = [("window MLP", "window", 0.15), ("LSTM", "lstm", 0.35), ("Transformer", "transformer", 0.5)]


def _train_for(model, config, train, seconds: float) -> tuple[int, float]:
    """Train by wall clock: calibrate on a few steps, then set max_steps (the schedule's length) to what
    fits in ``seconds``. Returns (steps, seconds taken)."""
    from arlm.train import Trainer

    start = time.perf_counter()
    config.max_steps = 10**9
    trainer = Trainer(model, config, train, None)
    trainer.train(steps=1)  # the first step pays one-off costs
    t1, probe = time.perf_counter(), 4
    trainer.train(steps=probe)
    per_step = (time.perf_counter() - t1) / probe
    # then chunks of ~5 s, re-estimating the steps that still fit (the schedule's length follows)
    while (left := seconds - (time.perf_counter() - start)) > per_step:
        trainer.config.max_steps = trainer.step + max(1, int(left / per_step))
        chunk = max(1, min(trainer.config.max_steps - trainer.step, int(5.0 / per_step)))
        t1 = time.perf_counter()
        trainer.train(steps=chunk)
        per_step = (time.perf_counter() - t1) / chunk
    return trainer.step, time.perf_counter() - start


def run_char_ladder(corpus, budget_s: float, bpc: dict[str, float], num_samples: int = 3, seed: int = 0,
                    console: Console | None = None, fast: bool = False, threads: int = 0) -> dict:
    """Char-level n-gram, window MLP, LSTM and Transformer on Shakespeare characters within
    ``budget_s`` seconds; prints a bits-per-character table (``bpc`` holds rows already measured)."""
    import torch

    from arlm.train.presets import build_model, make_train_config, resolve

    console = console or Console()
    t0 = time.perf_counter()
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    tokenizer = pipeline.build_tokenizer(corpus, pipeline.TokenizerSpec("char"))
    train = encode_corpus(corpus, "train", tokenizer)
    test = encode_corpus(corpus, "test", tokenizer)
    if fast:  # score the first test lines only (every model on the same ones)
        ends = [int(i) for i in (test.tokens == EOS_ID).nonzero()[0][:200]]
        cut = ends[-1] + 1
        lines = corpus.lines("test")[:len(ends)]
        test_tokens, test_chars = test.tokens[:cut], sum(len(x) + 1 for x in lines)
    else:
        test_tokens, test_chars = test.tokens, test.num_chars
    preset = "tiny" if fast else "cpu-small"
    order = 5 if fast else 7
    bpc = dict(bpc)
    ngram = NGramModel.fit(train.tokens, order=order, vocab=tokenizer.vocab, smoothing="mkn",
                          discount_fallback=True)  # few characters: some counts-of-counts are 0
    bpc[f"char {order}-gram (mkn)"] = evaluate_likelihood(ngram, test_tokens, num_chars=test_chars,
                                                          show_progress=False).bits_per_char
    left = budget_s - (time.perf_counter() - t0)
    train_s = max(1.0, left * 0.8)  # the rest: scoring the test split and sampling
    console.print(f"Neural models on characters (vocabulary {tokenizer.vocab_size}), preset {preset!r}, "
                  f"{torch.get_num_threads()} torch threads: budget {budget_s / 60:.1f} min in all, "
                  f"{train_s:.0f} s of training split "
                  + ", ".join(f"{name} {share:.0%}" for name, _, share in NEURAL))
    samples: dict[str, list[str]] = {}
    info: dict[str, str] = {}
    for name, command, share in NEURAL:
        settings = resolve(command, preset, [f"seed={seed}"])
        config = make_train_config(settings, eval_interval=0, show_progress=False, out_dir=None)
        model = build_model(settings, tokenizer.vocab_size)
        steps, took = _train_for(model, config, train, train_s * share)
        model.eval()
        label = f"{name} ({model.num_parameters():,} params)"
        bpc[label] = evaluate_likelihood(model, test_tokens, num_chars=test_chars,
                                         show_progress=False).bits_per_char
        info[label] = f"{steps:,} steps, {took:.0f} s, {steps * config.batch_tokens:,} tokens"
        rows = ancestral_sample(model, num_samples=num_samples, max_new_tokens=60, seed=seed).tokens
        samples[label] = [tokenizer.decode(r) for r in rows.tolist()]

    table = Table(title="Test bits per character on Shakespeare (lower is better; same characters "
                        "for every model)" + (" — first 200 test lines" if fast else ""))
    table.add_column("model")
    table.add_column("bits/char", justify="right")
    table.add_column("training", justify="right")
    for label, value in bpc.items():
        table.add_row(label, f"{value:.3f}", info.get(label, "counting"))
    console.print(table)
    for label, rows in samples.items():
        console.print(f"Samples from the {label}:")
        for text in rows:
            console.print("  " + text, markup=False, highlight=False)
    console.print(f"neural ladder done in {time.perf_counter() - t0:.1f} s "
                  f"(budget {budget_s:.0f} s)")
    return bpc

"""The quickstart: the model ladder on Shakespeare, from counting n-grams to a Transformer.

Builds word-level n-gram models of orders 1..5 with each smoothing on the training plays, and prints
the test perplexity of each (corpus perplexity, [EOS] scored, OOV words counted as [UNK]) and a few
sentences sampled from the best model. It shows the chapter's points on real text: without smoothing
(MLE) one unseen event makes perplexity infinite (already at order 1, where the test's OOV words get
p(<unk>) = 0, and ever more so as unseen n-grams multiply); add-k fixes that badly; Kneser–Ney fixes it
well, and modified Kneser–Ney best.

Then (unless ``neural=False``) the neural rungs on characters: a char-level n-gram (modified
Kneser–Ney), a fixed-window MLP, an LSTM and a Transformer, each neural model trained for a fixed
number of steps (:data:`NEURAL`, the ``cpu-small`` preset; ``tiny`` and a few steps with
``fast=True``), and a table of test **bits per character** for every model on the same unit (the word
n-gram's NLL over the same characters: each line's characters plus its newline), with a few samples
from each neural model. The step counts are calibrated so that the default run takes about
:data:`EXPECTED_MINUTES` minutes on 2 cores; the run prints the time it took. Nothing depends on the
clock, so the same seed and thread count print the same numbers.
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
from arlm.streams import sequence_spans

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
                   neural: bool = True, scale: float = 1.0, fast: bool = False,
                   threads: int = 0) -> dict:
    """Run the ladder; print the tables and samples; return {(label, order): test perplexity} plus,
    with ``neural``, ``"bits_per_char"``: {model name: test bits per character}.

    ``scale`` multiplies the neural rungs' training steps (1.0: the calibrated default)."""
    console = console or Console()
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
            corpus, {label: word_bpc}, num_samples=num_samples, seed=seed, console=console, fast=fast,
            threads=threads, scale=scale)
    console.print(f"done in {time.perf_counter() - t0:.1f} s")
    return results


# (name, `arlm train` command, training steps): calibrated on 2 cores, one torch thread, for about
# EXPECTED_MINUTES minutes in all (cpu-small: window ≈ 12 ms, LSTM ≈ 33 ms, Transformer ≈ 100 ms a step)
NEURAL = [("window MLP", "window", 4000), ("LSTM", "lstm", 4000), ("Transformer", "transformer", 2000)]
FAST_STEPS = 40  # each rung with fast=True (the tiny preset)
EXPECTED_MINUTES = 8


def run_char_ladder(corpus, bpc: dict[str, float], num_samples: int = 3, seed: int = 0,
                    console: Console | None = None, fast: bool = False, threads: int = 0,
                    scale: float = 1.0) -> dict:
    """Char-level n-gram, window MLP, LSTM and Transformer on Shakespeare characters, each neural
    model trained for its fixed steps (× ``scale``); prints a bits-per-character table (``bpc`` holds
    rows already measured)."""
    import torch

    from arlm.train.presets import resolve
    from arlm.train.trainer import Trainer

    console = console or Console()
    t0 = time.perf_counter()
    if threads:
        torch.set_num_threads(threads)
    data = pipeline.prepare_data(corpus, pipeline.TokenizerSpec("char"), "train", "test")
    tokenizer, train, test = data.tokenizer, data.train, data.val
    if fast:  # score the first test lines only (every model on the same ones)
        starts, lengths = sequence_spans(test.tokens)
        n = min(200, len(starts))
        test_tokens = test.tokens[: starts[n - 1] + lengths[n - 1]]
        test_chars = sum(len(x) + 1 for x in corpus.lines("test")[:n])
    else:
        test_tokens, test_chars = test.tokens, test.num_chars
    preset = "tiny" if fast else "cpu-small"
    order = 5 if fast else 7
    bpc = dict(bpc)
    ngram = NGramModel.fit(train.tokens, order=order, vocab=tokenizer.vocab, smoothing="mkn",
                          discount_fallback=True)  # few characters: some counts-of-counts are 0
    bpc[f"char {order}-gram (mkn)"] = evaluate_likelihood(ngram, test_tokens, num_chars=test_chars,
                                                          show_progress=False).bits_per_char
    plan = [(name, command, max(1, round((FAST_STEPS if fast else steps) * scale)))
            for name, command, steps in NEURAL]
    console.print(f"Neural models on characters (vocabulary {tokenizer.vocab_size}), preset {preset!r}, "
                  f"{torch.get_num_threads()} torch threads, seed {seed}: "
                  + ", ".join(f"{name} {steps:,} steps" for name, _, steps in plan)
                  + ("" if fast or scale != 1 else f" (about {EXPECTED_MINUTES} min on 2 cores)"))
    samples: dict[str, list[str]] = {}
    info: dict[str, str] = {}
    for name, command, steps in plan:
        settings = resolve(command, preset, [f"seed={seed}", f"max_steps={steps}"])
        config = pipeline.make_train_config(settings, eval_interval=0, show_progress=False, out_dir=None)
        model = pipeline.build_model(settings, tokenizer.vocab_size)
        started = time.perf_counter()
        Trainer(model, config, train, None).train()
        took = time.perf_counter() - started
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
    console.print(f"neural ladder done in {time.perf_counter() - t0:.1f} s")
    return bpc

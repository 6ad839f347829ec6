"""The quickstart: the first rung of the model ladder, n-grams, on Shakespeare.

Builds word-level n-gram models of orders 1..5 with each smoothing on the training plays, and prints
the test perplexity of each (corpus perplexity, [EOS] scored, OOV words counted as [UNK]) and a few
sentences sampled from the best model. It shows the chapter's points on real text: without smoothing
(MLE) unseen n-grams make perplexity infinite from order 2 on; add-k fixes that badly; Kneser–Ney
fixes it well, and modified Kneser–Ney best.
"""

from __future__ import annotations

import math
import time

from rich.console import Console
from rich.table import Table

from arlm import pipeline
from arlm.data.corpora import load_corpus
from arlm.decode.search import ancestral_sample
from arlm.evaluate.likelihood import evaluate_likelihood
from arlm.models.ngram import NGramModel
from arlm.progress import progress

# (label, smoothing, options) in the order the table shows them
SMOOTHINGS = [
    ("MLE (no smoothing)", "mle", {}),
    ("Laplace (add-1)", "add-k", {"k": 1.0}),
    ("add-k, k=0.01", "add-k", {"k": 0.01}),
    ("Kneser-Ney", "kn", {}),
    ("modified Kneser-Ney", "mkn", {}),
]


def run_quickstart(max_order: int = 5, num_samples: int = 3, seed: int = 0,
                   console: Console | None = None, show_progress: bool | None = None) -> dict:
    """Run the ladder; print the table and samples; return {(label, order): test perplexity}."""
    console = console or Console()
    t0 = time.perf_counter()
    corpus = load_corpus("shakespeare")
    tokenizer = pipeline.build_tokenizer(corpus, pipeline.TokenizerSpec("word"))
    train = pipeline.encode(corpus, "train", tokenizer)
    test = pipeline.encode(corpus, "test", tokenizer)
    console.print(f"Shakespeare, word tokens: train {len(train.tokens):,} tokens in "
                  f"{train.num_sequences:,} lines, test {len(test.tokens):,} tokens; "
                  f"vocabulary {tokenizer.vocab_size:,}")

    results: dict[tuple[str, int], float] = {}
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
    console.print(f"done in {time.perf_counter() - t0:.1f} s")
    return results

"""infinigram-mix: the chapter's first model helping its last, on Python source (F34).

**Claim** (Liu et al. 2024). An ∞-gram counted over the training text (:mod:`arlm.models.infinigram`:
the longest suffix of the context that occurs, no fixed n) is useless alone, since it gives probability
0 to every continuation it never saw, but mixed per token with a neural model,

    p(w | x_≤t) = (1 - λ) p_Transformer(w | x_≤t) + λ p_∞(w | x_≤t),

it lowers the neural model's perplexity, most on text that repeats itself, such as code.

**Design** (docs/experiments.md, "The protocol"). The ``pystdlib`` corpus (Python's standard library,
split by file), characters, one line a sequence. A small Transformer trained for a fixed number of steps
(the budget, in steps; the mix adds no training) with several seeds; the ∞-gram indexes the whole
training split (no seed: counting is deterministic). For each seed λ is chosen on the validation lines
over 0, 0.05, …, 1; the test lines are read once, at the end, by every arm. Reported per arm: bits per
character and perplexity per character; for the ∞-gram also how often it gives 0 (its perplexity alone
is infinite), its mean matched suffix length and its scoring speed; the mix against the Transformer as
a paired comparison over the seeds.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from arlm.data.cache import EncodedSplit
from arlm.experiments import ExperimentConfig
from arlm.experiments.protocol import (
    Protocol,
    compare_paired,
    comparison_sentence,
    load_average,
    load_record,
    mark_speed,
    needs_more_seeds,
    summarize,
    summary_text,
)
from arlm.streams import sequence_spans

NAME = "infinigram-mix"
SUMMARY = "∞-gram (suffix array) mixed per token with a Transformer on Python source: bits/char, λ on val"
CHECKPOINT_FAMILIES = ()  # trains its own models

CORPUS = "pystdlib"
FULL = {"seeds": 3, "steps": 1500, "val_lines": 4000, "test_lines": 10000, "train_docs": None,
        "model": ["n_layer=2", "n_head=4", "d_model=64", "dropout=0.0"],
        "train": ["block_size=64", "batch_tokens=2048", "micro_batch_size=32", "lr=3e-3", "min_lr=3e-4",
                  "warmup_steps=100", "eval_interval=0", "log_interval=100"]}
QUICK = {"seeds": 2, "steps": 15, "val_lines": 150, "test_lines": 200, "train_docs": 40,
         "model": ["n_layer=1", "n_head=2", "d_model=32"],
         "train": ["block_size=64", "batch_tokens=1024", "micro_batch_size=16", "lr=3e-3", "warmup_steps=2",
                   "eval_interval=0", "log_interval=5"]}


def spread_lines(split: EncodedSplit, count: int) -> EncodedSplit:
    """``count`` of the split's lines spread evenly over it (every k-th, so every file contributes),
    characters counted as a char tokenizer does: one per token after [SOS] ([EOS] is the newline)."""
    starts, lengths = sequence_spans(split.tokens)
    if count >= len(starts):
        pick = np.arange(len(starts))
    else:
        pick = np.unique(np.linspace(0, len(starts) - 1, count).round().astype(np.int64))
    tokens = np.concatenate([np.asarray(split.tokens[s:s + n]) for s, n in zip(starts[pick], lengths[pick],
                                                                                 strict=True)])
    tokens.setflags(write=False)
    return EncodedSplit(tokens, int((lengths[pick] - 1).sum()), len(pick))


def corpus_for(size: dict):
    """The corpus: pystdlib, or (quick) its first ``train_docs`` training files and a few held-out ones."""
    from arlm.data.corpora import Corpus, load_corpus

    corpus = load_corpus(CORPUS)
    if size["train_docs"] is None:
        return corpus
    splits = {"train": corpus.documents("train")[: size["train_docs"]],
              "val": corpus.documents("val")[:4], "test": corpus.documents("test")[:4]}
    docs = [d for part in splits.values() for d in part]
    return Corpus(f"{CORPUS}-quick", docs, "the first pystdlib files of each split", splits=splits)


def _bits(logp: np.ndarray, chars: int) -> float:
    return float(-logp.sum() / math.log(2) / chars)


def _arm(logp: np.ndarray, chars: int) -> dict:
    """Bits per character and perplexity per character of per-token log-probs (None where infinite)."""
    bits = _bits(logp, chars)
    if not math.isfinite(bits):
        return {"bits_per_char": None, "perplexity_per_char": None}
    return {"bits_per_char": bits, "perplexity_per_char": 2.0 ** bits}


def run(config: ExperimentConfig) -> dict:
    """Train the Transformer per seed, index the ∞-gram, choose λ on val, read test once."""
    import torch

    from arlm.evaluate.token_scores import token_log_probs
    from arlm.models.mixture import LAMBDA_GRID, choose_lambda, mix_log_probs
    from arlm.usecases.data import encode_split
    from arlm.usecases.train import InfinigramRequest, TrainRequest, train_infinigram, train_neural

    torch.set_num_threads(config.threads)
    load_at_start = load_average()
    size = QUICK if config.quick else FULL
    corpus = corpus_for(size)
    seeds = [config.seed + i for i in range(size["seeds"])]
    overrides = [*size["model"], *size["train"], f"max_steps={size['steps']}", f"device={config.device}",
                 "show_progress=false"]
    transformers = []
    for seed in seeds:
        request = TrainRequest("transformer", corpus=corpus, val_split="", preset="tiny",
                               overrides=[*overrides, f"seed={seed}"], out_dir=None, threads=config.threads)
        transformers.append(train_neural(request, log=lambda *_: None).trainer)
    tokenizer = transformers[0].tokenizer
    t0 = time.perf_counter()
    infinigram = train_infinigram(InfinigramRequest(corpus, tokenizer=tokenizer)).model
    build_seconds = time.perf_counter() - t0

    splits = {name: spread_lines(encode_split(corpus, tokenizer, name).encoded, size[f"{name}_lines"])
              for name in ("val", "test")}
    protocol = Protocol(splits, budget_unit="steps")
    for seed in seeds:
        protocol.budget.spend(f"Transformer seed {seed}", size["steps"])
        protocol.budget.spend(f"mix seed {seed}", size["steps"])  # the same network; counting adds no step
    protocol.budget.check_equal()
    models = [t.model.eval() for t in transformers]

    val = protocol.split("val")
    val_inf, _ = infinigram_scores(infinigram, val.tokens)
    choices = []
    for seed, model in zip(seeds, models, strict=True):
        choice = choose_lambda(token_log_probs(model, val.tokens), val_inf)
        protocol.choose(f"λ (seed {seed})", choice.lam, candidates=len(LAMBDA_GRID))
        choices.append(choice.to_dict())

    with protocol.final_test() as test:
        tokens, chars, lines = test.tokens, test.num_chars, test.num_sequences
        t0 = time.perf_counter()
        test_inf, matched = infinigram_scores(infinigram, tokens)
        inf_seconds = time.perf_counter() - t0
        test_neural = [token_log_probs(model, tokens) for model in models]

    zero = np.isneginf(test_inf)
    per_seed = []
    for seed, neural, choice in zip(seeds, test_neural, choices, strict=True):
        mixed = mix_log_probs(neural, test_inf, choice["lambda"])
        per_seed.append({"seed": seed, "lambda": choice["lambda"], "transformer": _arm(neural, chars),
                         "mix": _arm(mixed, chars),
                         "mix_gain_on_zero_tokens_bits": _gain_bits(mixed, neural, zero),
                         "mix_gain_on_other_tokens_bits": _gain_bits(mixed, neural, ~zero)})
    neural_bits = [r["transformer"]["bits_per_char"] for r in per_seed]
    mix_bits = [r["mix"]["bits_per_char"] for r in per_seed]
    comparison = compare_paired(mix_bits, neural_bits, "mix", "Transformer")
    spread = comparison.difference.std
    small = (needs_more_seeds(comparison.difference.mean, spread, len(seeds))
             if len(seeds) > 1 else None)
    return {
        "quick": config.quick, "corpus": corpus.name, "seeds": seeds, "steps": size["steps"],
        "model": size["model"], "train": size["train"], "vocab_size": tokenizer.vocab_size,
        "val_lines": val.num_sequences, "test_lines": lines, "test_chars": chars,
        "test_tokens": len(test_inf),
        "infinigram": {
            "train_tokens": infinigram.num_tokens, "build_seconds": build_seconds,
            "zero_rate": float(zero.mean()), "mean_suffix_len": float(matched.mean()),
            "median_suffix_len": float(np.median(matched)),
            "bits_per_char_on_nonzero_tokens": _bits(test_inf[~zero], chars),
            "score_seconds": inf_seconds, "tokens_per_second": len(test_inf) / inf_seconds},
        "lambda_choices": choices, "per_seed": per_seed,
        "summary": {"transformer": _summary_dict(neural_bits), "mix": _summary_dict(mix_bits),
                    "difference": _summary_dict([m - n for m, n in zip(mix_bits, neural_bits, strict=True)]),
                    "verdict": comparison.verdict, "difference_is_small": small},
        "protocol": protocol.record(),
        "load": load_record(load_at_start, load_average()),  # for the speed figures (mark_speed)
    }


def infinigram_scores(model, tokens: np.ndarray, batch: int = 2000) -> tuple[np.ndarray, ...]:
    """The ∞-gram's natural-log p(x_{t+1} | x_≤t) and matched suffix length ℓ of every prediction of a
    ``[SOS] … [EOS]`` stream, flat in stream order (as
    :func:`~arlm.evaluate.token_scores.token_log_probs`)."""
    from arlm.evaluate.likelihood import pad_batch
    from arlm.streams import split_sequences

    seqs = split_sequences(tokens)
    logp, matched = [], []
    for i in range(0, len(seqs), batch):
        rows = pad_batch(seqs[i:i + batch])  # (B, T)
        m = model.score_details(rows)
        scored = (rows[:, 1:] != 0).reshape(-1)  # row-major: sequence by sequence, target by target
        with np.errstate(divide="ignore"):
            logp.append((np.log(m.continuation_count) - np.log(m.context_count))[scored])
        matched.append(m.suffix_len[scored])
    return np.concatenate(logp), np.concatenate(matched)


def _gain_bits(mixed: np.ndarray, neural: np.ndarray, where: np.ndarray) -> float:
    """Bits the mix saves against the Transformer over the predictions ``where`` (negative: it costs)."""
    return float((mixed - neural)[where].sum() / math.log(2))


def _summary_dict(values: list[float]) -> dict:
    s = summarize(values)

    def clean(x: float) -> float | None:
        return None if math.isnan(x) else x

    return {"values": list(s.values), "mean": s.mean, "std": clean(s.std), "low": clean(s.low),
            "high": clean(s.high)}


def render(results: dict, out_dir: Path) -> str:
    """The report's Markdown, with ``infinigram_mix.png`` (bits/char per seed and arm)."""
    from arlm.experiments.plots import new_figure, save_png
    from arlm.experiments.protocol import Comparison, Summary

    inf, rows = results["infinigram"], results["per_seed"]
    fig = new_figure(6.0, 3.4)
    ax = fig.add_subplot()
    x = np.arange(len(rows))
    for shift, arm, label, color in ((-0.2, "transformer", "Transformer", "#4477aa"),
                                     (0.2, "mix", "Transformer + ∞-gram", "#cc6677")):
        ax.bar(x + shift, [r[arm]["bits_per_char"] for r in rows], 0.4, label=label, color=color)
    ax.set_xticks(x, [f"seed {r['seed']}\nλ = {r['lambda']:g}" for r in rows], fontsize=8)
    ax.set_ylabel("test bits per character")
    ax.set_title(f"{results['corpus']}: {results['test_lines']:,} test lines")
    ax.legend(fontsize=8)
    save_png(fig, Path(out_dir) / "infinigram_mix.png")

    def summary(d: dict) -> Summary:
        def nan(v: float | None) -> float:
            return math.nan if v is None else v

        return Summary(tuple(d["values"]), d["mean"], nan(d["std"]), nan(d["low"]), nan(d["high"]))

    s = results["summary"]
    comparison = Comparison("mix", "Transformer", summary(s["mix"]), summary(s["transformer"]),
                            summary(s["difference"]), s["verdict"])
    load = results.get("load")
    speed = mark_speed(f"{inf['tokens_per_second']:,.0f} predictions/s", load)
    build = mark_speed(f"{inf['build_seconds']:.1f} s", load)
    scoring = mark_speed(f"{inf['score_seconds']:.1f} s", load)
    lines = [
        "# The ∞-gram mixed with a Transformer on Python source",
        "",
        "Liu et al. (2024): an ∞-gram (the longest suffix of the context found in the training text, counted "
        "in a suffix array) interpolated per token with a neural model, p = (1-λ) p_Transformer + λ p_∞, "
        f"lowers the neural model's perplexity. Corpus `{results['corpus']}` (Python's standard library, "
        f"split by file), characters ({results['vocab_size']} symbols), one line a sequence; "
        f"{results['test_lines']:,} test lines ({results['test_chars']:,} characters) and "
        f"{results['val_lines']:,} validation lines, spread evenly over their splits."
        + (" **Quick run: tiny models, few steps, a few files.**" if results["quick"] else ""),
        "",
        "![bits per character per seed](infinigram_mix.png)",
        "",
        "| seed | λ (chosen on val) | Transformer bits/char | mix bits/char | Transformer ppl/char "
        "| mix ppl/char |",
        "|---|---|---|---|---|---|",
        *[f"| {r['seed']} | {r['lambda']:g} | {r['transformer']['bits_per_char']:.4f} | "
          f"{r['mix']['bits_per_char']:.4f} | {r['transformer']['perplexity_per_char']:.4f} | "
          f"{r['mix']['perplexity_per_char']:.4f} |" for r in rows],
        "",
        f"* Transformer: {summary_text(summary(s['transformer']), 'bits/char', 4)}.",
        f"* Transformer + ∞-gram: {summary_text(summary(s['mix']), 'bits/char', 4)}.",
        f"* {comparison_sentence(comparison, 'bits/char', 4)}",
        "",
        "## The ∞-gram alone",
        "",
        f"Indexed over the {inf['train_tokens']:,} training tokens in {build} "
        "(tokenizing included). It gives probability 0 to "
        f"{100 * inf['zero_rate']:.1f} % of the test characters (a continuation that never followed the "
        "longest matched suffix), so its perplexity alone is infinite; over the other "
        f"{100 * (1 - inf['zero_rate']):.1f} % it spends {inf['bits_per_char_on_nonzero_tokens']:.4f} bits "
        "per test character in all (not a perplexity: the zeros are left out). The suffix it backs off to "
        f"is {inf['mean_suffix_len']:.1f} characters long on average (median "
        f"{inf['median_suffix_len']:.0f}): "
        "within a line of code, the context seen so far often occurs verbatim in training. Scoring the test "
        f"lines took {scoring} ({speed}, numpy, one process).",
        "",
        "Where does the mix gain? Summed over the test characters, in bits (positive: the mix spends fewer "
        "bits than the Transformer alone):",
        "",
        "| seed | on characters the ∞-gram gives 0 | on the others |",
        "|---|---|---|",
        *[f"| {r['seed']} | {r['mix_gain_on_zero_tokens_bits']:+,.0f} | "
          f"{r['mix_gain_on_other_tokens_bits']:+,.0f} |"
          for r in rows],
        "",
        "On the characters the ∞-gram rules out, the mix pays log 1/(1-λ) per character; it wins that back "
        "where the training text continues the context the same way.",
        "",
        f"Settings: model {', '.join(results['model'])}; training {', '.join(results['train'])}, "
        f"{results['steps']:,} steps per seed; seeds {', '.join(map(str, results['seeds']))}.",
    ]
    return "\n".join(lines) + "\n"

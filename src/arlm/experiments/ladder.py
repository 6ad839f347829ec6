"""The model ladder on Shakespeare's characters, under the protocol: a counted n-gram, a fixed-window MLP,
an LSTM and a Transformer, in bits per character of the same test lines (F26, F28).

**The chapter's claim.** Each rung conditions on more of the past: an n-gram on its last N - 1
characters, a window MLP on a fixed window (sharing statistics between similar contexts), an RNN on
the whole line through one state vector, a Transformer by attending to every earlier position. Given
enough data and compute, each rung beats the one below, and the longer context is where it wins.

**Protocol** (:class:`~arlm.experiments.protocol.Protocol`).

* The n-gram's order and smoothing are chosen on validation bits/char among :data:`NGRAM_ORDERS` ×
  (Kneser-Ney, modified Kneser-Ney).
* Every neural family gets the same search: :data:`CANDIDATES` holds three configurations of each
  (window MLP, LSTM, Transformer), each trained with seed ``--seed`` for the same budget, ``steps`` ×
  ``batch_tokens`` training tokens (the budget's unit: tokens), and the one with the lowest validation
  bits/char is chosen; the chosen configuration of each family is trained again with the next two
  seeds, so each family's number is the mean of 3 seeds. Learning curves are validation bits/char.
* The test lines are read once, at the end, for the chosen n-gram and the 3 × 3 chosen neural runs:
  bits/char, and the NLL at each position of a line (how many characters of the line were read
  before), which shows where a longer context pays.
* Adjacent rungs are compared paired by seed (the n-gram is counted: the same number for every
  seed): window − n-gram, LSTM − window, Transformer − LSTM.

**Units.** Each test line is scored alone from ``[SOS]``; bits/char = Σ NLL / (ln 2 · Σ (|line| + 1)),
the + 1 being the newline that [EOS] stands for. A Transformer whose ``block_size`` is shorter than a
line scores it with a sliding window over that line alone (each character sees at least half a window
of its line; :func:`~arlm.evaluate.likelihood.evaluate_likelihood`).

**Threads.** Each training run is a job in a worker process with one torch thread
(:mod:`arlm.experiments.workers`; ``--threads`` sets how many processes), and the final scoring runs
with one torch thread too, so the numbers do not depend on ``--threads``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from arlm.experiments import ExperimentConfig
from arlm.experiments.ladder_report import FAMILIES, RUNGS, paired, render_report
from arlm.experiments.protocol import Protocol, summarize
from arlm.experiments.workers import in_workers, worker_count
from arlm.progress import progress

NAME = "ladder"
CHECKPOINT_FAMILIES: tuple[str, ...] = ()  # trains its own models
SUMMARY = ("The model ladder on Shakespeare characters under the protocol: n-gram order, and 3 configs of "
           "each of window MLP, LSTM and Transformer, chosen on validation at one token budget; 3 seeds; "
           "bits/char with intervals; test NLL by position in the line.")

COMMANDS = {"window MLP": "window", "LSTM": "lstm", "Transformer": "transformer"}
NGRAM_SMOOTHINGS = ("kn", "mkn")

# Three configurations per family, on top of the preset (cpu-small: window 16 × 32 → 256; LSTM 128 →
# 256; Transformer 4 × 4 × 128): a smaller/cheaper one, a larger one, and a learning-rate variant. Each
# is trained for the same steps × batch_tokens.
CANDIDATES: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "window MLP": (
        ("window 16, hidden 256, lr 2e-3", ("model.context=16", "model.d_hidden=256")),
        ("window 32, hidden 512, lr 2e-3", ("model.context=32", "model.d_hidden=512")),
        ("window 32, hidden 512, lr 4e-3", ("model.context=32", "model.d_hidden=512", "lr=4e-3")),
    ),
    "LSTM": (
        ("1 × 256, lr 2e-3", ()),
        ("1 × 256, lr 4e-3", ("lr=4e-3",)),
        ("1 × 256, lr 8e-3", ("lr=8e-3",)),
    ),
    "Transformer": (
        ("1 layer × 8 heads × 128, rows of 48, lr 6e-3 linear",
         ("block_size=48", "micro_batch_size=32", "lr=6e-3", "min_lr=0", "schedule=linear",
          "warmup_steps=100", "model.n_layer=1", "model.n_head=8")),
        ("2 layers × 4 heads × 128, rows of 64, lr 4e-3",
         ("block_size=64", "micro_batch_size=24", "lr=4e-3", "model.n_layer=2", "model.n_head=4")),
        ("1 layer × 4 heads × 128, rows of 64, lr 4e-3",
         ("block_size=64", "micro_batch_size=24", "lr=4e-3", "model.n_layer=1", "model.n_head=4")),
    ),
}
QUICK_CANDIDATES: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "window MLP": (("window 8", ("model.context=8",)), ("window 16", ("model.context=16",)),
                   ("window 16, lr 1e-2", ("model.context=16", "lr=1e-2"))),
    "LSTM": (("lr 3e-3", ()), ("lr 1e-2", ("lr=1e-2",)), ("hidden 48", ("model.d_hidden=48",))),
    "Transformer": (("rows of 32", ("block_size=32", "model.n_layer=1")),
                    ("rows of 64", ("block_size=64", "model.n_layer=1")),
                    ("rows of 32, lr 1e-2", ("block_size=32", "model.n_layer=1", "lr=1e-2"))),
}


@dataclass(frozen=True)
class Plan:
    """Everything that decides the ladder's numbers, with the seed."""

    preset: str
    steps: int  # every neural run: this many optimizer steps …
    batch_tokens: int  # … of this many training tokens (the budget: steps × batch_tokens)
    seeds: int  # the chosen configuration of each family: this many seeds (the first ran the search)
    curve_points: int  # validation bits/char at this many evenly spaced steps
    ngram_orders: tuple[int, ...]
    candidates: dict[str, tuple[tuple[str, tuple[str, ...]], ...]]
    train_lines: int | None = None  # the first N training lines (None: all)
    val_lines: int | None = None  # selection on the first N validation lines (None: all)
    curve_lines: int | None = 2000  # learning curves on the first N validation lines
    test_lines: int | None = None  # the final test on the first N test lines (None: all)
    min_position_lines: int = 200  # the position profile stops where fewer lines are that long


# 15 runs of 2,000 steps × 1,536 tokens: ≤ ~17 minutes on an idle 2-core machine with --threads 2 (the
# runs' CPU seconds, measured at load 5: 938 s for the search, 782 s for the seeds, over 2 processes)
FULL = Plan(preset="cpu-small", steps=2000, batch_tokens=1536, seeds=3, curve_points=5,
            ngram_orders=(3, 5, 7, 9), candidates=CANDIDATES)
# --quick: tiny models, a few steps, the first lines of each split (seconds)
QUICK = Plan(preset="tiny", steps=16, batch_tokens=1024, seeds=3, curve_points=2, ngram_orders=(2, 3),
             candidates=QUICK_CANDIDATES, train_lines=5000, val_lines=200, curve_lines=100, test_lines=200,
             min_position_lines=20)


def plan_for(config: ExperimentConfig) -> Plan:
    """--quick: :data:`QUICK`; else :data:`FULL`."""
    return QUICK if config.quick else FULL


# ---------------------------------------------------------------------------------------------
# The splits: characters of Shakespeare, the first lines of each as the plan says
# ---------------------------------------------------------------------------------------------


class CharData:
    """The char tokenizer (trained on the training split) and the encoded train and validation lines."""

    def __init__(self, plan: Plan) -> None:
        from arlm.experiments.orders_common import first_sequences
        from arlm.usecases.data import TokenizerSpec, encode_split, prepare_data

        data = prepare_data("shakespeare", TokenizerSpec("char"), "train", None)
        self.tokenizer = data.tokenizer
        self.train = first_sequences(data.train, plan.train_lines)
        val = encode_split("shakespeare", self.tokenizer, "val").encoded
        self.val = first_sequences(val, plan.val_lines)
        self.curve = first_sequences(val, plan.curve_lines)


class TestLines:
    """The test lines, encoded on demand: what the protocol guards (reading ``.encoded`` outside the
    final test is refused)."""

    def __init__(self, count: int | None) -> None:
        self.count = count

    def encoded(self, tokenizer):
        from arlm.experiments.orders_common import first_sequences
        from arlm.usecases.data import encode_split

        return first_sequences(encode_split("shakespeare", tokenizer, "test").encoded, self.count)


# ---------------------------------------------------------------------------------------------
# One job: train one configuration with one seed (in a worker process)
# ---------------------------------------------------------------------------------------------

_DATA: dict[str, CharData] = {}  # the worker's data, loaded once by _start


def _start(plan: Plan) -> None:
    _DATA["char"] = CharData(plan)


def curve_steps(steps: int, points: int) -> list[int]:
    """The steps at which validation bits/char is measured: ``points`` evenly spaced, the last one the
    end (fixed in advance, never by the clock)."""
    return sorted({max(1, round(steps * (i + 1) / points)) for i in range(points)})


def _train_job(plan: Plan, family: str, index: int, seed: int, device: str) -> dict[str, Any]:
    """Train configuration ``index`` of ``family`` with ``seed`` for the plan's budget; score its
    learning curve and its selection number on validation -> a row with the model (moved to the CPU)."""
    from arlm.evaluate.likelihood import evaluate_likelihood
    from arlm.train.presets import resolve
    from arlm.train.trainer import Trainer
    from arlm.usecases.train import build_model, make_train_config

    data = _DATA["char"]
    _, overrides = plan.candidates[family][index]
    settings = resolve(COMMANDS[family], plan.preset, [*overrides, f"batch_tokens={plan.batch_tokens}",
                                                       f"max_steps={plan.steps}", f"seed={seed}"])
    config = make_train_config(settings, eval_interval=0, show_progress=False, out_dir=None, device=device)
    model = build_model(settings, data.tokenizer.vocab_size)
    context = getattr(model.config, "block_size", None)  # a Transformer reads at most this many tokens
    trainer = Trainer(model, config, data.train, None)
    curve = []
    for target in curve_steps(plan.steps, plan.curve_points):
        losses = []
        while trainer.step < target:
            losses.append(trainer.train_step()["loss"])
        trainer.read_losses(losses)  # raises if one was not finite
        model.eval()
        bpc = evaluate_likelihood(model, data.curve.tokens, num_chars=data.curve.num_chars, context=context,
                                  show_progress=False).bits_per_char
        model.train()
        curve.append([target, bpc])
    model.eval()
    val = evaluate_likelihood(model, data.val.tokens, num_chars=data.val.num_chars, context=context,
                              show_progress=False).bits_per_char
    return {"family": family, "index": index, "seed": seed, "model": model.cpu(), "params":
            model.num_parameters(), "config": asdict(model.config),
            "tokens": trainer.step * config.batch_rows * config.block_size,
            "curve": curve, "val_bits_per_char": val}


# ---------------------------------------------------------------------------------------------
# The n-gram: orders × smoothings counted, chosen on validation
# ---------------------------------------------------------------------------------------------


def _ngrams(plan: Plan, data: CharData, protocol: Protocol) -> tuple[dict[str, Any], Any]:
    """Every candidate n-gram's validation bits/char, the choice recorded -> (results, chosen model)."""
    from arlm.evaluate.likelihood import evaluate_likelihood
    from arlm.models.ngram import NGramModel

    val = protocol.split("val")
    rows, best = [], None
    for smoothing in NGRAM_SMOOTHINGS:
        for order in plan.ngram_orders:
            # some counts-of-counts can be 0 on few lines: KenLM's fallback discounts are allowed
            model = NGramModel.fit(data.train.tokens, order=order, vocab=data.tokenizer.vocab,
                                   smoothing=smoothing, discount_fallback=True)
            bpc = evaluate_likelihood(model, val.tokens, num_chars=val.num_chars,
                                      show_progress=False).bits_per_char
            rows.append({"label": f"char {order}-gram ({smoothing})", "order": order, "smoothing": smoothing,
                         "val_bits_per_char": bpc})
            if best is None or bpc < best[0]:
                best = (bpc, len(rows) - 1, model)
    chosen = protocol.choose("n-gram", rows[best[1]]["label"], candidates=len(rows))
    curve = evaluate_likelihood(best[2], data.curve.tokens, num_chars=data.curve.num_chars,
                                show_progress=False).bits_per_char  # the learning curves' level
    return {"candidates": rows, "chosen": chosen, "order": rows[best[1]]["order"],
            "curve_bits_per_char": curve}, best[2]


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


def run(config: ExperimentConfig) -> dict:
    """Search every family on validation (seed ``config.seed``), train the chosen configurations with
    two more seeds, then score the chosen n-gram and every chosen run on the test lines once."""
    plan = plan_for(config)
    seeds = [config.seed + i for i in range(plan.seeds)]
    data = CharData(plan)
    protocol = Protocol({"train": data.train, "val": data.val, "test": TestLines(plan.test_lines)},
                        budget_unit="tokens")
    search = [(plan, family, i, seeds[0], config.device) for family in FAMILIES
              for i in range(len(plan.candidates[family]))]
    workers = worker_count(config.threads, len(search), os.cpu_count())
    results: dict[str, Any] = {"quick": config.quick, "plan": _plan_dict(plan), "seeds": seeds,
                               "workers": workers, "torch_threads": 1,
                               "data": {"train_chars": data.train.num_chars,
                                        "val_lines": data.val.num_sequences, "val_chars": data.val.num_chars,
                                        "curve_lines": data.curve.num_sequences}}
    runs: dict[tuple[str, int, int], dict[str, Any]] = {}
    with progress(config.show_progress) as bar:
        task = bar.add_task("n-grams, then the search", total=len(search) + 2 * (plan.seeds - 1) + 2)
        results["ngram"], ngram = _ngrams(plan, data, protocol)
        bar.advance(task)
        for row in in_workers(search, _train_job, _start, (plan,), workers, lambda: bar.advance(task)):
            runs[row["family"], row["index"], row["seed"]] = row
        chosen = {}
        for family in FAMILIES:
            scores = [runs[family, i, seeds[0]]["val_bits_per_char"]
                      for i in range(len(plan.candidates[family]))]
            chosen[family] = int(np.argmin(scores))
            protocol.choose(family, plan.candidates[family][chosen[family]][0], candidates=len(scores))
        more = [(plan, family, chosen[family], seed, config.device)
                for seed in seeds[1:] for family in FAMILIES]
        bar.update(task, description="the chosen configurations, more seeds")
        for row in in_workers(more, _train_job, _start, (plan,), worker_count(config.threads, len(more),
                                                                             os.cpu_count()),
                              lambda: bar.advance(task)):
            runs[row["family"], row["index"], row["seed"]] = row
        for (family, index, seed), row in runs.items():
            protocol.budget.spend(f"{family} #{index} seed {seed}", row["tokens"])
        protocol.budget.check_equal()
        bar.update(task, description="the final test")
        results["families"], test_data = _final_test(plan, protocol, data, runs, chosen, seeds, ngram,
                                                     results["ngram"])
        results["data"].update(test_data)
        bar.advance(task)
    results["comparisons"] = comparisons(results)
    results["protocol"] = protocol.record()
    return results


def _final_test(plan: Plan, protocol: Protocol, data: CharData, runs: dict, chosen: dict[str, int],
                seeds: list[int], ngram, ngram_results: dict[str, Any]) -> tuple[dict, dict]:
    """Inside the one final test: bits/char and the NLL by position of the chosen n-gram and of every
    seed of each chosen configuration (one torch thread); fills ``ngram_results`` -> (the families'
    results, the test lines' sizes)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with protocol.final_test() as test_lines:
            test = test_lines.encoded(data.tokenizer)
            lengths = _line_lengths(test.tokens)
            count = _position_counts(lengths)
            top = int((count >= plan.min_position_lines).sum())  # positions reached by enough lines
            ngram_results["test"] = _score(ngram, test, lengths, None, top)
            families = {}
            for family in FAMILIES:
                index = chosen[family]
                rows = []
                for i, (name, overrides) in enumerate(plan.candidates[family]):
                    row = runs[family, i, seeds[0]]
                    rows.append({"name": name, "overrides": list(overrides), "params": row["params"],
                                 "config": row["config"], "curve": row["curve"],
                                 "val_bits_per_char": row["val_bits_per_char"]})
                seeded = []
                for seed in seeds:
                    row = runs[family, index, seed]
                    context = getattr(row["model"].config, "block_size", None)
                    seeded.append({"seed": seed, "val_bits_per_char": row["val_bits_per_char"],
                                   "curve": row["curve"],
                                   **_score(row["model"], test, lengths, context, top)})
                bits = [r["bits_per_char"] for r in seeded]
                families[family] = {"candidates": rows, "chosen": index, "runs": seeded,
                                    "summary": asdict(summarize(bits)),
                                    "window": rows[index]["config"].get("context"),
                                    "block_size": rows[index]["config"].get("block_size")}
            test_data = {"test_lines": test.num_sequences, "test_chars": test.num_chars,
                         "longest_line": int(lengths.max()), "position_lines": count[:top].tolist()}
    finally:
        torch.set_num_threads(threads)
    return families, test_data


def _line_lengths(tokens: np.ndarray) -> np.ndarray:
    """(lines,) tokens of each ``[SOS] … [EOS]`` line of a stream."""
    from arlm.streams import sequence_spans

    return np.asarray(sequence_spans(tokens)[1])


def _position_counts(lengths: np.ndarray) -> np.ndarray:
    """(longest - 1,) how many lines have a target at each position (0: the first character)."""
    return np.bincount(np.concatenate([np.arange(n - 1) for n in lengths]))


def _score(model, test, lengths: np.ndarray, context: int | None, top: int) -> dict[str, Any]:
    """A model's test bits/char and its mean NLL in bits at positions 0..top-1 of a line (position k:
    the target after k characters of the line; the last target of a line is its [EOS])."""
    from arlm.evaluate.token_scores import token_log_probs

    logp = token_log_probs(model, test.tokens, context=context)  # (targets,) nats, stream order
    position = np.concatenate([np.arange(n - 1) for n in lengths])  # (targets,)
    nll = np.bincount(position, weights=-logp) / np.bincount(position) / math.log(2)
    return {"bits_per_char": float(-logp.sum() / math.log(2) / test.num_chars),
            "positions": [float(x) for x in nll[:top]]}


def _plan_dict(plan: Plan) -> dict[str, Any]:
    out = dataclasses.asdict(plan)
    out["candidates"] = {family: [{"name": n, "overrides": list(o)} for n, o in options]
                         for family, options in plan.candidates.items()}
    return out


# ---------------------------------------------------------------------------------------------
# Paired comparisons of adjacent rungs
# ---------------------------------------------------------------------------------------------

def comparisons(results: dict) -> dict[str, dict[str, Any]]:
    """Each rung against the one below, paired by seed: the difference above − below summarised and the
    verdict ("A lower": the higher rung is lower)."""
    out = {}
    for below, above in itertools.pairwise(RUNGS):
        c = paired(results, above, below)
        out[f"{above} − {below}"] = {"a": above, "b": below, "difference": asdict(c.difference),
                                     "verdict": c.verdict}
    return out


def render(results: dict, out_dir) -> str:
    """report.md's body and its plots, from ``results`` alone (:mod:`arlm.experiments.ladder_report`)."""

    return render_report(results, out_dir)

"""orders-text: the chain rule in every order, on Shakespeare's characters (F2, F3).

**Claim.** p(x) = ∏_i p(x_σ(i) | x_σ(<i)) for every permutation σ, so an *exact* model gives a text
the same probability whichever order it reads it in. Finite models trained at the same budget do
not: what is easy to predict depends on the order. Measured here, in bits per character of the same
test lines (each model scored in its own order, so the numbers compare):

* an exact model: an MLE n-gram longer than every line of a small set, evaluated on that set, is the
  empirical distribution p(x) = c(x)/N in every order: l2r, r2l and a fixed shuffle agree exactly;
* a Kneser-Ney 5-gram in each order (counted, no training budget);
* the same Transformer trained for the same number of steps (the budget) left to right, right to left
  and in a fresh random order per line (it cannot know which position comes next);
* σ-GPT (the same Transformer plus a second position table, trained on random orders) evaluated left
  to right and in random orders, against the left-to-right Transformer: the cost of learning every order
  at once, with and without a curriculum (Pannatier et al. 2024: a share of left-to-right rows that
  decays during training, here from all rows to ``SIGMA_L2R_FRACTION``).

**Protocol.** Every neural arm is trained with 3 seeds (weights, data order, random orders) for the same
number of steps; its learning curve is measured on the validation split; nothing is chosen; the test
lines are read once, at the end, for every arm (:class:`~arlm.experiments.protocol.Protocol`).
Comparisons are paired by seed. The arms × seeds train in ``--threads`` worker processes, one torch
thread each (:mod:`arlm.experiments.workers`): the numbers do not depend on how many.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from arlm.experiments import ExperimentConfig
from arlm.experiments.orders_common import first_sequences, train_with_curve
from arlm.experiments.protocol import (
    A_LOWER,
    B_LOWER,
    Protocol,
    compare_paired,
    comparison_sentence,
    summarize,
)
from arlm.experiments.workers import in_workers, worker_count
from arlm.progress import progress

NAME = "orders-text"
SUMMARY = ("L2R vs R2L vs random order, σ-GPT with and without a curriculum, on Shakespeare characters: "
           "3 seeds at equal steps, bits/char, learning curves against the KN 5-gram")

SIGMA_L2R_FRACTION = 0.25  # σ-GPT rows read left to right (see SigmaGPTConfig.l2r_fraction)
ARMS: dict[str, tuple[str, str, list[str]]] = {  # name -> (family, order, extra settings)
    "Transformer l2r": ("transformer", "l2r", []),
    "Transformer r2l": ("transformer", "r2l", []),
    "Transformer random": ("transformer", "random", []),
    "σ-GPT": ("sigma_gpt", "l2r", [f"l2r_fraction={SIGMA_L2R_FRACTION}"]),
    "σ-GPT + curriculum": ("sigma_gpt", "l2r", [f"l2r_fraction={SIGMA_L2R_FRACTION}", "l2r_start=1.0"]),
}
FULL = {"steps": 2000, "seeds": 3, "test_lines": 2000, "exact_lines": 300, "random_orders": 4,
        "model": ["n_layer=2", "n_head=4", "d_model=64", "dropout=0.0"],
        "train": ["block_size=128", "batch_tokens=4096", "micro_batch_size=32", "lr=3e-3", "min_lr=3e-4",
                  "warmup_steps=50", "eval_interval=250", "eval_batch_size=64", "log_interval=250"]}
QUICK = {"steps": 12, "seeds": 2, "test_lines": 100, "exact_lines": 60, "random_orders": 2,
         "model": ["n_layer=1", "n_head=2", "d_model=32"],
         "train": ["block_size=128", "batch_tokens=1024", "micro_batch_size=8", "lr=3e-3",
                   "warmup_steps=2", "eval_interval=6", "log_interval=6"]}


def _exact_model(lines: int) -> dict:
    """MLE n-grams longer than every line, on the first ``lines`` training lines, scored on them."""
    from arlm.data.corpora import Corpus, Document, load_corpus
    from arlm.evaluate.orders import evaluate_in_order
    from arlm.usecases.data import TokenizerSpec
    from arlm.usecases.train import NgramRequest, train_ngram

    text = [line for line in load_corpus("shakespeare").lines("train") if len(line) <= 40][:lines]
    corpus = Corpus("shakespeare-short", [Document("lines", "\n".join(text))], "short lines",
                    splits={"train": [Document("lines", "\n".join(text))]})
    n = max(len(line) for line in text) + 2
    out = {}
    for order in ("l2r", "r2l", "fixed-random"):
        counted = train_ngram(NgramRequest(corpus, n=n, smoothing="mle", tokenizer=TokenizerSpec("char"),
                                           order=order))
        out[order] = evaluate_in_order(counted.model, counted.data.train, counted.order,
                                       show_progress=False).bits_per_char
    return {"lines": len(text), "n": n, "bits_per_char": out}


class TestLines:
    """The first ``count`` test lines of Shakespeare, encoded on demand by a model's tokenizer: what the
    protocol guards (reading ``.encoded`` outside the final test is refused)."""

    def __init__(self, count: int) -> None:
        self.count = count

    def encoded(self, tokenizer):
        from arlm.usecases.data import encode_split

        return first_sequences(encode_split("shakespeare", tokenizer, "test").encoded, self.count)


def _kneser_ney_models() -> dict[str, Any]:
    """Modified Kneser-Ney 5-grams (chars) counted left to right and right to left."""
    from arlm.usecases.data import TokenizerSpec
    from arlm.usecases.train import NgramRequest, train_ngram

    return {order: train_ngram(NgramRequest("shakespeare", n=5, order=order, discount_fallback=True,
                                            tokenizer=TokenizerSpec("char")))
            for order in ("l2r", "r2l")}


def _kn_validation(counted) -> float:
    """A counted 5-gram's validation NLL in nats per token (its order; the learning curves' unit)."""
    from arlm.evaluate.orders import evaluate_in_order
    from arlm.usecases.data import encode_split

    val = encode_split("shakespeare", counted.tokenizer, "val").encoded
    return evaluate_in_order(counted.model, val, counted.order, show_progress=False).nll_per_token


# ---------------------------------------------------------------------------------------------
# The work: one job trains one arm with one seed (in a worker process)
# ---------------------------------------------------------------------------------------------


def _start() -> None:
    """A worker's start: nothing to load (each job reads the corpus by name, cached on disk)."""


def _train_job(arm: str, seed: int, overrides: list[str], device: str):
    family, order, extra = ARMS[arm]
    model, tokenizer, spec, curve = train_with_curve(family, "shakespeare", order,
                                                     [*overrides, *extra, f"device={device}"], seed, 1)
    return arm, seed, model.cpu(), tokenizer, spec, curve


def run(config: ExperimentConfig) -> dict:
    """Train every arm × seed at one budget (learning curves on validation), then score all on the test
    lines once; returns every number the report shows."""
    from arlm.evaluate.orders import evaluate_in_order
    from arlm.usecases.evaluate import random_orders_bits

    size = QUICK if config.quick else FULL
    seeds = [config.seed + i for i in range(size["seeds"])]
    overrides = [*size["model"], *size["train"], f"max_steps={size['steps']}"]
    protocol = Protocol({"train": "shakespeare/train", "val": "shakespeare/val",
                         "test": TestLines(size["test_lines"])}, budget_unit="steps")
    results: dict[str, Any] = {"quick": config.quick, "seeds": seeds, "steps": size["steps"],
                               "model": size["model"], "train": size["train"],
                               "test_lines": size["test_lines"],
                               "sigma_l2r_fraction": SIGMA_L2R_FRACTION}
    jobs = [(arm, seed, overrides, config.device) for seed in seeds for arm in ARMS]
    workers = worker_count(config.threads, len(jobs), os.cpu_count())
    results["workers"] = workers
    trained: dict[tuple[str, int], tuple] = {}
    with progress(config.show_progress) as bar:
        task = bar.add_task(f"training {len(ARMS)} arms × {len(seeds)} seeds, {size['steps']:,} steps each",
                            total=len(jobs) + 2)
        results["exact"] = _exact_model(size["exact_lines"])
        kn = _kneser_ney_models()
        results["kneser_ney_5gram_val_nats"] = _kn_validation(kn["l2r"])
        bar.advance(task)
        for arm, seed, model, tokenizer, spec, curve in in_workers(jobs, _train_job, _start, (), workers,
                                                                   lambda: bar.advance(task)):
            trained[arm, seed] = model, tokenizer, spec, curve
            protocol.budget.spend(arm, size["steps"])
        protocol.budget.check_equal()
        bar.update(task, description="scoring every model on the test lines")
        runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
        with protocol.final_test() as test_lines:
            kn_bits = {}
            for order, counted in kn.items():
                test = test_lines.encoded(counted.tokenizer)
                kn_bits[order] = evaluate_in_order(counted.model, test, counted.order,
                                                   show_progress=False).bits_per_char
            for seed in seeds:
                for arm, (family, _, _) in ARMS.items():
                    model, tokenizer, spec, curve = trained[arm, seed]
                    test = test_lines.encoded(tokenizer)
                    row: dict[str, Any] = {"seed": seed, "curve": curve}
                    row["bits_per_char"] = evaluate_in_order(model, test, spec, seed=seed,
                                                             show_progress=False).bits_per_char
                    if family == "sigma_gpt":
                        orders = random_orders_bits(model, test, size["random_orders"], seed, test.num_chars)
                        row["random_orders"] = orders.mean
                        row["nll_per_line_std_nats"] = orders.nll_per_sequence_std
                    runs[arm].append(row)
        bar.advance(task)
    results["kneser_ney_5gram"] = kn_bits
    results["arms"] = {arm: {"runs": rows, "summary": _summaries(rows)} for arm, rows in runs.items()}
    results["comparisons"] = comparisons(results["arms"])
    results["protocol"] = protocol.record()
    return results


def _summaries(rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k in ("bits_per_char", "random_orders") if k in rows[0]]
    return {k: asdict(summarize([r[k] for r in rows])) for k in keys}


COMPARISONS = (  # (name, arm A, metric of A, arm B, metric of B): A − B paired by seed
    ("r2l − l2r", "Transformer r2l", "bits_per_char", "Transformer l2r", "bits_per_char"),
    ("random − l2r", "Transformer random", "bits_per_char", "Transformer l2r", "bits_per_char"),
    ("σ-GPT l2r − Transformer l2r", "σ-GPT", "bits_per_char", "Transformer l2r", "bits_per_char"),
    ("σ-GPT + curriculum l2r − Transformer l2r", "σ-GPT + curriculum", "bits_per_char", "Transformer l2r",
     "bits_per_char"),
    ("curriculum − none, l2r", "σ-GPT + curriculum", "bits_per_char", "σ-GPT", "bits_per_char"),
    ("curriculum − none, random orders", "σ-GPT + curriculum", "random_orders", "σ-GPT", "random_orders"),
)


def comparisons(arms: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The paired comparisons of :data:`COMPARISONS`: the differences summarised, the verdict, and for
    the σ-GPT rows the ratio of means."""
    out = {}
    for name, a, ma, b, mb in COMPARISONS:
        va, vb = [r[ma] for r in arms[a]["runs"]], [r[mb] for r in arms[b]["runs"]]
        c = compare_paired(va, vb, a, b)
        out[name] = {"a": a, "b": b, "difference": asdict(c.difference), "verdict": c.verdict,
                     "ratio": float(np.mean(va) / np.mean(vb))}
    return out


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

LN2 = math.log(2)


def _paired(results: dict, name: str):
    """The comparison ``name`` recomputed from the per-seed numbers (so the sentence follows them)."""
    _, a, ma, b, mb = next(c for c in COMPARISONS if c[0] == name)
    arms = results["arms"]
    return compare_paired([r[ma] for r in arms[a]["runs"]], [r[mb] for r in arms[b]["runs"]], a, b)


def _mean_curve(arm: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean, min, max) of an arm's validation curves over seeds, in bits per token."""
    curves = [np.array(r["curve"], dtype=float) for r in arm["runs"]]
    steps = curves[0][:, 0]
    values = np.stack([c[:, 1] for c in curves]) / LN2  # (seeds, evaluations)
    return steps, values.mean(0), values.min(0), values.max(0)


def plot_bars(results: dict, path: Path) -> Path:
    """Test bits/char per arm from zero, the seeds' mean with its 95 % interval; σ-GPT's random orders
    beside; the 5-grams as reference bars."""
    from arlm.experiments.plots import new_figure, save_png

    kn, arms = results["kneser_ney_5gram"], results["arms"]
    labels, values, errors, colors = ["KN 5-gram\nl2r", "KN 5-gram\nr2l"], [kn["l2r"], kn["r2l"]], [0, 0], \
        ["#999999", "#999999"]
    for arm, a in arms.items():
        for metric, suffix in (("bits_per_char", " l2r" if arm.startswith("σ") else ""),
                               ("random_orders", " random")):
            if metric in a["summary"]:
                s = a["summary"][metric]
                label = (arm + suffix).replace("Transformer", "Transf.").replace(" + ", "\n+ ")
                for word in (" l2r", " r2l", " random"):
                    label = label.replace(word, "\n" + word.strip())
                labels.append(label)
                values.append(s["mean"])
                errors.append(0 if math.isnan(s["low"]) else s["high"] - s["mean"])
                colors.append("#cc6677" if arm.startswith("σ") else "#4477aa")
    fig = new_figure(9.0, 4.0)
    ax = fig.add_subplot()
    x = np.arange(len(values))
    ax.bar(x, values, color=colors, yerr=errors, capsize=3)
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylim(0, max(values) * 1.12)
    ax.set_ylabel("test bits per character (from 0)")
    ax.set_title(f"Shakespeare characters, {results['steps']:,} steps each; mean of {len(results['seeds'])} "
                 "seeds, 95 % interval", fontsize=9)
    for i, v in enumerate(values):
        ax.text(i, v + errors[i], f"{v:.2f}", ha="center", va="bottom", fontsize=7)
    return save_png(fig, path)


def plot_curves(results: dict, path: Path) -> Path:
    """Validation loss against training steps (bits per token, each model in its own order; the band is
    the seeds' range) with the KN 5-gram's validation loss as a line."""
    from arlm.experiments.plots import new_figure, save_png

    fig = new_figure(7.0, 4.2)
    ax = fig.add_subplot()
    for i, (arm, a) in enumerate(results["arms"].items()):
        steps, mean, low, high = _mean_curve(a)
        ax.plot(steps, mean, color=f"C{i}", marker="o", ms=3, label=arm)
        ax.fill_between(steps, low, high, color=f"C{i}", alpha=0.15, lw=0)
    ax.axhline(results["kneser_ney_5gram_val_nats"] / LN2, color="black", ls="--", lw=1,
               label="KN 5-gram (l2r), counted")
    ax.set_xlabel("training step")
    ax.set_ylabel("validation bits per token (own order)")
    ax.set_title("learning curves: still falling at the budget's end?", fontsize=9)
    ax.legend(fontsize=7)
    return save_png(fig, path)


def _cell(s: dict[str, Any]) -> str:
    if math.isnan(s["std"]):
        return f"{s['mean']:.4f}"
    return f"{s['mean']:.4f} ± {s['std']:.4f}"


def render(results: dict, out_dir: Path) -> str:
    """The report's Markdown, with ``orders_text.png`` (test bits/char from zero, intervals) and
    ``learning_curves.png``."""
    out_dir = Path(out_dir)
    bars = plot_bars(results, out_dir / "orders_text.png")
    curves = plot_curves(results, out_dir / "learning_curves.png")
    e, kn, arms = results["exact"], results["kneser_ney_5gram"], results["arms"]
    exact = e["bits_per_char"]
    n_seeds = len(results["seeds"])
    lines = [
        "# Orders on text: the chain rule in every order",
        "",
        "p(x) = ∏_i p(x_σ(i) | x_σ(<i)) holds for every permutation σ, so an exact model gives a text "
        "the same probability in every order. Each model below is scored in its own order on the same "
        f"test lines ({results['test_lines']} Shakespeare test lines, bits per character of the same "
        "characters), so the numbers compare." + (" **Quick run: tiny models, few steps.**"
                                                    if results["quick"] else ""),
        "",
        "## An exact model: the same number in every order",
        "",
        f"An MLE {e['n']}-gram on {e['lines']} short training lines is their empirical distribution "
        "p(x) = c(x)/N; scored on those lines:",
        "",
        "| order | bits/char |",
        "|---|---|",
        *[f"| {o} | {v:.6f} |" for o, v in exact.items()],
        "",
        f"Spread across orders: {max(exact.values()) - min(exact.values()):.2e} bits/char (rounding only).",
        "",
        "## Finite models: the order matters",
        "",
        f"Every neural arm: {results['steps']:,} training steps (the budget, equal for all), seeds "
        f"{', '.join(map(str, results['seeds']))} (each fixing the weights, data order and random orders; "
        "shared by the arms, so the comparisons are paired by seed). Mean ± std over seeds:",
        "",
        "| model | l2r (or its own order) | random orders | ratio to Transformer l2r |",
        "|---|---|---|---|",
        f"| Kneser-Ney 5-gram, l2r (counted) | {kn['l2r']:.4f} | – | – |",
        f"| Kneser-Ney 5-gram, r2l (counted) | {kn['r2l']:.4f} | – | – |",
    ]
    base = arms["Transformer l2r"]["summary"]["bits_per_char"]["mean"]
    for arm, a in arms.items():
        s = a["summary"]
        random_cell = _cell(s["random_orders"]) if "random_orders" in s else "–"
        lines.append(f"| {arm} | {_cell(s['bits_per_char'])} | {random_cell} "
                     f"| {s['bits_per_char']['mean'] / base:.3f} |")
    lines += ["", f"![test bits per character per arm]({bars.name})", "",
              "Paired comparisons (A − B per seed, the 95 % interval of the mean difference):", "",
              "| comparison | A − B, bits/char | 95 % interval | verdict |", "|---|---:|---|---|"]
    for name, c in results["comparisons"].items():
        d = c["difference"]
        interval = "–" if math.isnan(d["low"]) else f"[{d['low']:+.4f}, {d['high']:+.4f}]"
        verdict = {A_LOWER: "A lower", B_LOWER: "B lower"}.get(c["verdict"], "not distinguishable")
        lines.append(f"| {name} | {d['mean']:+.4f} | {interval} | {verdict} |")
    lines += ["", f"![learning curves]({curves.name})", "", "## What the numbers show", "",
              *[p for sentence in findings(results) for p in (sentence, "")],
              f"Settings: model {', '.join(results['model'])}; training {', '.join(results['train'])}; "
              f"{n_seeds} seeds; σ-GPT reads {100 * results['sigma_l2r_fraction']:.0f} % of its rows left to "
              "right (the curriculum: 100 % at the first step, decaying linearly to that share at the last)."]
    return "\n".join(lines) + "\n"


def findings(results: dict) -> list[str]:
    """The conclusions, each written from the numbers."""
    kn = results["kneser_ney_5gram"]
    out = ["Right to left against left to right (the Transformer): "
           + comparison_sentence(_paired(results, "r2l − l2r"), "bits/char")
           + f" The counted 5-gram: r2l − l2r = {kn['r2l'] - kn['l2r']:+.4f} bits/char. Both orders are "
           "valid chain rules; a finite model learns each conditional separately, so they need not agree.",
           "A fresh random order per line (the Transformer cannot know which position comes next): "
           + comparison_sentence(_paired(results, "random − l2r"), "bits/char")]
    plain, curr = (results["comparisons"][k] for k in ("σ-GPT l2r − Transformer l2r",
                                                      "σ-GPT + curriculum l2r − Transformer l2r"))
    gap, gap_c = 100 * (plain["ratio"] - 1), 100 * (curr["ratio"] - 1)
    text = (f"σ-GPT read left to right is {gap:+.1f} % from the left-to-right Transformer at the same "
            f"budget, {gap_c:+.1f} % with the curriculum. ")
    c = _paired(results, "curriculum − none, l2r")
    text += "Curriculum against none, left to right: " + comparison_sentence(c, "bits/char")
    if plain["verdict"] != B_LOWER:
        text += (" σ-GPT is not distinguishably behind the left-to-right Transformer here, so there is no "
                 "gap for the curriculum to close.")
    elif c.verdict == A_LOWER:
        text += (f" The curriculum closes {100 * (gap - gap_c) / gap:.0f} % of the gap (Pannatier et al. "
                 "2024 report that it closes most of it on text).")
    else:
        text += (" So the curriculum does not close the gap distinguishably here (Pannatier et al. 2024 "
                 "report that it closes most of it on text).")
    out.append(text)
    out.append("In random orders (what σ-GPT is for), curriculum against none: "
               + comparison_sentence(_paired(results, "curriculum − none, random orders"), "bits/char"))
    out.append(_against_ngram(results))
    return out


def _against_ngram(results: dict) -> str:
    """Whether the left-to-right Transformer beats the counted 5-gram at this budget, and if not, whether
    its learning curve was still falling."""
    s = results["arms"]["Transformer l2r"]["summary"]["bits_per_char"]
    kn = results["kneser_ney_5gram"]["l2r"]
    steps, mean, _, _ = _mean_curve(results["arms"]["Transformer l2r"])
    where = (f"The left-to-right Transformer ({s['mean']:.4f} bits/char, 95 % interval [{s['low']:.4f}, "
             f"{s['high']:.4f}]) against the counted KN 5-gram ({kn:.4f}): ")
    if not math.isnan(s["high"]) and s["high"] < kn:
        return where + f"it beats the 5-gram at {results['steps']:,} steps."
    if len(steps) >= 2:
        drop = mean[-2] - mean[-1]
        trend = (f"its validation loss fell by {drop:.3f} bits/token between steps {steps[-2]:.0f} and "
                 f"{steps[-1]:.0f}")
        trend += (", still falling when the budget ended (where a longer run ends is not measured here)"
                  if drop > 0 else ", no longer falling at this size")
    else:
        trend = "one evaluation only: no trend"
    verdict = ("it does not beat the 5-gram at this budget" if not math.isnan(s["low"]) and s["low"] > kn
               else "the two are not distinguishable at this budget")
    return where + verdict + "; " + trend + "."

"""orders-text: the chain rule in every order, on Shakespeare's characters (F2, F3).

**Claim.** p(x) = ∏_i p(x_σ(i) | x_σ(<i)) for every permutation σ, so an *exact* model gives a text
the same probability whichever order it reads it in. Finite models trained at the same budget do
not: what is easy to predict depends on the order. Measured here, in bits per character of the same
test lines (each model scored in its own order, so the numbers compare):

* an exact model: an MLE n-gram longer than every line of a small set, evaluated on that set, is the
  empirical distribution p(x) = c(x)/N in every order: l2r, r2l and a fixed shuffle agree exactly;
* a Kneser-Ney 5-gram in each order (counted, no training budget);
* the same Transformer trained for the same number of steps left to right, right to left and in a
  fresh random order per line (it cannot know which position comes next);
* σ-GPT (the same Transformer plus a second position table, trained on random orders) evaluated
  left to right and in random orders, against the left-to-right Transformer: the cost of learning
  every order at once.
"""

from __future__ import annotations

from pathlib import Path

from arlm.experiments import ExperimentConfig
from arlm.experiments.orders_common import first_sequences, train_in_order

NAME = "orders-text"
SUMMARY = "L2R vs R2L vs random order (and σ-GPT) on Shakespeare characters at equal steps, bits/char"

TEXT_ORDERS = ("l2r", "r2l", "random")
SIGMA_L2R_FRACTION = 0.25  # σ-GPT rows read left to right (see SigmaGPTConfig.l2r_fraction)
FULL = {"steps": 500, "test_lines": 2000, "exact_lines": 300, "random_orders": 4,
        "model": ["n_layer=2", "n_head=4", "d_model=64", "dropout=0.0"],
        "train": ["block_size=128", "batch_tokens=4096", "micro_batch_size=32", "lr=3e-3",
                  "warmup_steps=50", "eval_interval=0", "log_interval=50"]}
QUICK = {"steps": 15, "test_lines": 150, "exact_lines": 60, "random_orders": 2,
         "model": ["n_layer=1", "n_head=2", "d_model=32"],
         "train": ["block_size=128", "batch_tokens=1024", "micro_batch_size=8", "lr=3e-3",
                   "warmup_steps=2", "eval_interval=0", "log_interval=5"]}


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


def _kneser_ney(test_lines: int) -> dict:
    """A modified Kneser-Ney 5-gram (chars) counted in each order, on the same test lines."""
    from arlm.evaluate.orders import evaluate_in_order
    from arlm.usecases.data import TokenizerSpec, encode_split
    from arlm.usecases.train import NgramRequest, train_ngram

    out = {}
    for order in ("l2r", "r2l"):
        counted = train_ngram(NgramRequest("shakespeare", n=5, order=order, discount_fallback=True,
                                           tokenizer=TokenizerSpec("char")))
        test = first_sequences(encode_split("shakespeare", counted.tokenizer, "test").encoded, test_lines)
        out[order] = evaluate_in_order(counted.model, test, counted.order, show_progress=False).bits_per_char
    return out


def run(config: ExperimentConfig) -> dict:
    """Train and evaluate every order at one budget; returns every number the report shows."""
    import torch

    from arlm.evaluate.orders import evaluate_in_order
    from arlm.usecases.data import encode_split
    from arlm.usecases.evaluate import random_orders_bits

    torch.set_num_threads(config.threads)
    size = QUICK if config.quick else FULL
    overrides = [*size["model"], *size["train"], f"max_steps={size['steps']}", f"device={config.device}"]
    results: dict = {"quick": config.quick, "seed": config.seed, "steps": size["steps"],
                     "model": size["model"], "train": size["train"], "test_lines": size["test_lines"]}
    results["exact"] = _exact_model(size["exact_lines"])
    results["kneser_ney_5gram"] = _kneser_ney(size["test_lines"])
    transformer = {}
    for order in TEXT_ORDERS:
        model, tok, spec = train_in_order("transformer", "shakespeare", order, overrides, config.seed,
                                          config.threads)
        test = first_sequences(encode_split("shakespeare", tok, "test").encoded, size["test_lines"])
        transformer[order] = evaluate_in_order(model, test, spec, seed=config.seed,
                                               show_progress=False).bits_per_char
    results["transformer"] = transformer
    model, tok, spec = train_in_order("sigma_gpt", "shakespeare", "l2r",
                                      [*overrides, f"l2r_fraction={SIGMA_L2R_FRACTION}"], config.seed,
                                      config.threads)
    test = first_sequences(encode_split("shakespeare", tok, "test").encoded, size["test_lines"])
    l2r = evaluate_in_order(model, test, spec, show_progress=False).bits_per_char
    orders = random_orders_bits(model, test, size["random_orders"], config.seed, test.num_chars)
    results["sigma_gpt"] = {"l2r_fraction": SIGMA_L2R_FRACTION, "l2r": l2r, "random_orders": orders.values,
                            "random_mean": orders.mean, "random_std": orders.std,
                            "nll_per_line_std_nats": orders.nll_per_sequence_std,
                            "ratio_to_l2r_transformer": l2r / transformer["l2r"]}
    return results


def render(results: dict, out_dir: Path) -> str:
    """The report's Markdown, with ``orders_text.png`` (bits/char per order and model)."""
    from arlm.experiments.plots import new_figure, save_png

    t, s, e, kn = results["transformer"], results["sigma_gpt"], results["exact"], results["kneser_ney_5gram"]
    fig = new_figure(6.4, 3.6)
    ax = fig.add_subplot()
    labels = ["KN 5-gram\nl2r", "KN 5-gram\nr2l", "Transf.\nl2r", "Transf.\nr2l", "Transf.\nrandom",
              "σ-GPT\nl2r", "σ-GPT\nrandom"]
    values = [kn["l2r"], kn["r2l"], t["l2r"], t["r2l"], t["random"], s["l2r"], s["random_mean"]]
    colors = ["#999999"] * 2 + ["#4477aa"] * 3 + ["#cc6677"] * 2
    ax.bar(range(len(values)), values, color=colors)
    ax.errorbar([6], [s["random_mean"]], yerr=[s["random_std"]], color="black", capsize=4)
    ax.set_xticks(range(len(values)), labels, fontsize=8)
    ax.set_ylabel("test bits per character")
    ax.set_title(f"Shakespeare characters, {results['steps']} training steps each")
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:.2f}", ha="center", va="bottom", fontsize=7)
    save_png(fig, Path(out_dir) / "orders_text.png")

    gap = 100 * (s["ratio_to_l2r_transformer"] - 1)
    exact = e["bits_per_char"]
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
        "![bits per character per order](orders_text.png)",
        "",
        "| model | l2r | r2l | random |",
        "|---|---|---|---|",
        f"| Kneser-Ney 5-gram (counted) | {kn['l2r']:.4f} | {kn['r2l']:.4f} | – |",
        f"| Transformer, {results['steps']} steps | {t['l2r']:.4f} | {t['r2l']:.4f} | {t['random']:.4f} |",
        f"| σ-GPT, {results['steps']} steps ({100 * (1 - s['l2r_fraction']):.0f} % of rows in random orders) "
        f"| {s['l2r']:.4f} | – | "
        f"{s['random_mean']:.4f} ± {s['random_std']:.4f} ({len(s['random_orders'])} orders) |",
        "",
        f"* Right to left against left to right: {t['r2l'] - t['l2r']:+.3f} bits/char for the "
        f"Transformer, {kn['r2l'] - kn['l2r']:+.3f} for the 5-gram. Both orders are valid chain rules; "
        "a finite model learns each conditional separately, so they need not agree.",
        f"* A Transformer fed a fresh random order per line does not know which position comes next "
        f"(it sees a bag of characters and their positions, not the next slot): "
        f"{t['random'] - t['l2r']:+.3f} bits/char against left to right.",
        f"* σ-GPT, told the next position by its second position table, evaluated left to right is "
        f"{gap:+.1f} % from the left-to-right Transformer at the same budget (the aim: within 10 %; "
        "Pannatier et al. (2024) report that random-order training costs likelihood on text). "
        f"In random orders it gives {s['random_mean']:.3f} ± {s['random_std']:.3f} bits/char; each "
        f"line's NLL varies by {s['nll_per_line_std_nats']:.3f} nats across orders (an exact model: 0).",
        "",
        f"Settings: model {', '.join(results['model'])}; training {', '.join(results['train'])}; seed "
        f"{results['seed']}.",
    ]
    return "\n".join(lines) + "\n"




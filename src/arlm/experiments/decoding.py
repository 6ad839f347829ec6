"""Decoding strategies compared (F22): the same prefixes continued by greedy search, beam search,
pure sampling and truncated sampling, on a char-level Transformer and LSTM.

**The chapter's claim.** Maximisation (greedy search, beam search) finds high-probability text that is
bland and repetitive: p(x) is highest for short, generic, looping continuations, and beam search,
the better maximiser, makes it worse. Pure sampling from the model (τ = 1) draws from the whole
distribution, whose unreliable tail gives diverse but incoherent text. Truncation keeps the head of
each next-token distribution and renormalises: top-k (Fan et al. 2018) keeps the k most probable
tokens, top-p (nucleus, Holtzman et al. 2020) the smallest set of mass ≥ p, min-p those with
p(w) ≥ min_p · max p, and a temperature τ < 1 sharpens p(w)^{1/τ}; they land in between. Human text
is not the most probable text: its NLL under the model is far above greedy's (Holtzman et al. 2020).

**What is measured.** Prefixes and true continuations come from held-out Shakespeare test lines (one
line of verse is one sequence, as the models were trained): the lines with at least
``MIN_LINE_CHARS`` characters, ``num_prompts`` of them evenly spaced through the test split (so every
play contributes). The prefix is the line up to and including the first space at or after character
``PREFIX_CHARS`` (whole words); the true continuation is the rest of the line. Each strategy continues
every prefix once (beam search returns its best hypothesis) until [EOS], the end of the line, or
``MAX_NEW_TOKENS`` tokens. Per strategy, on the continuations alone (words, whitespace split):

* NLL: the mean negative log-likelihood per generated token ([EOS] included) under the model's own
  distribution, before any truncation or temperature (nats per token; for a char model, per char);
* distinct-1/2/3, self-BLEU-4 (Texygen's definition), share of repeated 4-grams in a text, Zipf
  coefficient (:mod:`arlm.evaluate.metrics`);
* against the true continuations: corpus BLEU (sacrebleu) and ROUGE-1/2/L F-measures (rouge-score);
* tokens/s of generation (all prompts in batches; reported only: no other number depends on time).

The human row scores the true continuations the same way (their NLL given the prefix, their
diversity, and BLEU = 100 against themselves).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from arlm.decode.config import DecodingConfig
from arlm.decode.search import beam_search, generate
from arlm.errors import MismatchError
from arlm.evaluate import metrics
from arlm.experiments import ExperimentConfig
from arlm.experiments.plots import new_figure, save_png
from arlm.progress import progress
from arlm.usecases.checkpoints import load_model
from arlm.usecases.data import TokenizerSpec, prepare_data
from arlm.usecases.train import build_model, make_train_config

NAME = "decoding"
SUMMARY = "greedy, beam, sampling, top-k, top-p and min-p continuing the same Shakespeare prefixes (F22)"

# ----- prompts ---------------------------------------------------------------------------------
PREFIX_CHARS = 20  # the prefix ends at the first space at or after this character
MIN_LINE_CHARS = 48  # test lines at least this long (so the continuation is ≥ ~20 characters)
MAX_NEW_TOKENS = 48  # > the longest continuation (test lines are ≤ 63 characters) plus [EOS]
NUM_PROMPTS, QUICK_PROMPTS = 256, 8
NUM_EXAMPLES = 3  # prompts whose continuations the report prints

# ----- models: (name, `arlm train` command, steps; quick steps), the cpu-small preset ------------
MODELS = [("Transformer", "transformer", 1500, 15), ("LSTM", "lstm", 3000, 15)]
PRESET, QUICK_PRESET = "cpu-small", "tiny"

# (label, settings): every strategy the chapter discusses; seeds come from the run's seed
STRATEGIES: list[tuple[str, dict[str, Any]]] = [
    ("greedy", {"strategy": "greedy"}),
    ("beam 4", {"strategy": "beam", "num_beams": 4, "num_samples": 1}),
    ("beam 8", {"strategy": "beam", "num_beams": 8, "num_samples": 1}),
    ("sampling τ=1.0", {"strategy": "sample", "temperature": 1.0}),
    ("sampling τ=0.7", {"strategy": "sample", "temperature": 0.7}),
    ("top-k 40", {"strategy": "top-k", "top_k": 40}),
    ("top-p 0.9", {"strategy": "top-p", "top_p": 0.9}),
    ("top-p 0.95", {"strategy": "top-p", "top_p": 0.95}),
    ("min-p 0.05", {"strategy": "sample", "min_p": 0.05}),
]
HUMAN = "human (test text)"
METRIC_KEYS = ("nll", "bleu", "rouge1", "rouge2", "rougeL", "distinct_1", "distinct_2", "distinct_3",
               "self_bleu", "repeat_4gram", "zipf")


# ---------------------------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------------------------


def split_line(line: str, prefix_chars: int = PREFIX_CHARS) -> tuple[str, str] | None:
    """A line -> (prefix, continuation): the prefix runs to the first space at or after
    ``prefix_chars`` (kept in the prefix); None if no space is there or nothing follows it."""
    cut = line.find(" ", prefix_chars)
    if cut < 0 or cut + 1 >= len(line):
        return None
    return line[: cut + 1], line[cut + 1 :]


def choose_prompts(lines: list[str], n: int, min_chars: int = MIN_LINE_CHARS,
                   prefix_chars: int = PREFIX_CHARS) -> list[tuple[str, str]]:
    """``n`` (prefix, continuation) pairs from the lines of at least ``min_chars`` characters, evenly
    spaced through them (deterministic: the same split gives the same prompts)."""
    pairs = [p for line in lines if len(line) >= min_chars and (p := split_line(line, prefix_chars))]
    if not pairs:
        raise MismatchError(f"no test line has {min_chars}+ characters to split into a prefix and a "
                            "continuation; use a corpus with longer lines")
    picks = np.unique(np.linspace(0, len(pairs) - 1, min(n, len(pairs))).round().astype(int))
    return [pairs[i] for i in picks.tolist()]


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


def load_neural(path: Path):
    """A neural model folder -> (model, tokenizer); an n-gram (folder or ARPA file) is refused."""
    from arlm.models.neural import NeuralLM

    model, tokenizer = load_model(path)
    if not isinstance(model, NeuralLM):
        raise MismatchError(f"{path} holds an n-gram model; the decoding experiment compares strategies "
                            "on a neural model: pass a Transformer or LSTM model folder (arlm train …)")
    return model, tokenizer


def train_models(config: ExperimentConfig, bar, task) -> list[dict[str, Any]]:
    """Train the char Transformer and LSTM on the Shakespeare training split for fixed steps."""
    from arlm.train.presets import resolve
    from arlm.train.trainer import Trainer

    data = prepare_data("shakespeare", TokenizerSpec("char"), "train", None)
    preset = QUICK_PRESET if config.quick else PRESET
    out = []
    for name, command, steps, quick_steps in MODELS:
        steps = quick_steps if config.quick else steps
        bar.update(task, description=f"training the {name} ({steps:,} steps)")
        settings = resolve(command, preset, [f"seed={config.seed}", f"max_steps={steps}"])
        train_config = make_train_config(settings, eval_interval=0, show_progress=False, out_dir=None,
                                         device=config.device)
        model = build_model(settings, data.tokenizer.vocab_size, seed=config.seed)
        started = time.perf_counter()
        summary = Trainer(model, train_config, data.train, None).train()
        out.append({"name": name, "model": model, "tokenizer": data.tokenizer,
                    "info": {"family": model.family, "preset": preset, "steps": steps,
                             "vocab_size": data.tokenizer.vocab_size,
                             "batch_tokens": train_config.batch_tokens,
                             "parameters": model.num_parameters(), "train_loss": summary.train_loss,
                             "train_seconds": round(time.perf_counter() - started, 1)}})
        bar.advance(task)
    return out


# ---------------------------------------------------------------------------------------------
# Decoding and scoring
# ---------------------------------------------------------------------------------------------


def _by_length(prompts: list[list[int]]) -> dict[int, list[int]]:
    """Prompt indices grouped by token length (beam search takes one length per call)."""
    groups: dict[int, list[int]] = defaultdict(list)
    for i, p in enumerate(prompts):
        groups[len(p)].append(i)
    return dict(sorted(groups.items()))


def decode_all(model, tokenizer, prompts: list[list[int]], decoding: DecodingConfig
               ) -> tuple[list[list[int]], float, float]:
    """Continue every prompt once -> (new token ids per prompt, [EOS] included; total NLL of them under
    the model in nats; seconds taken)."""
    ids = {"eos_id": tokenizer.eos_id, "sos_id": tokenizer.sos_id, "pad_id": tokenizer.pad_id}
    outputs: list[list[int]] = [[] for _ in prompts]
    nll = 0.0
    started = time.perf_counter()
    if decoding.strategy == "beam":
        for group in _by_length(prompts).values():
            beams = beam_search(model, [prompts[i] for i in group], decoding, **ids)
            for row, i in enumerate(group):
                n = int(beams.lengths[row, 0])
                outputs[i] = beams.tokens[row, 0, :n].tolist()
                nll -= float(beams.log_probs[row, 0])  # no processors: the model's own log-probs
    else:  # sampling and greedy take prompts of any lengths in one batch
        samples = generate(model, prompts, decoding, **ids)
        outputs = samples.rows()
        nll = -float(samples.log_probs.sum())
    return outputs, nll, time.perf_counter() - started


@torch.inference_mode()
def continuation_nll(model, tokenizer, prompts: list[list[int]], continuations: list[list[int]],
                     batch_size: int = 64) -> float:
    """Σ over prompts of -log p(continuation | prompt) under the model, teacher-forced (nats); a
    continuation that ends the line carries its [EOS]."""
    total = 0.0
    for start in range(0, len(prompts), batch_size):
        rows = [p + c for p, c in zip(prompts[start:start + batch_size],
                                      continuations[start:start + batch_size], strict=True)]
        width = max(map(len, rows))
        batch = torch.tensor([r + [tokenizer.pad_id] * (width - len(r)) for r in rows])  # (B, T)
        scores = model.score(batch.to(model.device)).double().cpu()  # (B, T-1): log p(x_{t+1} | x_≤t)
        for b, p in enumerate(prompts[start:start + batch_size]):
            total -= float(scores[b, len(p) - 1 : len(rows[b]) - 1].sum())
    return total


def text_scores(hyps: list[str], refs: list[str], seed: int) -> dict[str, float]:
    """Accuracy against the references and diversity of the hypotheses (words), one dict."""
    m = metrics.text_metrics(hyps, refs, seed=seed)
    return {k: m[k] for k in METRIC_KEYS if k in m}


def evaluate_model(entry: dict[str, Any], pairs: list[tuple[str, str]], config: ExperimentConfig,
                   bar, task) -> dict[str, Any]:
    """Every strategy (and the human text) on one model -> {label: scores}, plus examples."""
    model, tokenizer = entry["model"], entry["tokenizer"]
    model.eval()
    prompts = [[tokenizer.sos_id, *tokenizer.encode(prefix)] for prefix, _ in pairs]
    refs = [cont for _, cont in pairs]
    rows: dict[str, dict[str, float]] = {}
    examples: dict[str, list[str]] = {}
    for label, settings in STRATEGIES:
        bar.update(task, description=f"{entry['name']}: {label}")
        decoding = DecodingConfig(max_new_tokens=MAX_NEW_TOKENS, seed=config.seed, **settings)
        outputs, nll, seconds = decode_all(model, tokenizer, prompts, decoding)
        n_tokens = sum(map(len, outputs))
        hyps = [tokenizer.decode(o) for o in outputs]
        ended = sum(bool(o) and o[-1] == tokenizer.eos_id for o in outputs)
        rows[label] = {**text_scores(hyps, refs, config.seed), "nll": nll / max(1, n_tokens),
                       "mean_length": n_tokens / len(outputs), "tokens_per_s": n_tokens / max(seconds, 1e-9),
                       "ended_by_eos": ended / len(outputs)}
        examples[label] = hyps[: NUM_EXAMPLES]
        bar.advance(task)
    cont_ids = [[*tokenizer.encode(c), tokenizer.eos_id] for c in refs]  # the line ends there
    n_ref = sum(map(len, cont_ids))
    rows[HUMAN] = {**text_scores(refs, refs, config.seed),
                   "nll": continuation_nll(model, tokenizer, prompts, cont_ids) / n_ref,
                   "mean_length": n_ref / len(refs), "tokens_per_s": None, "ended_by_eos": 1.0}
    examples[HUMAN] = refs[: NUM_EXAMPLES]
    return {"model": entry["info"], "strategies": rows, "examples": examples}


def run(config: ExperimentConfig) -> dict:
    """Train (or load) the models, continue the prefixes with every strategy, score the outputs."""
    if config.threads:
        torch.set_num_threads(config.threads)
    loaded = None
    if config.checkpoint is not None:  # checked before any work
        model, tokenizer = load_neural(Path(config.checkpoint))
        loaded = {"name": f"{model.family} ({Path(config.checkpoint).name})",
                  "model": model.to(config.device), "tokenizer": tokenizer,
                  "info": {"family": model.family, "checkpoint": str(config.checkpoint),
                           "vocab_size": tokenizer.vocab_size,
                           "parameters": model.num_parameters()}}
    from arlm.data.corpora import load_corpus

    pairs = choose_prompts(load_corpus("shakespeare").lines("test"),
                           QUICK_PROMPTS if config.quick else NUM_PROMPTS)
    n_models = 1 if loaded else len(MODELS)
    with progress(config.show_progress) as bar:
        task = bar.add_task("decoding", total=n_models * len(STRATEGIES) + (0 if loaded else len(MODELS)))
        entries = [loaded] if loaded else train_models(config, bar, task)
        models = {e["name"]: evaluate_model(e, pairs, config, bar, task) for e in entries}
    return finite_or_none({
        "claim": "greedy and beam search give bland, repetitive text; pure sampling (τ = 1) diverse but "
                 "incoherent text; truncated sampling (top-k, top-p, min-p, τ < 1) lies in between",
        "prompts": {"corpus": "shakespeare", "split": "test", "count": len(pairs),
                    "min_line_chars": MIN_LINE_CHARS, "prefix_chars": PREFIX_CHARS,
                    "max_new_tokens": MAX_NEW_TOKENS,
                    "examples": [{"prefix": p, "continuation": c} for p, c in pairs[:NUM_EXAMPLES]]},
        "strategies": {label: DecodingConfig(max_new_tokens=MAX_NEW_TOKENS, seed=config.seed,
                                             **settings).to_dict() for label, settings in STRATEGIES},
        "metric_tokens": "words (whitespace split)",  # what distinct-n, self-BLEU, repeat_4gram, Zipf count
        "models": models,
    })


def finite_or_none(value: Any) -> Any:
    """NaN and ±inf (a Zipf fit over fewer than two distinct words) -> None, so results are strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite_or_none(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def _fmt(x: float | None, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:,.{digits}f}"


COLUMNS = [("NLL (nats/token)", "nll", 3), ("BLEU", "bleu", 1), ("ROUGE-1", "rouge1", 1),
           ("ROUGE-2", "rouge2", 1), ("ROUGE-L", "rougeL", 1), ("distinct-1", "distinct_1", 3),
           ("distinct-2", "distinct_2", 3), ("distinct-3", "distinct_3", 3), ("self-BLEU", "self_bleu", 1),
           ("rep. 4-grams", "repeat_4gram", 3), ("Zipf", "zipf", 2), ("length", "mean_length", 1),
           ("ends at [EOS]", "ended_by_eos", 2), ("tokens/s", "tokens_per_s", 0)]


def plot(results: dict, path: Path) -> Path:
    """Quality against diversity, one labelled point per strategy and model: NLL under the model against
    self-BLEU (left; log scale), ROUGE-1 against distinct-2 (right; the human row, 100 by definition,
    is the dotted line at its distinct-2)."""
    fig = new_figure(11.0, 4.6)
    left, right = fig.subplots(1, 2)
    markers = ["o", "s", "^", "D"]
    for m, (name, model) in enumerate(results["models"].items()):
        for i, (label, row) in enumerate(model["strategies"].items()):
            human = label == HUMAN
            style = {"marker": "*" if human else markers[m % len(markers)],
                     "color": "black" if human else f"C{i}", "s": 90 if human else 40,
                     "label": label if m == 0 else None}
            points = [(left, row["self_bleu"], row["nll"])]
            if human:
                right.axvline(row["distinct_2"], color="black", ls=":", lw=0.8)
            else:
                points.append((right, row["distinct_2"], row["rouge1"]))
            for ax, x, y in points:
                if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)) or x <= 0:
                    continue
                ax.scatter([x], [y], **style)
                ax.annotate(f"{label} ({name[:1]})", (x, y), fontsize=6, xytext=(3, 3),
                            textcoords="offset points")
    left.set_xscale("log")
    left.set_xlabel("self-BLEU, log scale (lower: more diverse)")
    left.set_ylabel("NLL under the model, nats/token (lower: more probable)")
    right.set_xlabel("distinct-2 (higher: more diverse; dotted: human text)")
    right.set_ylabel("ROUGE-1 against the true continuation")
    names = ", ".join(f"{n[:1]} = {n}" for n in results["models"])
    left.set_title(f"likelihood vs self-similarity ({names})", fontsize=9)
    right.set_title("accuracy vs diversity", fontsize=9)
    left.legend(fontsize=6, loc="best")
    return save_png(fig, path)


def render(results: dict, out_dir: Path) -> str:
    """The report: the claim, the prompt protocol, one table per model, examples, the plot."""
    out_dir = Path(out_dir)
    png = plot(results, out_dir / "quality_vs_diversity.png")
    p = results["prompts"]
    lines = [
        "## Claim",
        "",
        "Maximisation (greedy, beam search) yields bland, repetitive text of high likelihood; pure "
        "sampling at τ = 1 yields diverse but incoherent text from the model's unreliable tail; "
        "truncated sampling (top-k, top-p, min-p, or τ < 1) lies in between. Human text is not the "
        "most probable text: its NLL under the model is well above that of greedy or beam output "
        "(Holtzman et al. 2020).",
        "",
        "## Protocol",
        "",
        f"{p['count']} held-out prefixes of the Shakespeare {p['split']} split: the test lines with at "
        f"least {p['min_line_chars']} characters, evenly spaced through the split; the prefix runs to "
        f"the first space at or after character {p['prefix_chars']}, the true continuation is the rest "
        f"of the line. Every strategy continues every prefix once until [EOS] (the end of the line) or "
        f"{p['max_new_tokens']} tokens; beam search keeps its best hypothesis (length penalty 1). NLL is "
        "the mean per generated token ([EOS] included) under the model's own, untruncated "
        "distribution. BLEU (sacrebleu) and ROUGE (rouge-score) compare each continuation with the "
        f"true one; distinct-n, self-BLEU, repeated 4-grams and Zipf use {results['metric_tokens']}. "
        "tokens/s counts output tokens (for beam search, those of the returned hypothesis) over the wall "
        "clock of decoding all prompts in batches; it is reported and decides nothing. The human row "
        "is the true continuations themselves.",
        "",
        "Example prefixes: " + "; ".join(f"`{e['prefix']}` → `{e['continuation']}`" for e in p["examples"]),
        "",
    ]
    for name, model in results["models"].items():
        info = model["model"]
        trained = (f"{info['steps']:,} steps of {info['batch_tokens']:,} tokens ({info['preset']} preset), "
                   f"final training loss {_fmt(info.get('train_loss'), 3)} nats/char"
                   if "steps" in info else f"loaded from {info.get('checkpoint')}")
        lines += [f"## {name}: {info['parameters']:,} parameters, {trained}", "",
                  "| strategy | " + " | ".join(c for c, _, _ in COLUMNS) + " |",
                  "|---|" + "---:|" * len(COLUMNS)]
        for label, row in model["strategies"].items():
            lines.append(f"| {label} | " + " | ".join(_fmt(row.get(k), d) for _, k, d in COLUMNS) + " |")
        lines += ["", "Continuations of the first prefixes:", "", "| strategy | "
                  + " | ".join(f"`{e['prefix']}…`" for e in p["examples"]) + " |",
                  "|---|" + "---|" * len(p["examples"])]
        for label, texts in model["examples"].items():
            cells = " | ".join(_cell(t) for t in texts)
            lines.append(f"| {label} | {cells} |")
        lines.append("")
    lines += ["## Quality against diversity", "", f"![quality against diversity]({png.name})", "",
              "## What was measured against the claim", ""]
    lines += [_findings(name, model) for name, model in results["models"].items()]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """A continuation as a table cell: visible newlines, escaped pipes; blank text said in words."""
    if not text:
        return "(empty)"
    if not text.strip():
        return f"({len(text)} blanks)"
    return text.replace("|", "\\|").replace("\n", "⏎")


def _findings(name: str, model: dict) -> str:
    """One paragraph per model, written from the numbers (so it stays true when they change)."""
    s = model["strategies"]
    g, b4, b8, t1, human = s["greedy"], s["beam 4"], s["beam 8"], s["sampling τ=1.0"], s[HUMAN]
    maxim = {"greedy": g, "beam 4": b4, "beam 8": b8}
    trunc = {k: s[k] for k in ("sampling τ=0.7", "top-k 40", "top-p 0.9", "top-p 0.95", "min-p 0.05")}
    parts = [f"**{name}.**"]
    top_max = max(r["nll"] for r in maxim.values())
    parts.append(f"Likelihood: greedy, beam 4 and beam 8 reach {g['nll']:.2f}, {b4['nll']:.2f} and "
                 f"{b8['nll']:.2f} nats/token, pure sampling {t1['nll']:.2f}, the human text "
                 f"{human['nll']:.2f}"
                 + (": human text is far less probable than maximised text, as claimed"
                    if human["nll"] > top_max else ": unlike the claim, human text is no less probable than "
                    "maximised text")
                 + (", and the better maximiser (beam 8) finds the more probable text."
                    if b8["nll"] <= g["nll"] else "."))
    bland = all(r["self_bleu"] > max(t1["self_bleu"], human["self_bleu"]) for r in maxim.values())
    parts.append(("Blandness, as claimed: " if bland else "Blandness is not clear-cut: ")
                 + "self-BLEU " + ", ".join(f"{k} {r['self_bleu']:.1f}" for k, r in maxim.items())
                 + f" against {t1['self_bleu']:.1f} for pure sampling and {human['self_bleu']:.1f} for the "
                 f"human text; distinct-1 {min(r['distinct_1'] for r in maxim.values()):.3f}–"
                 f"{max(r['distinct_1'] for r in maxim.values()):.3f} against {t1['distinct_1']:.3f} and "
                 f"{human['distinct_1']:.3f}: maximisation gives every prefix much the same continuation.")
    reps = [r["repeat_4gram"] for r in maxim.values()]
    lengths = [r["mean_length"] for r in s.values()]
    parts.append(f"Repetition inside one continuation (repeated word 4-grams: {max(reps):.3f} at most for "
                 f"greedy/beam, {t1['repeat_4gram']:.3f} for pure sampling) "
                 + ("barely shows: a continuation is the rest of one verse line, "
                    f"{min(lengths):.0f}–{max(lengths):.0f} tokens on average"
                    ", too short for the loops that long maximised generations fall into."
                    if max(reps) < 0.05 else "shows, as claimed."))
    low, high = max(r["nll"] for r in maxim.values()), t1["nll"]
    inside = [k for k, r in trunc.items() if low < r["nll"] < high]
    outside = [k for k in trunc if k not in inside]
    parts.append(f"Truncation in between: {len(inside)} of {len(trunc)} truncated strategies have an NLL "
                 f"between maximisation's ({low:.2f}) and pure sampling's ({high:.2f})"
                 + (f"; not {', '.join(outside)}" if outside else "")
                 + f"; their self-BLEU is {min(r['self_bleu'] for r in trunc.values()):.1f}–"
                 f"{max(r['self_bleu'] for r in trunc.values()):.1f}, close to pure sampling's: on short "
                 "lines, diversity across outputs is already high once anything is sampled."
                 + (f" top-k 40 keeps {40 / model['model']['vocab_size']:.0%} of the "
                    f"{model['model']['vocab_size']}-token vocabulary, so it barely truncates."
                    if 40 / model["model"].get("vocab_size", 1e9) >= 0.5 else ""))
    rows = {k: r for k, r in s.items() if k != HUMAN}
    best_rouge = max(rows, key=lambda k: rows[k]["rouge1"])
    parts.append(f"Accuracy: BLEU is at most {max(r['bleu'] for r in rows.values()):.1f} for every strategy "
                 "(a few words of a verse line do not determine the rest, so matching 2- to 4-grams is "
                 f"chance); ROUGE-1 is highest for {best_rouge} ({rows[best_rouge]['rouge1']:.1f}, pure "
                 f"sampling {t1['rouge1']:.1f}): unigram overlap rewards the frequent words maximisation "
                 "picks, so accuracy against one reference does not measure quality here.")
    return " ".join(parts) + "\n"

"""Decoding strategies against human text (F22), after Holtzman et al. 2020, "The Curious Case of Neural
Text Degeneration", Table 1 and Figure 2.

**The chapter's claim.** Maximisation (greedy search, beam search) finds text the model finds very
probable, and that text falls into loops: Holtzman et al. report that 73.66 % of greedy and 28.94 %
of beam-16 generations end in a repeating loop, against 0.28 % of human text, and that the
per-token probability of beam-search text climbs as it repeats while human text's stays low and
jagged (their Figure 2). Pure sampling (τ = 1) draws from the whole distribution and its unreliable
tail gives text more surprising than human text; truncation (temperature τ < 1, top-k, top-p) keeps
the head of each next-token distribution and lands in between, nucleus sampling p = 0.95 closest to
human text in perplexity, Self-BLEU and Zipf coefficient.

**What is measured.** A BPE Transformer is trained on the Shakespeare training split for a fixed
number of steps (its validation loss recorded along the way: the budget is stated, not chosen); the
test split is read once, at the end: ``prompts`` windows of ``prompt_tokens`` tokens starting at a line
start, evenly spaced through the test plays, each followed by ``new_tokens`` tokens of the true text.
Every decoder continues every prompt for exactly ``new_tokens`` tokens (no early stop, so all texts have
one length), the samplers with 3 seeds. Per decoder, on the continuations alone
(:mod:`arlm.experiments.decoding_measures` defines the measures):

* NLL (perplexity = e^NLL): mean −log p per generated token under the model's own, untruncated
  distribution (the text's perplexity under the model, Holtzman's "Perplexity" column);
* repetition: the share of generations that end in a loop (Holtzman's "Repetition"), the share of
  tokens inside loops and of repeated 4-grams by position;
* Self-BLEU-4 (Texygen, over words) and the Zipf coefficient of word counts;
* distinct-1/2/3 over words that occur in the training split, the non-word rate beside it;
* the mean per-token probability by position (Holtzman's Figure 2), and along one example.

The human row scores the true continuations the same way (their NLL given the same prompt).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from arlm.decode.config import DecodingConfig
from arlm.decode.search import beam_search, generate
from arlm.errors import MismatchError
from arlm.evaluate import metrics
from arlm.experiments import ExperimentConfig
from arlm.experiments import decoding_measures as dm
from arlm.experiments.decoding_measures import DECODERS, DETERMINISTIC
from arlm.experiments.decoding_report import render as render_report
from arlm.experiments.protocol import Protocol, summarize
from arlm.experiments.workers import in_workers, worker_count
from arlm.progress import progress

NAME = "decoding"
SUMMARY = ("greedy, beam 16, pure, temperature, top-k and top-p sampling continuing 256-token Shakespeare "
           "test prompts with a BPE Transformer, against Holtzman et al. 2020 Table 1 (F22)")

FULL = {"vocab_size": 2048, "steps": 800, "seeds": 3, "prompts": 64, "prompt_tokens": 32, "new_tokens": 256,
        "bin": 32, "beam_chunk": 8,
        "model": ["n_layer=4", "n_head=4", "d_model=128", "dropout=0.0"],
        "train": ["block_size=320", "batch_tokens=5120", "micro_batch_size=16", "lr=3e-3", "min_lr=3e-4",
                  "warmup_steps=50", "eval_interval=200", "eval_batch_size=32", "log_interval=200"]}
QUICK = {"vocab_size": 300, "steps": 6, "seeds": 2, "prompts": 6, "prompt_tokens": 8, "new_tokens": 40,
         "bin": 8, "beam_chunk": 4,
         "model": ["n_layer=1", "n_head=2", "d_model=32", "dropout=0.0"],
         "train": ["block_size=64", "batch_tokens=512", "micro_batch_size=8", "lr=3e-3", "warmup_steps=2",
                   "eval_interval=3", "eval_batch_size=32", "log_interval=3"]}

CHECKPOINT_FAMILIES: tuple[str, ...] = ()  # trains its own model: the budget is part of the result
MEASURES = ("nll", "ends_in_loop", "loop_share", "self_bleu", "zipf", "distinct_1", "distinct_2",
            "distinct_3", "non_word_rate", "mean_token_prob")


# ---------------------------------------------------------------------------------------------
# Prompts: the test split, read once
# ---------------------------------------------------------------------------------------------


class TestPrompts:
    """The Shakespeare test plays as one BPE stream; what the protocol guards (``windows`` reads it)."""

    def windows(self, tokenizer, count: int, prompt_tokens: int, new_tokens: int
                ) -> tuple[list[list[int]], list[list[int]]]:
        """(prompts, true continuations): ``count`` windows starting at a line start, evenly spaced."""
        from arlm.streams import sequence_spans
        from arlm.usecases.data import encode_split

        stream = np.asarray(encode_split("shakespeare", tokenizer, "test", unit="documents").encoded.tokens)
        return choose_windows(stream, sequence_spans(stream), tokenizer.encode("\n"), count, prompt_tokens,
                              new_tokens)


def choose_windows(stream: np.ndarray, spans: tuple[np.ndarray, np.ndarray], newline: list[int], count: int,
                   prompt_tokens: int, new_tokens: int) -> tuple[list[list[int]], list[list[int]]]:
    """``count`` (prompt, continuation) windows of a ``[SOS] doc [EOS] …`` stream, each inside one
    document and starting right after its [SOS] or a newline token, evenly spaced over the candidates
    (deterministic). MismatchError when no document is long enough."""
    width = prompt_tokens + new_tokens
    candidates = []
    for start, length in zip(*spans, strict=True):
        start, end = int(start) + 1, int(start) + int(length) - 1  # the document's tokens: [SOS]+1 .. [EOS]
        heads = [start] + ([int(i) + 1 for i in np.flatnonzero(stream[start:end] == newline[0]) + start]
                           if len(newline) == 1 else [])
        candidates += [h for h in heads if h + width <= end]
    if not candidates:
        raise MismatchError(f"no test document holds {width} tokens after a line start; use a corpus of "
                            "longer documents or fewer tokens")
    picks = np.unique(np.linspace(0, len(candidates) - 1, min(count, len(candidates))).round().astype(int))
    rows = [stream[candidates[i] : candidates[i] + width].astype(int).tolist() for i in picks.tolist()]
    return [r[:prompt_tokens] for r in rows], [r[prompt_tokens:] for r in rows]


# ---------------------------------------------------------------------------------------------
# Training (the budget in steps, stated)
# ---------------------------------------------------------------------------------------------


def train(size: dict[str, Any], seed: int, threads: int, device: str):
    """The BPE Transformer on the training split -> (model in eval mode, tokenizer, learning curve
    ``[[step, validation nats/token], …]``, final training loss)."""
    from arlm.usecases.train import TrainRequest, train_neural

    request = TrainRequest("transformer", corpus="shakespeare", tokenizer="bpe",
                           vocab_size=size["vocab_size"], unit="documents", preset="tiny", out_dir=None,
                           threads=threads,
                           overrides=[*size["model"], *size["train"], f"max_steps={size['steps']}",
                                      f"seed={seed}", f"device={device}", "show_progress=false"])
    result = train_neural(request, log=lambda *_: None)
    curve = [[x["step"], x["val_loss"]] for x in result.summary.history if x.get("val_loss") is not None]
    return result.trainer.model.eval(), result.trainer.tokenizer, curve, result.summary.train_loss


# ---------------------------------------------------------------------------------------------
# Decoding and measuring, one (decoder, seed) per job, in worker processes
# ---------------------------------------------------------------------------------------------

_SHARED: dict[str, Any] = {}  # what every job of a worker reads: set once by _start


def _start(model, tokenizer, prompts, known, size) -> None:
    _SHARED.update(model=model.eval(), tokenizer=tokenizer, prompts=prompts, known=known, size=size)


@torch.inference_mode()
def token_log_probs(model, prompts: list[list[int]], continuations: list[list[int]]) -> np.ndarray:
    """(N, L) log p(continuation token | prompt, earlier tokens) under the model, teacher-forced; all
    prompts of one length, all continuations of one length."""
    rows = torch.tensor([p + c for p, c in zip(prompts, continuations, strict=True)])  # (N, P+L)
    scores = model.score(rows.to(model.device)).double().cpu().numpy()  # (N, P+L-1)
    return scores[:, len(prompts[0]) - 1 :]


def decode(model, prompts: list[list[int]], settings: dict[str, Any], seed: int, new_tokens: int,
           beam_chunk: int) -> tuple[list[list[int]], np.ndarray]:
    """Every prompt continued by ``new_tokens`` tokens (no [EOS] stop) -> (continuations, (N, L) their
    log-probs under the model, untruncated)."""
    config = DecodingConfig(max_new_tokens=new_tokens, seed=seed, **settings)
    if config.strategy == "beam":
        outputs: list[list[int]] = []
        for start in range(0, len(prompts), beam_chunk):
            beams = beam_search(model, prompts[start : start + beam_chunk], config, eos_id=None)
            outputs += [beams.tokens[b, 0, : int(beams.lengths[b, 0])].tolist()
                        for b in range(len(beams.lengths))]
        return outputs, token_log_probs(model, prompts, outputs)
    samples = generate(model, prompts, config, eos_id=None)
    return samples.rows(), samples.log_probs.numpy()


def measure(texts: list[str], ids: list[list[int]], log_probs: np.ndarray, known: set[str], seed: int,
            size: dict[str, Any]) -> dict[str, Any]:
    """Every measure of one decoder (or the human text) on its continuations (see the module docstring)."""
    length, step = size["new_tokens"], size["bin"]
    loops = [dm.loop_mask(x) for x in ids]
    out: dict[str, Any] = {
        "nll": float(-log_probs.mean()),
        "mean_token_prob": float(np.exp(log_probs).mean()),
        "ends_in_loop": float(np.mean([bool(m[-1]) for m in loops])),
        "loop_share": float(np.mean([m.mean() for m in loops])),
        "self_bleu": metrics.self_bleu(texts, tokenize=dm.words, seed=seed),
        "zipf": metrics.zipf_coefficient(texts, tokenize=dm.words),
        "non_word_rate": dm.non_word_rate(texts, known),
        "loop_by_position": dm.by_position(loops, length, step),
        "repeat_by_position": dm.by_position([dm.repeated_ngram_mask(x) for x in ids], length, step),
        "prob_by_position": dm.by_position(np.exp(log_probs), length, step),
    }
    for n in (1, 2, 3):
        out[f"distinct_{n}"] = dm.distinct_known(texts, n, known)
    return out


def _job(label: str, settings: dict[str, Any], seed: int) -> tuple[str, int, dict[str, Any]]:
    """One decoder with one seed, measured."""
    s = _SHARED
    tok, size, prompts = s["tokenizer"], s["size"], s["prompts"]
    ids, log_probs = decode(s["model"], prompts, settings, seed, size["new_tokens"], size["beam_chunk"])
    texts = [tok.decode(x) for x in ids]
    row = measure(texts, ids, log_probs, s["known"], seed, size)
    row["seed"] = seed
    row["example"] = texts[0]
    row["example_probs"] = np.round(np.exp(log_probs[0]), 5).tolist() if label in DETERMINISTIC else None
    return label, seed, row


def run(config: ExperimentConfig) -> dict:
    """Train the model (validation curve), then read the test prompts once and continue them with every
    decoder × seed; returns every number the report shows."""
    if config.threads:
        torch.set_num_threads(config.threads)
    size = QUICK if config.quick else FULL
    seeds = [config.seed + i for i in range(size["seeds"])]
    protocol = Protocol({"train": "shakespeare/train", "val": "shakespeare/val", "test": TestPrompts()},
                        budget_unit="steps")
    jobs = [(label, settings, seed) for label, settings in DECODERS
            for seed in (seeds[:1] if label in DETERMINISTIC else seeds)]
    workers = worker_count(config.threads, len(jobs), os.cpu_count())
    with progress(config.show_progress) as bar:
        task = bar.add_task(f"training the Transformer ({size['steps']:,} steps)", total=len(jobs) + 2)
        model, tok, curve, train_loss = train(size, config.seed, config.threads, config.device)
        model = model.cpu()
        protocol.budget.spend("Transformer", size["steps"])
        from arlm.data.corpora import load_corpus

        known = dm.vocabulary(load_corpus("shakespeare").lines("train"))
        bar.advance(task)
        bar.update(task, description="decoding the test prompts")
        with protocol.final_test() as test:
            prompts, truth = test.windows(tok, size["prompts"], size["prompt_tokens"], size["new_tokens"])
            human_lp = token_log_probs(model, prompts, truth)
            human_texts = [tok.decode(x) for x in truth]
            human = measure(human_texts, truth, human_lp, known, config.seed, size)
            human.update(example=human_texts[0], example_probs=np.round(np.exp(human_lp[0]), 5).tolist())
            bar.advance(task)
            runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in DECODERS}
            for label, _, row in in_workers(jobs, _job, _start, (model, tok, prompts, known, size), workers,
                                            lambda: bar.advance(task)):
                runs[label].append(row)
    return finite_or_none({
        "quick": config.quick, "seeds": seeds, "workers": workers,
        "size": {k: v for k, v in size.items()},
        "model": {"family": "transformer", "tokenizer": f"BPE, {tok.vocab_size} tokens",
                  "vocab_size": tok.vocab_size, "batch_tokens": _setting(size["train"], "batch_tokens"),
                  "parameters": model.num_parameters(), "steps": size["steps"],
                  "train_loss": train_loss, "curve": curve},
        "prompts": {"count": len(prompts), "prompt_text": tok.decode(prompts[0])},
        "known_words": len(known),
        "decoders": {label: DecodingConfig(max_new_tokens=size["new_tokens"], **s).to_dict()
                     for label, s in DECODERS},
        "human": human,
        "runs": runs,
        "summary": summaries(runs),
        "protocol": protocol.record(),
    })


def _setting(overrides: list[str], name: str) -> int:
    return int(next(o.split("=", 1)[1] for o in overrides if o.startswith(name + "=")))


def summaries(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per decoder and measure: mean, std and the 95 % interval over seeds (std NaN for one run)."""
    out = {}
    for label, rows in runs.items():
        out[label] = {}
        for key in MEASURES:
            values = [r[key] for r in rows if r.get(key) is not None]
            if values:
                s = summarize(values)
                out[label][key] = {"mean": s.mean, "std": s.std, "low": s.low, "high": s.high, "n": s.n}
    return out


def finite_or_none(value: Any) -> Any:
    """NaN and ±inf -> None, so results are strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    return value


def render(results: dict, out_dir: Path) -> str:
    """The report (see :mod:`arlm.experiments.decoding_report`)."""

    return render_report(results, out_dir)

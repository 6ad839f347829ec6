"""How fast are arlm's n-gram models? Counting, modified-KN estimation and scoring, against NLTK.

Run by hand (a few minutes; NLTK's Kneser–Ney is the slow part)::

    python benchmarks/ngram_speed.py            # prints the table, updates docs/benchmarks.md
    python benchmarks/ngram_speed.py --quick    # smaller corpora, no file written

Corpora, tokenized here with the regex ``\\w+|[^\\w\\s]`` (one sentence per non-empty line,
``[SOS] … [EOS]``; the vocabulary is every training token, test-only tokens are [UNK]):

* Shakespeare (``arlm.data.corpora``' train/test split of the 38 plays);
* Python source: the standard library's ``.py`` files (train + val split), topped up with
  site-packages ``.py`` files (sorted by path) to at least 10M training tokens; test = the
  standard library's test split.

Measured: modified Kneser–Ney 5-gram build (counting + estimation) wall time and tokens/s, its
peak traced memory (``tracemalloc``: numpy reports its buffers), the first scoring call (which
builds the hash indexes), scoring throughput on the flat test stream and through
``evaluate_likelihood`` (padded sentence batches). Peers: NLTK's ``KneserNeyInterpolated`` (same
order, fit on the same Shakespeare training text, scoring a subset of test tokens because it takes
~0.1–0.2 s per token), KenLM's query (the ``kenlm`` module, if installed) and ``lmplz`` (if on PATH
or named by ``ARLM_LMPLZ``). Times are medians of ``--repeats`` runs unless marked.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from arlm.data.corpora import load_corpus
from arlm.evaluate.likelihood import evaluate_likelihood
from arlm.interop.arpa import write_arpa
from arlm.models.ngram import NGramModel
from arlm.models.ngram_counts import count_ngrams
from arlm.streams import EOS_ID, SOS_ID, SPECIAL_TOKENS, UNK_ID
from report import command_line, table_argv, timed, write_section

TOKEN = re.compile(r"\w+|[^\w\s]")
ORDER = 5
ROOT = Path(__file__).resolve().parents[1]


# ----- data ------------------------------------------------------------------------------------


def tokenize(lines: list[str]) -> list[list[str]]:
    return [t for t in (TOKEN.findall(line) for line in lines) if t]


def python_source_lines(min_tokens: int) -> tuple[list[list[str]], list[list[str]], str]:
    corpus = load_corpus("pystdlib")
    train = tokenize(corpus.lines("train") + corpus.lines("val"))
    test = tokenize(corpus.lines("test"))
    n, extra = sum(map(len, train)), 0
    site = Path(sysconfig.get_paths()["purelib"])
    for path in sorted(site.rglob("*.py")):
        if n >= min_tokens:
            break
        try:
            lines = tokenize(path.read_text(encoding="utf-8", errors="replace").splitlines())
        except OSError:
            continue
        train += lines
        n += sum(map(len, lines))
        extra += 1
    note = f"stdlib .py (train+val) + {extra} site-packages .py files; test: stdlib test split"
    return train, test, note


def encode(train: list[list[str]], test: list[list[str]]):
    """Token lists -> (vocab, train stream, test stream): vocabulary in first-appearance order."""
    index = {w: i for i, w in enumerate(SPECIAL_TOKENS)}
    for sent in train:
        for w in sent:
            if w not in index:
                index[w] = len(index)

    def stream(sents):
        ids = [[SOS_ID, *(index.get(w, UNK_ID) for w in s), EOS_ID] for s in sents]
        return np.fromiter((i for s in ids for i in s), dtype=np.uint32)

    return list(index), stream(train), stream(test)


# ----- measuring -------------------------------------------------------------------------------


def traced_peak(fn: Callable) -> float:
    """Peak bytes allocated (traced) while ``fn`` runs, in GiB."""
    gc.collect()
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**30


def measure_ours(name: str, vocab, train: np.ndarray, test: np.ndarray, repeats: int) -> dict:
    T = len(train)
    t_count = timed(lambda: count_ngrams(train, ORDER, len(vocab)), repeats).median
    fit = timed(lambda: NGramModel.fit(train, ORDER, vocab, "mkn"), repeats)
    t_fit, model = fit.median, fit.last
    peak = traced_peak(lambda: NGramModel.fit(train, ORDER, vocab, "mkn"))
    flat = torch.from_numpy(test.astype(np.int64))[None]  # (1, T): sentences in a row
    fresh = NGramModel.fit(train, ORDER, vocab, "mkn")
    t0 = time.perf_counter()
    fresh.score(flat)
    t_first = time.perf_counter() - t0  # includes building the hash indexes
    t_score = timed(lambda: model.score(flat), repeats).median
    ev = timed(lambda: evaluate_likelihood(model, test, show_progress=False), repeats)
    t_eval, report = ev.median, ev.last
    with tempfile.TemporaryDirectory() as tmp:
        t_arpa = timed(lambda: write_arpa(model, Path(tmp) / "m.arpa"), 1, warmup=0).median
    scored = len(test) - 1
    return {"corpus": name, "train_tokens": T, "test_tokens": len(test), "vocab": len(vocab),
            "ngrams": model.num_ngrams, "count_s": t_count, "fit_s": t_fit, "peak_gib": peak,
            "first_score_s": t_first, "score_s": t_score, "score_tok_s": scored / t_score,
            "eval_s": t_eval, "arpa_s": t_arpa, "eval_tok_s": report.num_tokens / t_eval,
            "ppl": report.perplexity, "nll": report.nll, "model": model}


def measure_nltk(train_sents: list[list[str]], test_sents: list[list[str]], max_tokens: int,
                 vocab_size_note: str) -> dict:
    from nltk.lm import KneserNeyInterpolated
    from nltk.lm.preprocessing import padded_everygram_pipeline

    gc.collect()
    t = time.perf_counter()
    grams, words = padded_everygram_pipeline(ORDER, train_sents)
    lm = KneserNeyInterpolated(ORDER)
    lm.fit(grams, words)
    t_fit = time.perf_counter() - t
    n, t = 0, time.perf_counter()
    for sent in test_sents:
        context = ["<s>"] * (ORDER - 1)
        for w in [*sent, "</s>"]:
            lm.logscore(w, context[-(ORDER - 1) :])
            context.append(w)
            n += 1
        if n >= max_tokens:
            break
    t_score = time.perf_counter() - t
    del lm
    gc.collect()
    return {"fit_s": t_fit, "score_tokens": n, "score_s": t_score, "score_tok_s": n / t_score,
            "note": vocab_size_note}


def measure_kenlm(model: NGramModel, test_sents: list[list[str]], repeats: int) -> dict | None:
    try:
        import kenlm
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = write_arpa(model, Path(tmp) / "m.arpa")
        t = time.perf_counter()
        k = kenlm.Model(str(path))
        t_load = time.perf_counter() - t
        lines = [" ".join(s) for s in test_sents]
        n = sum(len(s) + 1 for s in test_sents)
        scoring = timed(lambda: sum(k.score(s) for s in lines), repeats)
        t_score, total = scoring.median, scoring.last
    return {"load_s": t_load, "score_s": t_score, "score_tok_s": n / t_score, "log10": total}


def measure_lmplz(train_sents: list[list[str]]) -> dict | None:
    lmplz = os.environ.get("ARLM_LMPLZ") or shutil.which("lmplz")
    if not lmplz:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        text = Path(tmp) / "train.txt"
        text.write_text("\n".join(" ".join(s) for s in train_sents) + "\n")
        t = time.perf_counter()
        with open(text) as src, open(Path(tmp) / "m.arpa", "w") as dst:
            subprocess.run([lmplz, "-o", str(ORDER), "-S", "4G", "-T", tmp], stdin=src,
                           stdout=dst, stderr=subprocess.DEVNULL, check=True)
        return {"fit_s": time.perf_counter() - t}


# ----- report ----------------------------------------------------------------------------------


def fmt_rate(x: float) -> str:
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.1f}k" if x >= 1e3 else f"{x:.1f}"


def report(results: list[dict], nltk: dict, kenlm_res: dict | None, lmplz: dict | None,
           argv: list[str], notes: dict[str, str]) -> str:
    rows = ["| corpus | train tokens | vocab | n-grams (1..5) | count | count tok/s | build (count + MKN) "
            "| build tok/s | peak mem | first score (+ index) | score tok/s | evaluate tok/s "
            "| test ppl |", "|" + "---|" * 13]
    for r in results:
        rows.append(
            f"| {r['corpus']} | {r['train_tokens']:,} | {r['vocab']:,} | "
            f"{'/'.join(f'{g:,}' for g in r['ngrams'])} | {r['count_s']:.2f} s | "
            f"{fmt_rate(r['train_tokens'] / r['count_s'])} | {r['fit_s']:.2f} s | "
            f"{fmt_rate(r['train_tokens'] / r['fit_s'])} | {r['peak_gib']:.2f} GiB | "
            f"{r['first_score_s']:.2f} s | {fmt_rate(r['score_tok_s'])} | "
            f"{fmt_rate(r['eval_tok_s'])} | {r['ppl']:.1f} |")
    shakes = results[0]
    peers = ["| system (Shakespeare, 5-gram) | build | score tok/s | ratio build | ratio score |",
             "|---|---|---|---|---|",
             f"| arlm `mkn` | {shakes['fit_s']:.2f} s | {fmt_rate(shakes['score_tok_s'])} | 1 | 1 |",
             f"| NLTK `KneserNeyInterpolated` | {nltk['fit_s']:.1f} s (1 run) | "
             f"{nltk['score_tok_s']:.2f} ({nltk['score_tokens']} test tokens, 1 run) | "
             f"arlm {nltk['fit_s'] / shakes['fit_s']:,.0f}× faster | "
             f"arlm {shakes['score_tok_s'] / nltk['score_tok_s']:,.0f}× faster |"]
    if kenlm_res:
        peers.append(f"| KenLM query (python `kenlm`, per-sentence calls) | load ARPA "
                     f"{kenlm_res['load_s']:.2f} s | {fmt_rate(kenlm_res['score_tok_s'])} | – | "
                     f"KenLM {kenlm_res['score_tok_s'] / shakes['score_tok_s']:.2f}× arlm |")
    if lmplz:
        ours = shakes["fit_s"] + shakes["arpa_s"]
        peers.append(f"| KenLM `lmplz` (C++; text in, ARPA file out) vs arlm build + `write_arpa` "
                     f"({ours:.2f} s) | {lmplz['fit_s']:.2f} s (1 run) | – | "
                     f"lmplz {lmplz['fit_s'] / ours:.2f}× arlm's time | – |")
    lines = [
        "## n-gram",
        "",
        command_line("ngram_speed.py", ["platform", "processor", f"{os.cpu_count()} CPUs (nproc)", "python",
                                        "numpy", "torch"], argv=argv),
        "",
        "Modified Kneser–Ney 5-gram (`NGramModel.fit(..., 5, smoothing='mkn')`, exactly lmplz's "
        "estimates). Word tokens by the regex `\\w+|[^\\w\\s]`, one sentence per line. `count`: all "
        "1..5-gram counts; `build`: counting + adjusted counts + discounts + interpolation; "
        "`peak mem`: tracemalloc peak during the build; `first score`: the first `score` call, which "
        "builds the hash indexes; `score tok/s`: `model.score` on the flat test stream; "
        "`evaluate tok/s`: `evaluate_likelihood` (sentences in padded batches). Medians of "
        "the repeats.",
        "",
        *rows,
        "",
        *(f"- {k}: {v}" for k, v in notes.items()),
        "",
        *peers,
        "",
        f"NLTK: fit on the same Shakespeare training sentences ({nltk['note']}); its scoring is "
        "timed on the first test tokens only (it costs ~0.1–0.2 s per token), one run each. "
        f"Process max RSS over the whole benchmark: "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--min-tokens", type=int, default=10_000_000,
                        help="training tokens of the Python-source corpus")
    parser.add_argument("--nltk-tokens", type=int, default=200, help="test tokens NLTK scores")
    parser.add_argument("--quick", action="store_true", help="small corpora, nothing written")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    if min(args.repeats, args.min_tokens, args.nltk_tokens) < 1:
        parser.exit(2, "ngram_speed.py: --repeats, --min-tokens and --nltk-tokens must be at least 1\n")
    if args.quick:
        args.repeats, args.min_tokens, args.nltk_tokens = 1, 500_000, 20

    shakes = load_corpus("shakespeare")
    sh_train, sh_test = tokenize(shakes.lines("train")), tokenize(shakes.lines("test"))
    if args.quick:
        sh_train = sh_train[:20000]
    py_train, py_test, py_note = python_source_lines(args.min_tokens)
    notes = {"Shakespeare": "arlm's train split for training, its test split for scoring",
             "Python source": py_note}

    results = []
    for name, train, test in [("Shakespeare", sh_train, sh_test), ("Python source", py_train, py_test)]:
        vocab, tr, te = encode(train, test)
        print(f"{name}: {len(tr):,} training tokens, {len(te):,} test tokens, vocabulary "
              f"{len(vocab):,}", file=sys.stderr)
        results.append(measure_ours(name, vocab, tr, te, args.repeats))
        if name == "Shakespeare":
            kenlm_res = measure_kenlm(results[-1]["model"], test, args.repeats)
            lmplz = measure_lmplz(train)
            if kenlm_res:  # the same model in both: the totals must agree
                ours = -results[-1]["nll"] / math.log(10)
                print(f"test log10 probability: KenLM {kenlm_res['log10']:.4f}, arlm {ours:.4f}",
                      file=sys.stderr)
        results[-1].pop("model")
        gc.collect()
    print("NLTK …", file=sys.stderr)
    nltk = measure_nltk(sh_train, sh_test, args.nltk_tokens, f"{sum(map(len, sh_train)):,} tokens")

    section = report(results, nltk, kenlm_res, lmplz, table_argv(parser), notes)
    print(section)
    if not args.quick:
        write_section(args.out, "## n-gram", section)
        print(f"updated {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

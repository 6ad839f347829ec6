"""How fast does arlm's ∞-gram answer? Index build and query latency against the infini-gram package.

Run by hand (a minute or two)::

    python benchmarks/infinigram_bench.py            # prints the table, updates docs/benchmarks.md
    python benchmarks/infinigram_bench.py --quick    # a few files, nothing written

Both index the same token stream: the ``pystdlib`` training split in characters (arlm's char tokenizer,
one line a sequence). arlm sorts the reversed stream with ``pydivsufsort`` and answers with numpy binary
searches (:mod:`arlm.models.infinigram`); the peer is the paper's own engine (``infini_gram``, C++),
whose index is built by its own Rust indexer from the same ids (written in its tokenized-file format).

Measured, medians of ``--repeats`` rounds (``--build-repeats`` for the builds) with the systems taking
turns (``report.round_robin``):

* build: arlm's ``InfiniGramModel.fit`` (the suffix sort) against the package's indexer (a process);
* one query at a time: p_∞(w | context) for ``--queries`` (context, next character) pairs drawn from
  the test lines, each context the whole line so far ([SOS] included), as a language model asks it —
  arlm's ``prob`` against the engine's ``infgram_prob``; per query, by the matched suffix length ℓ;
* a batch: every prediction of ``--lines`` test lines, arlm's ``score_details`` (one vectorized
  call) against the engine's ``infgram_prob`` in a loop.

The two must agree on every probability and ℓ (checked before timing).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from arlm.evaluate.likelihood import pad_batch
from arlm.models.infinigram import InfiniGramModel
from arlm.streams import split_sequences
from arlm.usecases.data import encode_split
from arlm.usecases.train import InfinigramRequest, train_infinigram
from report import command_line, round_robin, table_argv, write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## ∞-gram"
BUCKETS = ((0, 4), (5, 16), (17, 64), (65, 10**9))  # matched suffix lengths ℓ, inclusive


def engine_index(stream: np.ndarray, folder: Path) -> float:
    """Build the infini-gram package's index of ``stream`` (one document) in ``folder``: seconds."""
    folder.mkdir(parents=True)
    (folder / "tokenized.0").write_bytes(b"\xff\xff" + stream.astype("<u2").tobytes())
    (folder / "offset.0").write_bytes(np.array([0], dtype="<u8").tobytes())
    (folder / "raw").mkdir()
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "infini_gram.indexing", "--data_dir", str(folder / "raw"),
                    "--save_dir", str(folder), "--token_dtype", "u16", "--mem", "2", "--cpus", "1",
                    "--ulimit", "1024"], check=True, capture_output=True)
    return time.perf_counter() - start


def draw_queries(lines: list[np.ndarray], count: int, seed: int) -> list[tuple[list[int], int]]:
    """(context, next token) pairs: a random test line, a random position in it, the line so far."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        line = lines[int(rng.integers(len(lines)))]
        t = int(rng.integers(0, len(line) - 1))
        out.append((line[: t + 1].tolist(), int(line[t + 1])))
    return out


def faster(arlm: float, peer: float) -> str:
    """'arlm 2.0× faster' or 'infini-gram 2.0× faster' from two times (the same unit)."""
    return f"arlm {peer / arlm:.1f}× faster" if arlm <= peer else f"infini-gram {arlm / peer:.1f}× faster"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the query timings")
    parser.add_argument("--build-repeats", type=int, default=1, help="rounds of the index builds")
    parser.add_argument("--queries", type=int, default=100, help="single queries timed")
    parser.add_argument("--lines", type=int, default=60, help="test lines scored in one batch")
    parser.add_argument("--quick", action="store_true", help="a few files, nothing written")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    if min(args.repeats, args.build_repeats, args.queries, args.lines) < 1:
        parser.exit(2, "infinigram_bench.py: --repeats, --build-repeats, --queries and --lines must be at "
                       "least 1\n")
    from infini_gram.engine import InfiniGramEngine

    load_start = os.getloadavg()
    corpus = "pystdlib"
    if args.quick:
        from arlm.experiments.infinigram_mix import QUICK, corpus_for

        corpus = corpus_for(QUICK)
    built = train_infinigram(InfinigramRequest(corpus))  # the char tokenizer, the training split indexed
    stream, tok = np.asarray(built.model.tokens), built.tokenizer
    vocab = tok.vocab
    test = split_sequences(encode_split(corpus, tok, "test").encoded.tokens)
    lines = [test[i] for i in np.linspace(0, len(test) - 1, args.lines).round().astype(int)]
    queries = draw_queries(test, args.queries, seed=0)
    batch = pad_batch(lines)  # (B, T)
    scored = batch[:, 1:] != 0
    predictions = [(row[: t + 1].tolist(), int(row[t + 1])) for row in lines for t in range(len(row) - 1)]
    print(f"{len(stream):,} training tokens, vocabulary {len(vocab)}, {len(queries)} queries, "
          f"{len(predictions):,} batch predictions", file=sys.stderr)

    tmp = Path(tempfile.mkdtemp(prefix="infinigram-bench-"))
    try:
        builds = round_robin({
            "arlm": lambda: InfiniGramModel.fit(stream, vocab),
            "infini-gram": lambda: (shutil.rmtree(tmp / "index", ignore_errors=True),
                                    engine_index(stream, tmp / "index")),
        }, args.build_repeats, warmup=0)
        ours = builds["arlm"].last
        engine = InfiniGramEngine(index_dir=str(tmp / "index"), eos_token_id=2, vocab_size=65535,
                                  token_dtype="u16")
        # the same answers first: every query's probability and ℓ
        suffix = []
        for context, word in queries + predictions:
            p, ell = ours.prob(context, word)
            theirs = engine.infgram_prob(context, word)
            if ell != theirs["suffix_len"] or abs(p - theirs["prob"]) > 1e-12:
                raise SystemExit(f"disagree on {context} -> {word}: arlm {p}, ℓ {ell}; infini-gram {theirs}")
            suffix.append(ell)
        ell = np.array(suffix[: len(queries)])
        one = {f"arlm {i}": (lambda q=q: ours.prob(*q)) for i, q in enumerate(queries)}
        one |= {f"engine {i}": (lambda q=q: engine.infgram_prob(*q)) for i, q in enumerate(queries)}
        singles = round_robin(one, args.repeats, collect_garbage=False)
        batches = round_robin({"arlm": lambda: ours.score_details(batch),
                               "infini-gram": lambda: [engine.infgram_prob(c, w) for c, w in predictions]},
                              args.repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load_end = os.getloadavg()

    def per_query(system: str, pick: np.ndarray) -> float:
        return float(np.median([singles[f"{system} {i}"].median for i in np.flatnonzero(pick)]))

    rows = ["| queries | n | arlm µs/query | infini-gram µs/query | ratio |", "|---|---|---|---|---|"]
    for name, pick in [("all", np.ones(len(queries), bool)),
                       *((f"ℓ {lo}–{hi}" if hi < 10**9 else f"ℓ ≥ {lo}", (ell >= lo) & (ell <= hi))
                         for lo, hi in BUCKETS)]:
        if pick.any():
            a, b = per_query("arlm", pick) * 1e6, per_query("engine", pick) * 1e6
            rows.append(f"| {name} | {int(pick.sum())} | {a:,.0f} | {b:,.0f} | {faster(a, b)} |")
    n = int(scored.sum())
    a, b = batches["arlm"].median, batches["infini-gram"].median
    build_a, build_b = builds["arlm"].median, builds["infini-gram"].median
    section = "\n".join([
        SECTION,
        "",
        command_line("infinigram_bench.py", ["platform", "processor", f"{os.cpu_count()} CPUs (nproc)",
                                             "python", "numpy"], argv=table_argv(parser),
                     load=(load_start, load_end)),
        "",
        f"The ∞-gram of `pystdlib`'s training split{' (quick: a few files)' if args.quick else ''} in "
        f"characters: {len(stream):,} tokens, vocabulary {len(vocab)}. arlm: `InfiniGramModel` (the "
        "reversed stream suffix-sorted by pydivsufsort, numpy binary searches); peer: the `infini-gram` "
        "package's engine (C++) on its own index of the same ids (its Rust indexer). Both give the same "
        f"probability and matched length ℓ on all {len(suffix):,} queries checked. Medians of "
        f"{args.repeats} rounds (builds: {args.build_repeats}), the systems taking turns.",
        "",
        "| build | arlm | infini-gram | ratio |",
        "|---|---|---|---|",
        f"| index {len(stream):,} tokens | {build_a:.2f} s | {build_b:.2f} s (a process: its indexer) | "
        f"{faster(build_a, build_b)} |",
        "",
        f"One query at a time, p_∞(w | the whole line so far), {len(queries)} queries from the test lines, "
        f"by their matched suffix length ℓ (mean ℓ {ell.mean():.1f}):",
        "",
        *rows,
        "",
        f"A batch: every prediction of {len(lines)} test lines ({n:,} predictions) — arlm's "
        f"`score_details` in one vectorized call: {a:.2f} s ({n / a:,.0f} predictions/s); the engine's "
        f"`infgram_prob` in a Python loop: {b:.2f} s ({n / b:,.0f} predictions/s); "
        f"{faster(a, b)}.",
        "",
        "arlm's cost per prediction is O(ℓ log N) narrowing steps, each a few numpy calls on the whole "
        "batch: one query alone pays numpy's per-call overhead for each of its ℓ · 2 · log₂ N binary-search "
        f"steps (here {1 / per_query('arlm', np.ones(len(queries), bool)):,.0f} single queries/s), "
        f"which a batch shares among all its predictions ({n / a:,.0f} predictions/s).",
        "",
    ])
    print(section)
    if not args.quick:
        write_section(args.out, SECTION, section)
        print(f"updated {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

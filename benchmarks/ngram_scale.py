"""How do n-gram builds scale? Build time and peak memory against corpus size, per engine.

Run by hand (each build runs in a child process, whose process tree is sampled for its resident
memory, and whose work folder is sampled for its size on disk)::

    python benchmarks/ngram_scale.py                      # the default ladder, writes the table + plot
    python benchmarks/ngram_scale.py --synthetic 1e6 1e7 1e8 1e9 --engines duckdb --memory 4GB
    python benchmarks/ngram_scale.py --quick --no-write   # a smoke run

Corpora:

* ``python``: prefixes of the Python-source stream of ``benchmarks/ngram_speed.py`` (stdlib .py
  train+val topped up with site-packages to 12M word tokens), 5-grams;
* ``synthetic``: a seeded i.i.d. Zipf(1.1) stream over 28 words, sentences of geometric length
  (mean 20), generated chunk by chunk (never held whole), 4-grams. The small vocabulary keeps the
  model (≤ 28^4 4-grams) small, so what grows with the corpus is the counting alone.

Engines: ``memory`` (``NGramModel.fit``, numpy), ``duckdb`` and ``spark`` (``local[*]``) through
:func:`arlm.models.ngram_build.build_ngram_tables` under ``--memory``; ``lmplz`` (KenLM) where it is
on PATH or named by ``ARLM_LMPLZ``, with ``-S`` set to ``--memory``. Peak memory is the child's
whole process tree (Python, DuckDB inside it, Spark's JVM), sampled every 0.2 s from /proc.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

SYN_WORDS = 28
SYN_ORDER = 4
PY_ORDER = 5
CHUNK = 1 << 22


# ----- the corpora ------------------------------------------------------------------------------


def synthetic_vocab() -> list[str]:
    from arlm.streams import SPECIAL_TOKENS

    return [*SPECIAL_TOKENS, *(f"w{i}" for i in range(SYN_WORDS))]


def synthetic_chunks(num_tokens: int, seed: int = 0, chunk: int = CHUNK):
    """``[SOS] w … [EOS]`` sentences, about ``chunk`` tokens per piece, ``num_tokens`` in all (whole
    sentences: the last piece stops at the first sentence end past the total)."""
    from arlm.streams import EOS_ID, SOS_ID

    rng = np.random.default_rng(seed)
    ranks = np.arange(1, SYN_WORDS + 1)
    probs = ranks ** -1.1 / (ranks ** -1.1).sum()
    ids = np.arange(4, 4 + SYN_WORDS)
    done = 0
    while done < num_tokens:
        lengths = rng.geometric(1 / 20, size=max(1, min(chunk, num_tokens - done) // 22 + 1))  # (S,)
        total = int((lengths + 2).sum())
        out = np.empty(total, dtype=np.int32)
        starts = np.concatenate([[0], np.cumsum(lengths + 2)[:-1]])
        words = np.ones(total, dtype=bool)
        words[starts] = False
        words[starts + lengths + 1] = False
        out[starts] = SOS_ID
        out[starts + lengths + 1] = EOS_ID
        out[words] = rng.choice(ids, size=int(lengths.sum()), p=probs)
        done += total
        yield out


def python_stream(cache: Path) -> tuple[list[str], np.ndarray]:
    """The Python-source training stream of ngram_speed.py (cached as .npy + vocab)."""
    stream, vocab_file = cache / "python_stream.npy", cache / "python_vocab.json"
    if not stream.exists():
        from ngram_speed import encode, python_source_lines

        train, test, _ = python_source_lines(10_000_000)
        vocab, train_ids, _ = encode(train, test)
        cache.mkdir(parents=True, exist_ok=True)
        np.save(stream, train_ids)
        vocab_file.write_text(json.dumps(vocab))
    return json.loads(vocab_file.read_text()), np.load(stream, mmap_mode="r")


def prefix(stream: np.ndarray, num_tokens: int) -> np.ndarray:
    """The first whole sentences of ``stream`` up to about ``num_tokens`` tokens."""
    from arlm.streams import SOS_ID

    if num_tokens >= len(stream):
        return stream
    cut = num_tokens + int(np.argmax(stream[num_tokens:] == SOS_ID))
    return stream[:cut]


# ----- one build (the child) --------------------------------------------------------------------


def child(args: argparse.Namespace) -> None:
    """Build once and print {"seconds", "tokens", "ngrams"} as JSON."""
    from arlm.models.ngram import NGramModel
    from arlm.models.ngram_build import BuildSettings, build_ngram_tables, parse_memory

    if args.corpus == "synthetic":
        vocab, order = synthetic_vocab(), SYN_ORDER
        data = synthetic_chunks(args.tokens)
        if args.engine in ("memory", "lmplz"):
            data = np.concatenate(list(data))
    else:
        vocab, full = python_stream(Path(args.cache))
        order, data = PY_ORDER, np.ascontiguousarray(prefix(full, args.tokens))
    t = time.perf_counter()
    if args.engine == "memory":
        model = NGramModel.fit(data, order, vocab, "mkn", discount_fallback=True)
        tokens = len(data)
    elif args.engine == "lmplz":
        tokens = run_lmplz(data, vocab, order, args)
        t = float(os.environ.get("_LMPLZ_START", t))
        model = None
    else:
        out = Path(args.work) / "model"
        out.mkdir(parents=True)
        settings = BuildSettings(args.engine, parse_memory(args.memory), "local[*]", Path(args.work))
        model = build_ngram_tables(data, order, vocab, out, settings, "mkn", discount_fallback=True,
                                   num_tokens=args.tokens)
        tokens = json.loads((out / "config.json").read_text())["built_by"]["tokens"]
    seconds = time.perf_counter() - t
    print(json.dumps({"seconds": seconds, "tokens": int(tokens),
                      "ngrams": None if model is None else model.num_ngrams}))


def run_lmplz(data: np.ndarray, vocab: list[str], order: int, args) -> int:
    """lmplz on the same stream as text (one sentence a line); returns the tokens counted."""
    lmplz = os.environ.get("ARLM_LMPLZ") or shutil.which("lmplz")
    text = Path(args.work) / "train.txt"
    words = np.array(vocab, dtype=object)
    with open(text, "w") as f:
        for s in range(0, len(data), CHUNK):
            piece = words[np.asarray(data[s : s + CHUNK])]
            body = " ".join(piece.tolist()).replace("[SOS] ", "").replace(" [EOS]", "\n")
            f.write(body.replace("[EOS]", "\n"))
    os.environ["_LMPLZ_START"] = str(time.perf_counter())
    with open(text) as src, open(Path(args.work) / "m.arpa", "w") as dst:
        subprocess.run([lmplz, "-o", str(order), "-S", args.memory.replace("GB", "G"), "-T", args.work,
                        "--discount_fallback"], stdin=src, stdout=dst, stderr=subprocess.DEVNULL, check=True)
    return len(data)


# ----- the same ARPA from every engine -----------------------------------------------------------


def verify(engines: list[str], memory: str, cache: Path) -> list[dict]:
    """Shakespeare (arlm's word tokenizer, train split) and the Python-source stream, 5-grams: each
    engine's ARPA file against the in-memory one, byte for byte (sha256 and bytes compared)."""
    import filecmp
    import hashlib

    from arlm.data.cache import encode_corpus
    from arlm.data.corpora import load_corpus
    from arlm.data.tokenizers import train_tokenizer
    from arlm.interop.arpa import write_arpa
    from arlm.models.ngram import NGramModel
    from arlm.models.ngram_build import BuildSettings, build_ngram_tables, parse_memory

    shakespeare = load_corpus("shakespeare")
    tok = train_tokenizer("word", shakespeare.lines("train"))
    corpora = {"Shakespeare": (tok.vocab, encode_corpus(shakespeare, "train", tok, "lines").tokens),
               "Python source": python_stream(cache)}
    rows = []
    for name, (vocab, tokens) in corpora.items():
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            ref = write_arpa(NGramModel.fit(np.asarray(tokens), PY_ORDER, vocab, "mkn"),
                             Path(tmp) / "memory.arpa")
            digest = hashlib.sha256(ref.read_bytes()).hexdigest()[:16]
            rows.append({"corpus": name, "engine": "memory", "sha256": digest, "equal": True,
                         "bytes": ref.stat().st_size})
            for engine in engines:
                folder = Path(tmp) / engine
                folder.mkdir()
                t = time.perf_counter()
                model = build_ngram_tables(tokens, PY_ORDER, vocab, folder,
                                           BuildSettings(engine, parse_memory(memory), "local[*]"))
                seconds = time.perf_counter() - t
                arpa = write_arpa(model, Path(tmp) / f"{engine}.arpa")
                rows.append({"corpus": name, "engine": engine, "seconds": seconds,
                             "bytes": arpa.stat().st_size,
                             "sha256": hashlib.sha256(arpa.read_bytes()).hexdigest()[:16],
                             "equal": filecmp.cmp(ref, arpa, shallow=False)})
                print(json.dumps(rows[-1]), flush=True)
                del model
    return rows


def verify_section(rows: list[dict], argv: list[str], load0, load1) -> str:
    from report import command_line

    head = command_line("ngram_scale.py", ["platform", "cpus", "python"], argv=argv, load=[load0, load1])
    lines = ["## n-gram engines: the same ARPA file", "", head, "",
             "5-gram modified Kneser–Ney; each engine's model written with `write_arpa` and compared with "
             "the in-memory model's file byte for byte.", "",
             "| corpus | engine | build | ARPA bytes | sha256 (first 16) | byte-equal to memory |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        build = f"{r['seconds']:.1f} s" if "seconds" in r else "–"
        lines.append(f"| {r['corpus']} | {r['engine']} | {build} | {r['bytes']:,} | `{r['sha256']}` | "
                     f"{'yes' if r['equal'] else 'NO'} |")
    return "\n".join(lines) + "\n"


# ----- measuring a child ------------------------------------------------------------------------


def _tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants (from /proc)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in tree]
        tree.update(kids)
        frontier += kids
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def _dir_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, name))
            except OSError:
                continue
    return total


def measure(corpus: str, engine: str, tokens: int, memory: str, cache: Path, scratch: Path) -> dict:
    """Run one build in a child; -> its result with peak RSS (GiB) and peak work-folder size (GiB)."""
    work = Path(tempfile.mkdtemp(prefix=f"{corpus}-{engine}-", dir=scratch))
    cmd = [sys.executable, __file__, "--child", "--corpus", corpus, "--engine", engine, "--tokens",
           str(tokens), "--memory", memory, "--cache", str(cache), "--work", str(work)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = {"rss": 0, "disk": 0}
    stop = threading.Event()

    def sample() -> None:
        n = 0
        while not stop.is_set():
            peak["rss"] = max(peak["rss"], _tree_rss(proc.pid))
            if n % 5 == 0:
                peak["disk"] = max(peak["disk"], _dir_bytes(work))
            n += 1
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    stop.set()
    sampler.join()
    shutil.rmtree(work, ignore_errors=True)
    if proc.returncode != 0:
        return {"corpus": corpus, "engine": engine, "tokens": tokens, "error": err.strip().splitlines()[-1:]}
    result = json.loads(out.strip().splitlines()[-1])
    return {"corpus": corpus, "engine": engine, "memory": memory, **result,
            "peak_rss_gib": peak["rss"] / 2**30, "peak_disk_gib": peak["disk"] / 2**30,
            "load": os.getloadavg()}


# ----- the report -------------------------------------------------------------------------------


def plot(rows: list[dict], path: Path, memory: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"memory": "o-", "duckdb": "s-", "spark": "^-", "lmplz": "d--"}
    for corpus in ("synthetic", "python"):
        for engine in ("memory", "duckdb", "spark", "lmplz"):
            pts = sorted((r["tokens"], r["seconds"], r["peak_rss_gib"]) for r in rows
                         if r["corpus"] == corpus and r["engine"] == engine and "seconds" in r)
            if not pts:
                continue
            x, t, m = zip(*pts, strict=True)
            label = f"{engine}, {corpus}"
            style = styles[engine] if corpus == "synthetic" else styles[engine].replace("-", ":")
            ax_t.loglog(x, t, style, label=label)
            ax_m.loglog(x, m, style, label=label)
    from arlm.models.ngram_build import parse_memory

    ax_m.axhline(parse_memory(memory) / 2**30, color="grey", lw=0.8, ls="--", label=f"--memory {memory}")
    ax_t.set(xlabel="training tokens", ylabel="build time (s)", title="build time")
    ax_m.set(xlabel="training tokens", ylabel="peak RSS of the process tree (GiB)", title="peak memory")
    for ax in (ax_t, ax_m):
        ax.grid(True, which="both", alpha=0.3)
    ax_m.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def section(rows: list[dict], argv: list[str], memory: str, load0, load1, plot_name: str) -> str:
    from report import command_line

    head = command_line("ngram_scale.py", ["platform", "cpus", "python", "numpy", "torch"], argv=argv,
                        load=[load0, load1], note="a loaded machine: 2 cores shared with other jobs; "
                        "one build per cell, no repeats")
    import duckdb

    lines = ["## n-gram at scale", "", head, "",
             f"Modified Kneser–Ney build (counting + estimation + the model's tables on disk) against "
             f"corpus size. `memory`: `NGramModel.fit` (numpy, all in RAM); `duckdb` (DuckDB "
             f"{duckdb.__version__}) and `spark` (`local[*]`): `arlm.models.ngram_build` under "
             f"`--memory {memory}`, token windows streamed to Parquet. Peak RSS: the child process "
             "and its descendants (DuckDB runs inside it; Spark's JVM is a descendant), sampled every "
             "0.2 s; peak disk: the build's work folder (Parquet + spill), sampled every second. "
             "Synthetic: Zipf(1.1) over 28 words, 4-grams; Python: the Python-source stream of "
             "`ngram_speed.py`, 5-grams.", "",
             "| corpus | engine | tokens | build | tokens/s | peak RSS | peak disk | n-grams (1..N) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["corpus"], r["tokens"], r["engine"])):
        if "seconds" not in r:
            failed = f"failed: {r['error']}"
            lines.append(f"| {r['corpus']} | {r['engine']} | {r['tokens']:,} | {failed} | | | | |")
            continue
        ng = "/".join(f"{g:,}" for g in r["ngrams"]) if r.get("ngrams") else "–"
        rate = r["tokens"] / r["seconds"]
        rate_text = f"{rate / 1e6:.2f}M" if rate >= 1e6 else f"{rate / 1e3:.0f}k"
        disk = r["peak_disk_gib"]
        disk_text = f"{disk:.2f} GiB" if disk >= 0.1 else f"{disk * 1024:.0f} MiB"
        lines.append(f"| {r['corpus']} | {r['engine']} | {r['tokens']:,} | {r['seconds']:.1f} s | "
                     f"{rate_text} | {r['peak_rss_gib']:.2f} GiB | {disk_text} | {ng} |")
    lines += ["", f"![build time and peak memory against corpus size]({plot_name})", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--synthetic", nargs="*", type=float, default=[1e5, 1e6, 1e7, 1e8])
    p.add_argument("--python", nargs="*", type=float, default=[1e5, 1e6, 1e7, 1.3e7])
    p.add_argument("--engines", nargs="*", default=["memory", "duckdb", "spark", "lmplz"])
    p.add_argument("--memory-max", type=float, default=1e7,
                   help="largest synthetic corpus for the in-memory engine (it grows with the corpus)")
    p.add_argument("--spark-max", type=float, default=1.3e7, help="largest corpus for Spark (slow here)")
    p.add_argument("--memory", default="2GB", help="--memory of the duckdb and spark builds")
    p.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "arlm-ngram-scale"))
    p.add_argument("--quick", action="store_true", help="1e5 and 1e6 tokens only")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--verify", action="store_true",
                   help="instead: each engine's ARPA file against memory's on Shakespeare and Python source")
    p.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    p.add_argument("--results", default=None, help="also write the rows as JSON here")
    p.add_argument("--render", metavar="LOG",
                   help="instead of measuring: the table and plot from the JSON rows a run with the same "
                        "other arguments printed (its log), e.g. the cells of a run that was stopped")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--corpus", help=argparse.SUPPRESS)
    p.add_argument("--engine", help=argparse.SUPPRESS)
    p.add_argument("--tokens", type=float, help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        args.tokens = int(args.tokens)
        child(args)
        return
    from report import table_argv, write_section

    if args.verify:
        load0 = os.getloadavg()
        Path(args.cache).mkdir(parents=True, exist_ok=True)
        rows = verify([e for e in args.engines if e in ("duckdb", "spark")], args.memory, Path(args.cache))
        if not args.no_write:
            write_section(Path(args.out), "## n-gram engines: the same ARPA file",
                          verify_section(rows, table_argv(p), load0, os.getloadavg()))
        return
    if args.quick:
        args.synthetic, args.python = [1e5, 1e6], [1e5, 1e6]
    engines = [e for e in args.engines
               if e != "lmplz" or os.environ.get("ARLM_LMPLZ") or shutil.which("lmplz")]
    cache, scratch = Path(args.cache), Path(args.cache) / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    load0, rows = os.getloadavg(), []
    if args.render:
        rows = [json.loads(line) for line in Path(args.render).read_text().splitlines()
                if line.startswith('{"corpus"')]
        load0 = rows[0].get("load", load0) if rows else load0
        args.synthetic = args.python = []
    plan = [("synthetic", int(n)) for n in args.synthetic] + [("python", int(n)) for n in args.python]
    for corpus, n in plan:
        for engine in engines:
            if engine == "memory" and corpus == "synthetic" and n > args.memory_max:
                continue
            if engine == "spark" and n > args.spark_max:
                continue
            row = measure(corpus, engine, n, args.memory, cache, scratch)
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.results:
        Path(args.results).write_text(json.dumps(rows, indent=1))
    if not args.no_write:
        plot_name = "ngram_scale.png"
        plot(rows, Path(args.out).parent / plot_name, args.memory)
        argv = table_argv(p, drop=("--out", "--no-write", "--render"))
        load1 = rows[-1].get("load", os.getloadavg()) if args.render and rows else os.getloadavg()
        text = section(rows, argv, args.memory, load0, load1, plot_name)
        write_section(Path(args.out), "## n-gram at scale", text)


if __name__ == "__main__":
    main()

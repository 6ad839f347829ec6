"""What every benchmark script shares: the round-robin timer, the section's command line (and the
arguments it shows), and replacing the script's own section of docs/benchmarks.md."""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from arlm.io import atomic_write

HEADER = "# Benchmarks\n\nMeasured by `benchmarks/*.py`.\n"
OUTPUT_ONLY = ("--out", "--no-write")  # the options that say where a table goes, not what it holds


@dataclass
class Runs:
    """What :func:`round_robin` measured of one case."""

    seconds: list[float] = field(default_factory=list)  # each timed call's wall time, in call order
    results: list[object] = field(default_factory=list)  # each timed call's result (with keep_results)
    last: object = None  # the result of the case's last call (a warm-up's if none was timed)

    @property
    def median(self) -> float:
        """The median of :attr:`seconds` (an error if nothing was timed)."""
        return statistics.median(self.seconds)


def round_robin(cases: Mapping[str, Callable[[], object]], repeats: int, *, warmup: int = 1,
                collect_garbage: bool = True, synchronize: Callable[[], None] | None = None,
                keep_results: bool = False) -> dict[str, Runs]:
    """Time every case ``repeats`` times, the cases taking turns, so that all see the same machine load.

    The calls go in rounds, each round calling every case once in the order of ``cases``: first
    ``warmup`` untimed rounds, then ``repeats`` timed ones (a, b, c, a, b, c, …). Before a timed call
    ``gc.collect()`` runs when ``collect_garbage`` (outside the timed span); ``synchronize`` (e.g.
    ``torch.cuda.synchronize``), when given, runs right before and right after every call, warm-ups
    included, so that a timed span holds the device's work too. -> per case (same keys, same order) its
    :class:`Runs`: the wall seconds of each timed call, the last call's result, and every timed call's
    result when ``keep_results``.
    """
    if repeats < 0 or warmup < 0:
        raise ValueError(f"repeats and warmup must be ≥ 0, got {repeats} and {warmup}")
    runs = {name: Runs() for name in cases}
    for _ in range(warmup):
        for name, fn in cases.items():
            if synchronize is not None:
                synchronize()
            runs[name].last = fn()
            if synchronize is not None:
                synchronize()
    for _ in range(repeats):
        for name, fn in cases.items():
            if collect_garbage:
                gc.collect()
            if synchronize is not None:
                synchronize()
            start = time.perf_counter()
            out = fn()
            if synchronize is not None:
                synchronize()
            seconds = time.perf_counter() - start
            run = runs[name]
            run.seconds.append(seconds)
            run.last = out
            if keep_results:
                run.results.append(out)
    return runs


def ratio_interval(numerator: Runs, denominator: Runs, resamples: int = 2000) -> tuple[float, float, float]:
    """The per-round ratio of two cases timed by :func:`round_robin` (neighbouring calls see the same
    load, so it is steadier than the ratio of medians) -> (its median, the 2.5th and 97.5th percentiles
    of the medians of ``resamples`` bootstrap resamples of the rounds, generator seed 0)."""
    import numpy as np

    ratios = np.array(numerator.seconds) / np.array(denominator.seconds)
    rng = np.random.default_rng(0)
    medians = np.median(rng.choice(ratios, size=(resamples, len(ratios))), axis=1)
    return float(np.median(ratios)), float(np.quantile(medians, 0.025)), float(np.quantile(medians, 0.975))


def timed(fn: Callable[[], object], repeats: int, *, warmup: int = 1, collect_garbage: bool = True,
          synchronize: Callable[[], None] | None = None) -> Runs:
    """:func:`round_robin` of the one case ``fn``."""
    return round_robin({"case": fn}, repeats, warmup=warmup, collect_garbage=collect_garbage,
                       synchronize=synchronize)["case"]


def format_load(values: Sequence[float]) -> str:
    """Load averages as the sections write them: '1.23, 1.45, 1.67'."""
    return ", ".join(f"{x:.2f}" for x in values)


def _fact(name: str) -> str:
    """One fact of :func:`command_line`: a known name, a module's version, or the text itself."""
    known: dict[str, Callable[[], str]] = {
        "platform": platform.platform,
        "arch": platform.machine,
        "processor": lambda: platform.processor() or platform.machine(),
        "cpus": lambda: f"{os.cpu_count()} CPUs",
        "python": lambda: f"Python {platform.python_version()}",
    }
    if name in known:
        return known[name]()
    if name in ("numpy", "torch", "transformers"):
        return f"{name} {importlib.import_module(name).__version__}"
    return name


def niceness() -> int:
    """This process's niceness (0 where the OS has none)."""
    return os.nice(0) if hasattr(os, "nice") else 0


def _action(parser: argparse.ArgumentParser, name: str) -> argparse.Action | None:
    """The action that ``parser`` reads the option ``name`` as: its exact name, else the one option it
    abbreviates (when the parser allows abbreviations); None for no option or several."""
    options = {o: a for a in parser._actions for o in a.option_strings}  # argparse keeps its actions there
    if name in options:
        return options[name]
    matches = {id(a): a for o, a in options.items() if o.startswith(name)} if parser.allow_abbrev else {}
    return next(iter(matches.values())) if len(matches) == 1 else None


def table_argv(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None,
               drop: Collection[str] = OUTPUT_ONLY) -> list[str]:
    """The arguments that decide a table: ``argv`` (default: this process's, ``sys.argv[1:]``) less the
    options named in ``drop`` and their values.

    The other arguments stay as the user gave them, in order (an option passed with its default value
    too). A dropped option is found as ``parser`` reads it: '--out X', '--out=X' or an abbreviation
    ('--ou X'); each takes no value (a flag) or one. Everything after '--' is kept.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    dropped = [a for a in parser._actions if set(a.option_strings) & set(drop)]
    kept: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            kept += args[i:]
            break
        name, eq, _ = arg.partition("=")
        action = _action(parser, name) if arg.startswith("--") else None
        if any(action is a for a in dropped):
            i += 1 if eq or action.nargs == 0 else 2  # the option, and its value when separate
            continue
        kept.append(arg)
        i += 1
    return kept


def command_line(script: str, facts: Sequence[str], *, argv: Sequence[str] | None = None,
                 more: Sequence[str] = (), load: Sequence[Sequence[float]] = (), note: str = "") -> str:
    """The line a section starts with: how it was made, when, on what, under which load.

    'Command: `[nice ]python benchmarks/SCRIPT ARGV…` — DATE, FACT, FACT…[; MORE]…[; load average at the
    start L0[, at the end L1]][ (NOTE)].' 'nice ' when this process runs with a niceness above 0.
    ``argv``: the arguments shown (default: this process's, ``sys.argv[1:]``; a script passes
    :func:`table_argv`'s, those that decide its table), quoted with shlex. Each fact is 'platform'
    (``platform.platform()``), 'arch' (the machine type), 'processor' (the processor's name, else the
    machine type), 'cpus' ('N CPUs'), 'python' ('Python X.Y.Z'), 'numpy', 'torch' or 'transformers'
    ('torch X.Y.Z'), or any other text as it is. ``load``: the load averages at the start (and at the
    end), as many values as each holds.
    """
    args = sys.argv[1:] if argv is None else argv
    command = ("nice " if niceness() > 0 else "") + shlex.join(["python", f"benchmarks/{script}", *args])
    parts = [", ".join([datetime.date.today().isoformat(), *map(_fact, facts)]), *more]
    if len(load) > 2:
        raise ValueError(f"load holds the start's and the end's load averages, not {len(load)} sets")
    if load:
        spans = zip(("start", "end"), load, strict=False)  # (when, values) for one or both
        parts.append("load average " + ", ".join(f"at the {when} {format_load(v)}" for when, v in spans))
    return f"Command: `{command}` — " + "; ".join(parts) + (f" ({note})" if note else "") + "."


def write_section(path: Path, heading: str, section: str) -> None:
    """Replace the section that starts with ``heading`` (a '## …' line) by ``section``, atomically.

    Other sections stay as they are; a missing section is appended, a missing file is created.
    """
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    section = section.rstrip("\n") + "\n"
    start = text.find(heading + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[end:] if end >= 0 else "")
    with atomic_write(path) as f:
        f.write(text)


def publish(section: str, out: Path | None, heading: str) -> None:
    """Print a benchmark's section and, with ``out``, write it into that Markdown file under ``heading``."""
    print(section)
    if out is not None:
        write_section(out, heading, section)
        print(f"updated {out} ({heading})", file=sys.stderr)


def shapes_bench_args(parser: argparse.ArgumentParser, repeats: int) -> argparse.Namespace:
    """``--new``, ``--repeats`` (default ``repeats``) and ``--out`` of a decoding benchmark over model
    shapes, parsed; a bad value is one line on stderr and exit code 2."""
    parser.add_argument("--new", type=int, default=128, help="new tokens per decode")
    parser.add_argument("--repeats", type=int, default=repeats, help="timed rounds per shape")
    parser.add_argument("--out", type=Path, default=None, help="write the section into this Markdown file")
    args = parser.parse_args()
    if args.new < 1 or args.repeats < 2:
        print(f"error: --new must be ≥ 1 and --repeats ≥ 2, got {args.new} and {args.repeats}",
              file=sys.stderr)
        sys.exit(2)
    return args


def random_transformer(layers: int, width: int, heads: int, vocab: int, block: int):
    """A random-weight TransformerLM (seed 0) in eval mode, and a random prompt (1, PROMPT_LEN) of ids ≥ 3."""
    import torch

    from arlm.models.transformer import TransformerConfig, TransformerLM

    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(vocab_size=vocab, block_size=block, n_layer=layers, n_head=heads,
                                            d_model=width)).eval()
    prompt = torch.randint(3, vocab, (1, PROMPT_LEN), generator=torch.Generator().manual_seed(0))  # (1, Tp)
    return model, prompt


PROMPT_LEN = 121  # the decoding benchmarks' random prompt


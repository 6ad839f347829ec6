"""Time and memory against sequence length L, measured and fitted (F23): the chapter's complexity table.

**The chapter's claim** (its table of training and generation costs for a sequence x_1..x_L):

    ==========  ==================  ============================================
                RNN                 Transformer
    training    O(L), sequential    O(L²), parallel
    generation  O(L)                O(L²) with a KV cache, O(L³) without one
    ==========  ==================  ============================================

Without a cache a Transformer generates token t by running the whole prefix again, O(t²) in attention,
and Σ_{t≤L} t² = O(L³); the KV cache keeps every position's keys and values, so step t attends from
one query to t keys, O(t), and Σ_t t = O(L²). The cache costs memory that grows with L; an RNN's state
does not.

**What is measured.** For each L on a geometric range, alternating the systems within every repeat:
one training step (forward + backward of ``train_rows`` rows of L tokens) of an LSTM and of
Transformers of width d (a sweep over d); one forward pass over all L positions at once (batch 1, no
gradient) and generating L tokens one at a time (greedy, batch 1) with the LSTM, the Transformer with
its KV cache and the Transformer without one (each step re-feeds the whole prefix). Each time is the
wall time of one run at the run's thread count, on the run's device; a series keeps every repeat
and its median. The load average at the start and the end is recorded and every speed figure of the
report goes through :func:`~arlm.experiments.protocol.mark_speed`.

**Memory** is measured after a real generation of L tokens: on a CPU, the bytes of the distinct
storages the returned state holds (a KV cache and its views, or the LSTM's h and c); on CUDA, the
allocator's ``memory_allocated`` after the generation (the state alive) minus before, and the peak.
arlm's cache is preallocated to the model's context window, so it is measured twice: with a model
whose window is L (the cache a context of L needs) and with the timing model, whose window is the
longest L (what generating L tokens from it holds).

**The fits** (:mod:`arlm.experiments.complexity_fit`): c₀ + c₁·L + c₂·L² for training and cached
generation, c₀ + c₁·L + c₂·L² + c₃·L³ for uncached generation (c₀: the fixed cost of a call), on the
relative error, with 95 % bootstrap intervals over the repeats; the crossover L* = c₁/c₂ (c₂/c₃ for
the cubic) where the chapter's term becomes the larger; and, for reference, the log-log slope b of
T ≈ a·L^b. The times are the measurement; nothing else in the run depends on the clock. The report
is written by :mod:`arlm.experiments.complexity_report`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from arlm.experiments import ExperimentConfig
from arlm.experiments.complexity_fit import CUBIC, QUADRATIC, bootstrap_fit, fit_power_law
from arlm.experiments.complexity_report import render
from arlm.experiments.protocol import load_average, load_record
from arlm.progress import progress

NAME = "complexity"
CHECKPOINT_FAMILIES: tuple[str, ...] = ()  # builds its own models (timing does not need trained weights)
SUMMARY = ("Measured time and KV-cache memory against length L (training; all positions at once against "
           "one at a time; generation with an LSTM, a Transformer with and without KV cache), fitted as "
           "c₁L + c₂L² (+ c₃L³) with the crossover L* and its interval, over a sweep of widths d.")

VOCAB = 64  # a character-sized vocabulary (the softmax is not what is measured)


@dataclass(frozen=True)
class ComplexityPlan:
    """The lengths, sizes and repeats of a run."""

    lengths: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048)
    nocache_max: int = 2048  # the O(L³) series reaches the longest L too (about 30 s per run at 2,048)
    repeats: int = 7
    train_rows: int = 8  # rows per training batch
    d_model: int = 64  # the width of every series but the sweep's others
    d_sweep: tuple[int, ...] = (32, 64, 128)  # training-step widths, for L* against d
    n_layer: int = 2
    n_head: int = 4
    draws: int = 2000  # bootstrap draws per fit


DEFAULT = ComplexityPlan()
QUICK = ComplexityPlan(lengths=(8, 16, 32, 64, 128), nocache_max=128, repeats=3, train_rows=2, d_model=16,
                       d_sweep=(8, 16), n_layer=1, n_head=2, draws=200)

# (series, kind, chapter's exponent, label, fitted powers)
SERIES = [
    ("train_rnn", "train", 1, "training step, LSTM", QUADRATIC),
    ("train_transformer", "train", 2, "training step, Transformer", QUADRATIC),
    ("score_rnn", "score", 1, "all L positions at once (one forward), LSTM", QUADRATIC),
    ("score_transformer", "score", 2, "all L positions at once (one forward), Transformer", QUADRATIC),
    ("generate_rnn", "generate", 1, "generating L tokens, LSTM", QUADRATIC),
    ("generate_kv_cache", "generate", 2, "generating L tokens, Transformer + KV cache", QUADRATIC),
    ("generate_no_cache", "generate", 3, "generating L tokens, Transformer without cache", CUBIC),
]


def sweep_name(d: int, plan: ComplexityPlan) -> str:
    """The series of the training step at width ``d`` (the main Transformer's at ``plan.d_model``)."""
    return "train_transformer" if d == plan.d_model else f"train_transformer_d{d}"


def run(config: ExperimentConfig) -> dict:
    """Measure every series of the plan of ``config`` (QUICK with ``--quick``), fit them, measure memory."""
    import torch

    plan = QUICK if config.quick else DEFAULT
    device = torch.device(config.device)
    load_at_start = load_average()
    rnn, transformers = _models(plan, config.seed, device)
    transformer = transformers[plan.d_model]
    series_info = {name: (kind, exp, label, powers) for name, kind, exp, label, powers in SERIES}
    for d in plan.d_sweep:
        if d != plan.d_model:
            series_info[sweep_name(d, plan)] = ("sweep", 2, f"training step, Transformer d = {d}", QUADRATIC)
    measured: dict[str, dict] = {name: {"lengths": [], "seconds": [], "repeats": []} for name in series_info}
    with progress(config.show_progress) as bar:
        task = bar.add_task("timing", total=len(plan.lengths))
        for L in plan.lengths:
            jobs = {"train_rnn": _train_step(rnn, plan.train_rows, L, device),
                    "score_rnn": _score(rnn, L, device), "score_transformer": _score(transformer, L, device),
                    "generate_rnn": _generate_cached(rnn, L, device),
                    "generate_kv_cache": _generate_cached(transformer, L, device)}
            for d, model in transformers.items():
                jobs[sweep_name(d, plan)] = _train_step(model, plan.train_rows, L, device)
            if plan.nocache_max >= L:
                jobs["generate_no_cache"] = _generate_no_cache(transformer, L, device)
            bar.update(task, description=f"timing L={L}")
            for name, times in _time_alternating(jobs, plan.repeats, device).items():
                row = measured[name]
                row["lengths"].append(L)
                row["seconds"].append(statistics.median(times))
                row["repeats"].append(times)
            bar.advance(task)
    series = {}
    for i, (name, (kind, exp, label, powers)) in enumerate(series_info.items()):
        row = measured[name]
        series[name] = {**row, "kind": kind, "chapter_exponent": exp, "label": label,
                        "fit": bootstrap_fit(row["lengths"], row["repeats"], powers, plan.draws,
                                             config.seed * 1000 + i),
                        "power_law": fit_power_law(row["lengths"], row["seconds"])}
    memory = _memory(plan, config.seed, rnn, transformer, device)
    return {
        "plan": {**asdict(plan), "lengths": list(plan.lengths), "d_sweep": list(plan.d_sweep)},
        "models": {"rnn": asdict(rnn.config), "transformer": asdict(transformer.config),
                   "rnn_params": rnn.num_parameters(), "transformer_params": transformer.num_parameters()},
        "device": _device_name(device), "threads": torch.get_num_threads(),
        "clock": "wall time" + (" (CUDA synchronised)" if device.type == "cuda" else ""),
        "series": series, "memory": memory,
        "load": load_record(load_at_start, load_average()),  # for the speed figures (mark_speed)
    }


def _device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return "cpu"


# ---------------------------------------------------------------------------------------------
# The models and what is timed
# ---------------------------------------------------------------------------------------------


def _transformer(plan: ComplexityPlan, d: int, block_size: int, device):
    from arlm.models.transformer import TransformerConfig, TransformerLM

    return TransformerLM(TransformerConfig(vocab_size=VOCAB, block_size=block_size, n_layer=plan.n_layer,
                                           n_head=plan.n_head, d_model=d)).to(device)


def _models(plan: ComplexityPlan, seed: int, device):
    """The LSTM (d_hidden = d_model) and a Transformer per width of the sweep (and the main one)."""
    import torch

    from arlm.models.rnn import RNNLM, RNNConfig

    torch.manual_seed(seed)
    rnn = RNNLM(RNNConfig(vocab_size=VOCAB, cell="lstm", d_embed=plan.d_model, d_hidden=plan.d_model))
    widths = sorted({plan.d_model, *plan.d_sweep})
    transformers = {d: _transformer(plan, d, max(plan.lengths) + 1, device) for d in widths}
    return rnn.to(device), transformers


def _tokens(rows: int, L: int, device):
    import torch

    g = torch.Generator().manual_seed(L)
    return torch.randint(4, VOCAB, (rows, L), generator=g).to(device)  # (rows, L), no special ids


def _train_step(model, rows: int, L: int, device) -> Callable[[], None]:
    """Forward + backward of a batch (rows, L): the work of one teacher-forced training step."""
    import torch.nn.functional as F

    tokens = _tokens(rows, L + 1, device)

    def job() -> None:
        model.train()
        logits, _ = model(tokens[:, :-1], None)  # (rows, L, V)
        loss = F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        loss.backward()
        model.zero_grad(set_to_none=True)

    return job


def _score(model, L: int, device) -> Callable[[], None]:
    """One forward pass over all L positions at once (batch 1, no gradient): what generation does one
    position at a time."""
    import torch

    tokens = _tokens(1, L, device)

    def job() -> None:
        model.eval()
        with torch.inference_mode():
            model(tokens, None)  # (1, L, V)

    return job


def _generate_cached(model, L: int, device) -> Callable[[], object]:
    """Greedy generation of L tokens with the model's incremental state (an RNN's h, a KV cache);
    returns the state (whose memory :func:`_memory` measures)."""
    import torch

    def job():
        model.eval()
        with torch.inference_mode():
            state = model.start(1)
            token = torch.ones(1, 1, dtype=torch.long, device=device)  # [SOS]
            for _ in range(L):
                logp, state = model.step(token, state)  # (1, V)
                token = logp.argmax(-1, keepdim=True)  # (1, 1)
        return state

    return job


def _generate_no_cache(model, L: int, device) -> Callable[[], None]:
    """Greedy generation of L tokens where every step re-feeds the whole prefix (no cache)."""
    import torch

    def job() -> None:
        model.eval()
        with torch.inference_mode():
            seq = torch.ones(1, 1, dtype=torch.long, device=device)  # [SOS]
            for _ in range(L):
                logits, _ = model(seq, None)  # (1, t, V): the whole prefix again
                nxt = logits[:, -1].argmax(-1, keepdim=True)  # (1, 1)
                seq = torch.cat([seq, nxt], dim=1)[:, -model.config.block_size:]

    return job


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_alternating(jobs: dict[str, Callable], repeats: int, device) -> dict[str, list[float]]:
    """Wall seconds of ``repeats`` runs of every job after one warm-up run each, the systems alternated
    within each repeat (forwards, then backwards), so slow drift of the machine hits all of them."""
    for job in jobs.values():
        job()
        _sync(device)
    times: dict[str, list[float]] = {name: [] for name in jobs}
    names = list(jobs)
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            started = time.perf_counter()
            jobs[name]()
            _sync(device)
            times[name].append(time.perf_counter() - started)
    return times


# ---------------------------------------------------------------------------------------------
# Memory, measured after a real generation
# ---------------------------------------------------------------------------------------------


def held_bytes(state) -> int:
    """Bytes of the distinct storages reachable from ``state`` (its tensors, and those in its lists,
    tuples, dicts and attributes): what the object keeps alive, views counted once."""
    import torch

    storages: dict[tuple[str, int], int] = {}

    def walk(x) -> None:
        if isinstance(x, torch.Tensor):
            s = x.untyped_storage()
            storages[(str(s.device), s.data_ptr())] = s.nbytes()
        elif isinstance(x, list | tuple):
            for y in x:
                walk(y)
        elif isinstance(x, dict):
            for y in x.values():
                walk(y)
        elif hasattr(x, "__dict__"):
            walk(vars(x))

    walk(state)
    return sum(storages.values())


def _measure_generation(job: Callable[[], object], device) -> dict:
    """Run ``job`` (a generation that returns its state) and measure the memory that state holds:
    ``held`` (CPU: :func:`held_bytes`; CUDA: memory_allocated after − before, the state alive) and, on
    CUDA, ``peak`` (max_memory_allocated − before: the state and the step's activations)."""
    import torch

    if device.type != "cuda":
        return {"held": held_bytes(job()), "peak": None}
    _sync(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    state = job()
    _sync(device)
    out = {"held": torch.cuda.memory_allocated(device) - before,
           "peak": torch.cuda.max_memory_allocated(device) - before}
    del state
    return out


def _memory(plan: ComplexityPlan, seed: int, rnn, transformer, device) -> dict:
    """Measured bytes after generating L tokens: KV cache of a model whose window is L, of the timing
    model (window max L, preallocated), and the LSTM's state; with the formula 2·n_layer·d·L·4 bytes."""
    import torch

    lengths = list(plan.lengths)
    method = ("CUDA allocator: memory_allocated after the generation minus before (the state alive)"
              if device.type == "cuda" else
              "bytes of the distinct storages the returned state holds after the generation")
    out: dict = {"lengths": lengths, "method": method, "kv_window_L": [], "kv_window_L_peak": [],
                 "kv_window_max": [], "rnn_state": [],
                 "formula": [2 * plan.n_layer * plan.d_model * L * 4 for L in lengths]}
    torch.manual_seed(seed)
    for L in lengths:
        sized = _transformer(plan, plan.d_model, L, device)  # its window is L: the cache a context of L needs
        window_L = _measure_generation(_generate_cached(sized, L, device), device)
        del sized
        out["kv_window_L"].append(window_L["held"])
        out["kv_window_L_peak"].append(window_L["peak"])
        window_max = _measure_generation(_generate_cached(transformer, L, device), device)
        out["kv_window_max"].append(window_max["held"])
        out["rnn_state"].append(_measure_generation(_generate_cached(rnn, L, device), device)["held"])
    out["kv_fit"] = fit_power_law(lengths, out["kv_window_L"])
    return out


__all__ = ["DEFAULT", "NAME", "QUICK", "SERIES", "SUMMARY", "ComplexityPlan", "held_bytes", "render", "run",
           "sweep_name"]

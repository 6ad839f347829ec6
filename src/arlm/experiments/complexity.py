"""Time against sequence length L, measured and fitted (F23): the chapter's complexity table, checked.

**The chapter's claim** (its table of training and generation costs for a sequence x_1..x_L):

    ==========  ==================  ============================================
                RNN                 Transformer
    training    O(L), sequential    O(L²), parallel
    generation  O(L)                O(L²) with a KV cache, O(L³) without one
    ==========  ==================  ============================================

Without a cache a Transformer generates token t by running the whole prefix of t tokens again, which
costs O(t²) in attention, and Σ_{t≤L} t² = O(L³); the KV cache keeps every position's keys and values,
so step t only attends from one new query to t keys, O(t), and Σ_t t = O(L²).

**What is measured.** For each L on a geometric range: one training step (forward + backward of a
batch of rows of L tokens) of an LSTM and of a Transformer; generating L tokens greedily, one at a time,
with the LSTM (its state carried), the Transformer with its KV cache, and the Transformer without a
cache (each step re-feeds the whole prefix). Each time is the median of ``repeats`` runs after one
warm-up run; on a CPU it is the process's CPU time, which other work on a shared machine does not
inflate (with one torch thread it is the work's wall time on an idle machine), on a GPU wall time.
The KV cache's bytes are those of tensors actually allocated for L positions.

**The fit.** T ≈ a · L^b by least squares on log T = log a + b log L, with a 95 % confidence interval
for b from the residuals (Student's t with n - 2 degrees of freedom), and the local slope over the
three longest lengths, which is what the asymptotic term decides. A cost c₁ L + c₂ L² only shows the
exponent 2 once c₂ L ≫ c₁: for a Transformer of width d the per-token projections cost ≈ 24 d² FLOPs
per layer against ≈ 4 L d for attention, so the L² term wins only past L ≈ 6 d, and a fit over a range
that straddles that point measures an exponent in between. The report states, for every fit, where
it differs from the chapter and why.

The numbers are wall-clock times by nature: they are reported, and nothing else depends on them.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from arlm.experiments import ExperimentConfig
from arlm.progress import progress

NAME = "complexity"
CHECKPOINT_FAMILIES: tuple[str, ...] = ()  # builds its own models (timing does not need trained weights)
SUMMARY = ("Measured time against length L (training step; generation with an RNN, a Transformer with and "
           "without KV cache) and KV-cache bytes, fitted T ≈ a·L^b on log-log against the chapter's "
           "O(L), O(L²), O(L³).")

VOCAB = 64  # a character-sized vocabulary (the softmax is not what is measured)


@dataclass(frozen=True)
class ComplexityPlan:
    """The lengths, sizes and repeats of a run."""

    lengths: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)
    nocache_max: int = 1024  # the O(L³) series stops here (2048 would take minutes by itself)
    repeats: int = 3
    train_rows: int = 8  # rows per training batch
    d_model: int = 64
    n_layer: int = 2
    n_head: int = 4
    gpt2_shape: tuple[int, int] = (12, 768)  # (layers, width) of GPT-2 small, for the KV-cache bytes


DEFAULT = ComplexityPlan()
QUICK = ComplexityPlan(lengths=(16, 32, 64, 128), nocache_max=64, repeats=2, train_rows=2, d_model=32)

# (series, kind, chapter's exponent, label)
SERIES = [
    ("train_rnn", "train", 1, "training step, LSTM"),
    ("train_transformer", "train", 2, "training step, Transformer"),
    ("generate_rnn", "generate", 1, "generating L tokens, LSTM"),
    ("generate_kv_cache", "generate", 2, "generating L tokens, Transformer + KV cache"),
    ("generate_no_cache", "generate", 3, "generating L tokens, Transformer without cache"),
]


def run(config: ExperimentConfig) -> dict:
    """Measure every series of the plan of ``config`` (QUICK with ``--quick``)."""
    import torch

    plan = QUICK if config.quick else DEFAULT
    device = torch.device(config.device)
    rnn, transformer = _models(plan, config.seed, device)
    measured: dict[str, dict] = {}
    jobs: list[tuple[str, int, Callable[[], None]]] = []
    for L in plan.lengths:
        jobs += [("train_rnn", L, _train_step(rnn, plan.train_rows, L, device)),
                 ("train_transformer", L, _train_step(transformer, plan.train_rows, L, device)),
                 ("generate_rnn", L, _generate_cached(rnn, L, device)),
                 ("generate_kv_cache", L, _generate_cached(transformer, L, device))]
        if plan.nocache_max >= L:
            jobs.append(("generate_no_cache", L, _generate_no_cache(transformer, L, device)))
    with progress(config.show_progress) as bar:
        task = bar.add_task("timing", total=len(jobs))
        for series, L, job in jobs:
            bar.update(task, description=f"{series}, L={L}")
            times = _time(job, plan.repeats, device)
            row = measured.setdefault(series, {"lengths": [], "seconds": [], "repeats": []})
            row["lengths"].append(L)
            row["seconds"].append(statistics.median(times))
            row["repeats"].append(times)
            bar.advance(task)
    fits = {name: fit_power_law(measured[name]["lengths"], measured[name]["seconds"]) for name in measured}
    return {
        "plan": {**asdict(plan), "lengths": list(plan.lengths), "gpt2_shape": list(plan.gpt2_shape)},
        "models": {"rnn": asdict(rnn.config), "transformer": asdict(transformer.config),
                   "rnn_params": rnn.num_parameters(), "transformer_params": transformer.num_parameters()},
        "series": {name: {**measured[name], "fit": fits[name], "chapter_exponent": exp, "label": label,
                          "kind": kind}
                   for name, kind, exp, label in SERIES if name in measured},
        "memory": _memory(plan, rnn, transformer),
        "clock": "wall time" if device.type == "cuda" else "CPU time of the process",
    }


# ---------------------------------------------------------------------------------------------
# The models and what is timed
# ---------------------------------------------------------------------------------------------


def _models(plan: ComplexityPlan, seed: int, device):
    import torch

    from arlm.models.rnn import RNNLM, RNNConfig
    from arlm.models.transformer import TransformerConfig, TransformerLM

    torch.manual_seed(seed)
    rnn = RNNLM(RNNConfig(vocab_size=VOCAB, cell="lstm", d_embed=plan.d_model, d_hidden=plan.d_model))
    transformer = TransformerLM(TransformerConfig(
        vocab_size=VOCAB, block_size=max(plan.lengths) + 1, n_layer=plan.n_layer, n_head=plan.n_head,
        d_model=plan.d_model))
    return rnn.to(device), transformer.to(device)


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


def _generate_cached(model, L: int, device) -> Callable[[], None]:
    """Greedy generation of L tokens with the model's incremental state (an RNN's h, a KV cache)."""
    import torch

    def job() -> None:
        model.eval()
        with torch.inference_mode():
            state = model.start(1)
            token = torch.ones(1, 1, dtype=torch.long, device=device)  # [SOS]
            for _ in range(L):
                logp, state = model.step(token, state)  # (1, V)
                token = logp.argmax(-1, keepdim=True)  # (1, 1)

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


def _time(job: Callable[[], None], repeats: int, device) -> list[float]:
    """Seconds of ``repeats`` runs of ``job`` after one warm-up run: the process's CPU time on a CPU
    (what the work costs, whatever else runs on the machine), wall time on a GPU."""
    import torch

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    clock = time.perf_counter if device.type == "cuda" else time.process_time
    job()
    sync()
    times = []
    for _ in range(repeats):
        started = clock()
        job()
        sync()
        times.append(clock() - started)
    return times


def _memory(plan: ComplexityPlan, rnn, transformer) -> dict:
    """Bytes of an allocated KV cache for L positions (this model, and GPT-2 small's shape, fp32) and of
    the LSTM's state (which does not grow with L)."""
    import torch

    from arlm.models.transformer import KVCache, TransformerConfig

    lengths = list(plan.lengths)
    layers, width = plan.gpt2_shape
    ours, gpt2 = [], []
    for L in lengths:
        for cfg, out in ((transformer.config, ours),
                         (TransformerConfig(vocab_size=VOCAB, block_size=L, n_layer=layers, n_head=12,
                                            d_model=width), gpt2)):
            cfg = TransformerConfig(**{**asdict(cfg), "block_size": L})
            cache = KVCache.allocate(cfg, 1, torch.float32, torch.device("cpu"))
            out.append(cache.k.nbytes + cache.v.nbytes)
            del cache
    state = rnn.start(1)
    rnn_bytes = sum(t.nbytes for t in state.tensors().values())
    return {"lengths": lengths, "kv_cache_bytes": ours, "kv_cache_fit": fit_power_law(lengths, ours),
            "gpt2_kv_cache_bytes": gpt2, "gpt2_shape": [layers, width], "rnn_state_bytes": rnn_bytes}


# ---------------------------------------------------------------------------------------------
# The fit
# ---------------------------------------------------------------------------------------------

def _t975(dof: int) -> float:
    """Student's t 97.5 % quantile (the protocol's: scipy's, or its table); the table here rounded 11–14
    degrees of freedom up to 15's smaller value, which narrowed those intervals."""
    from arlm.experiments.protocol import t_975

    return t_975(dof)


def fit_power_law(lengths: list[int], values: list[float]) -> dict:
    """Least squares of log T = log a + b log L: ``b``, ``a``, a 95 % interval for b (``ci``; None with
    two points), ``local_b`` (the slope over the three longest lengths) and ``r2``.

    With x = log L, y = log T, n points: b = Σ(x - x̄)(y - ȳ) / Σ(x - x̄)², s² = Σ residual² / (n - 2),
    se(b) = s / √Σ(x - x̄)², and the interval is b ± t_{0.975, n-2} · se(b).
    """
    x = np.log(np.asarray(lengths, dtype=np.float64))
    y = np.log(np.asarray(values, dtype=np.float64))
    n = len(x)
    b, log_a = np.polyfit(x, y, 1)
    out: dict = {"b": float(b), "a": float(math.exp(log_a)), "n": n, "ci": None, "r2": None,
                 "local_b": None}
    residuals = y - (log_a + b * x)
    sxx = float(((x - x.mean()) ** 2).sum())
    syy = float(((y - y.mean()) ** 2).sum())
    if n > 2:
        se = math.sqrt(float((residuals ** 2).sum()) / (n - 2) / sxx)
        half = _t975(n - 2) * se
        out["ci"] = [float(b - half), float(b + half)]
    if syy > 0:
        out["r2"] = 1.0 - float((residuals ** 2).sum()) / syy
    if n >= 3:
        out["local_b"] = float(np.polyfit(x[-3:], y[-3:], 1)[0])
    return out


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------


def _b(fit: dict) -> str:
    ci = fit["ci"]
    return f"{fit['b']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def _against_the_lstm(results: dict) -> str:
    """What the timings say of the Transformer's step next to the LSTM's at the same lengths (its
    positions are computed at once, the LSTM's one after another): faster, slower or mixed, with the
    range of the ratio, from the numbers."""
    series = results["series"]
    lstm = dict(zip(series["train_rnn"]["lengths"], series["train_rnn"]["seconds"], strict=True))
    ratios = [t / lstm[n] for n, t in zip(series["train_transformer"]["lengths"],
                                          series["train_transformer"]["seconds"], strict=True)
              if lstm.get(n)]
    if not ratios:
        return "The fused attention kernel never stores the L×L matrix."
    lo, hi = min(ratios), max(ratios)
    if lo > 1:
        verdict = (f"computing all L positions at once does not make it faster here: at every length its "
                   f"step takes {lo:.1f}–{hi:.1f}× the LSTM's (it does more work per token)")
    elif hi < 1:
        verdict = f"its step takes {lo:.2f}–{hi:.2f}× the LSTM's at every length: all L positions at once pay"
    else:
        verdict = f"its step takes {lo:.2f}–{hi:.2f}× the LSTM's: faster at some lengths, slower at others"
    return f"Next to the LSTM, {verdict}. The fused attention kernel never stores the L×L matrix."


def _explain(name: str, fit: dict, chapter: int, results: dict) -> str:
    """Why the fitted exponent of series ``name`` agrees with the chapter's or differs from it: the
    measured verdict, then the mechanism (which terms a step costs, and where each one dominates)."""
    d = results["models"]["transformer"]["d_model"]
    top = max(results["series"][name]["lengths"])
    b, ci, local = fit["b"], fit["ci"], fit["local_b"]
    local_text = f", local slope over the three longest lengths {local:.2f}" if local is not None else ""
    head = f"Fitted b = {_b(fit)}{local_text}; the chapter says {chapter}. "
    if ci is None or ci[1] - ci[0] > 1.0:
        verdict = ("The interval is too wide to decide (few lengths, or timings disturbed by other work on "
                   "the machine); a full run on a quiet machine narrows it. ")
    elif ci[0] <= chapter <= ci[1]:
        verdict = "The interval holds the chapter's exponent: the measurement agrees. "
    elif b < chapter:
        verdict = ("The measured exponent is below the chapter's: at these lengths a lower-order term "
                   "still costs more than the asymptotic one. ")
    else:
        verdict = ("The measured exponent is above the chapter's: at the long end the working set outgrows "
                   "the CPU caches, so memory traffic grows faster than the arithmetic. ")
    if name == "train_rnn":
        why = ("An LSTM does a fixed amount of work per token, one position after another, so its time "
               "grows as L once the fixed cost of a call (Python, dispatch, a small batch's loss) is small "
               "next to it; that fixed cost pulls the short end below slope 1.")
    elif name == "train_transformer":
        why = (f"A step costs c₁·L (projections and MLP, ≈ 24·d² FLOPs per token per layer) plus c₂·L² "
               f"(attention, ≈ 4·L·d per token): with d = {d} the quadratic term dominates only past "
               f"L ≈ 6·d = {6 * d}, so over a range up to {top} one expects an exponent between 1 and 2 that "
               "rises towards 2 at the long end (the local slope). " + _against_the_lstm(results))
    elif name == "generate_rnn":
        why = ("Each new token costs one LSTM step whatever came before (the state has a fixed size), so "
               "L tokens cost L steps.")
    elif name == "generate_kv_cache":
        why = (f"Step t costs a constant (Python and dispatch per layer, ≈ 24·d² FLOPs of projections) plus "
               f"≈ 4·t·d to attend to t cached keys: c₁·L + c₂·L² in all. With d = {d} the per-step "
               "constant is larger than 4·t·d until t reaches the thousands, so at these lengths generation "
               "with a cache is close to linear, and the chapter's L² is the limit for very long contexts "
               "(or when the per-step overhead is gone, as with CUDA graphs). The cache removes the "
               "recomputation; what is left is nearly the RNN's O(L).")
    elif name == "generate_no_cache":
        why = (f"Step t re-runs the whole prefix: ≈ 24·t·d² FLOPs of projections plus ≈ 4·t²·d of attention, "
               f"so L steps cost c₁·L² + c₂·L³. The cubic term dominates only past L ≈ 9·d = {9 * d} (this "
               f"series stops at {top} to keep the run short), so one expects an exponent between 2 and 3; "
               "the per-step overhead pulls the short end lower still.")
    else:
        why = ""
    return head + verdict + why


def render(results: dict, out_dir: Path) -> str:
    """report.md's body and the plots, from ``results`` only."""
    plan, models = results["plan"], results["models"]
    tr, rnn = models["transformer"], models["rnn"]
    lines = [
        "## The claim",
        "",
        "The chapter's table: training costs O(L) for an RNN (sequential) and O(L²) for a Transformer "
        "(parallel); generating L tokens costs O(L) for an RNN, O(L²) for a Transformer with a KV cache "
        "and O(L³) without one (each step re-runs the prefix: Σ t² = O(L³)).",
        "",
        "## What was measured",
        "",
        f"An LSTM (d_embed = d_hidden = {rnn['d_hidden']}, {models['rnn_params']:,} parameters) and a "
        f"Transformer ({tr['n_layer']} layers × {tr['n_head']} heads × d = {tr['d_model']}, "
        f"{models['transformer_params']:,} parameters), random weights (time does not depend on them), "
        f"vocabulary {VOCAB}. Training: forward + backward of {plan['train_rows']} rows of L tokens. "
        "Generation: L greedy steps from [SOS], batch 1. Each time is the median of "
        f"{plan['repeats']} runs after a warm-up run ({results.get('clock', 'CPU time of the process')}).",
        "",
        "| series | chapter | fitted b [95 % CI] | local b (3 longest) | R² | L range |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for series in results["series"].values():
        fit = series["fit"]
        local = "-" if fit["local_b"] is None else f"{fit['local_b']:.2f}"
        r2 = "-" if fit["r2"] is None else f"{fit['r2']:.3f}"
        lines.append(f"| {series['label']} | O(L^{series['chapter_exponent']}) | {_b(fit)} | {local} | "
                     f"{r2} | {series['lengths'][0]}…{series['lengths'][-1]} |")
    lines += ["", "![time against L, log-log](complexity.png)", "", "### Times (seconds, medians)", ""]
    lengths = sorted({L for s in results["series"].values() for L in s["lengths"]})
    lines += ["| series | " + " | ".join(f"L={L}" for L in lengths) + " |",
              "|---|" + "---:|" * len(lengths)]
    for series in results["series"].values():
        cells = dict(zip(series["lengths"], series["seconds"], strict=True))
        lines.append(f"| {series['label']} | "
                     + " | ".join(f"{cells[L]:.4g}" if L in cells else "-" for L in lengths) + " |")
    lines += ["", "## Where the measurement differs from the chapter, and why", ""]
    for name, series in results["series"].items():
        lines += [f"**{series['label']}.** "
                  + _explain(name, series["fit"], series["chapter_exponent"], results), ""]
    mem = results["memory"]
    layers, width = mem["gpt2_shape"]
    per_token = mem["gpt2_kv_cache_bytes"][-1] / mem["lengths"][-1]
    lines += [
        "## Memory: the KV cache grows with L, an RNN's state does not",
        "",
        "| L | " + " | ".join(str(L) for L in mem["lengths"]) + " |",
        "|---|" + "---:|" * len(mem["lengths"]),
        "| KV cache, this Transformer (fp32) | " + " | ".join(map(_bytes, mem["kv_cache_bytes"])) + " |",
        f"| KV cache, GPT-2 small shape ({layers} × {width}, fp32) | "
        + " | ".join(_bytes(b) for b in mem["gpt2_kv_cache_bytes"]) + " |",
        "| LSTM state (h, c) | " + " | ".join(_bytes(mem["rnn_state_bytes"]) for _ in mem["lengths"]) + " |",
        "",
        f"The cache holds K and V for every layer and position: 2 · n_layer · d · L numbers, so its bytes "
        f"grow exactly linearly (fitted b = {mem['kv_cache_fit']['b']:.3f}); at GPT-2 small's shape that is "
        f"{_bytes(per_token)} per token. The LSTM carries {_bytes(mem['rnn_state_bytes'])} whatever L: the "
        "price of the Transformer's direct access to every earlier position is memory that grows with "
        "the context.",
        "",
        "![KV-cache bytes against L](kv_cache.png)",
        "",
    ]
    _plot_times(results, out_dir / "complexity.png")
    _plot_memory(results, out_dir / "kv_cache.png")
    return "\n".join(lines)


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


COLORS = {"train_rnn": "tab:orange", "train_transformer": "tab:blue", "generate_rnn": "tab:orange",
          "generate_kv_cache": "tab:blue", "generate_no_cache": "tab:red"}


def _length_ticks(ax, lengths: list[int]) -> None:
    """Label the log x-axis at the measured lengths (64, 128, …) instead of powers of ten."""
    from matplotlib.ticker import NullLocator

    ax.set_xticks(lengths, [str(L) for L in lengths])
    ax.xaxis.set_minor_locator(NullLocator())


def _plot_times(results: dict, path: Path) -> None:
    from arlm.experiments.plots import new_figure, save_png

    fig = new_figure(9.0, 4.0)
    axes = dict(zip(("train", "generate"), fig.subplots(1, 2), strict=True))
    for name, series in results["series"].items():
        ax = axes[series["kind"]]
        fit = series["fit"]
        ax.loglog(series["lengths"], series["seconds"], marker="o", ms=3, color=COLORS.get(name),
                  label=f"{series['label'].split(', ')[-1]}: b = {fit['b']:.2f}")
    for kind, ax in axes.items():
        rows = [s for s in results["series"].values() if s["kind"] == kind]
        L0 = min(s["lengths"][0] for s in rows)
        L1 = max(s["lengths"][-1] for s in rows)
        T0 = float(np.median([s["seconds"][0] for s in rows]))
        xs = np.array([L0, L1], dtype=float)
        for slope, style in ((1, ":"), (2, "--"), (3, "-.")):
            ax.loglog(xs, T0 * (xs / L0) ** slope, color="gray", ls=style, lw=0.8, label=f"slope {slope}")
        low = min(min(s["seconds"]) for s in rows)
        high = max(max(s["seconds"]) for s in rows)
        ax.set_ylim(low / 2, high * 2)
        _length_ticks(ax, sorted({L for s in rows for L in s["lengths"]}))
        ax.set_xlabel("L (tokens)")
        ax.set_ylabel("seconds (median; " + results.get("clock", "CPU time") + ")", fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes["train"].set_title("one training step (forward + backward)", fontsize=10)
    axes["generate"].set_title("generating L tokens", fontsize=10)
    save_png(fig, path)


def _plot_memory(results: dict, path: Path) -> None:
    from arlm.experiments.plots import new_figure, save_png

    mem = results["memory"]
    layers, width = mem["gpt2_shape"]
    fig = new_figure(6.4, 3.6)
    ax = fig.add_subplot()
    ax.loglog(mem["lengths"], mem["kv_cache_bytes"], marker="o", ms=3, label="KV cache, this Transformer")
    ax.loglog(mem["lengths"], mem["gpt2_kv_cache_bytes"], marker="o", ms=3,
              label=f"KV cache, GPT-2 small shape ({layers}×{width})")
    ax.loglog(mem["lengths"], [mem["rnn_state_bytes"]] * len(mem["lengths"]), marker="o", ms=3,
              label="LSTM state")
    _length_ticks(ax, mem["lengths"])
    ax.set_xlabel("L (tokens)")
    ax.set_ylabel("bytes (fp32)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Memory of the incremental state against L", fontsize=10)
    save_png(fig, path)

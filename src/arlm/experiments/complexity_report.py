"""The complexity experiment's report: tables, plots and every conclusion written from results.json.

Each sentence that states a conclusion is a function of the numbers (the fits' intervals, the ratios
of medians, the measured bytes), so a results.json in which the numbers say otherwise gives the other
sentence; every speed figure goes through :func:`~arlm.experiments.protocol.mark_speed` with the load
the run recorded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from arlm.experiments.complexity_fit import crossover_status, sweep_verdict
from arlm.experiments.protocol import load_sentence, mark_speed

TERM = {1: "L", 2: "L²", 3: "L³"}
SUB = {0: "₀", 1: "₁", 2: "₂", 3: "₃"}
COLORS = {"train_rnn": "tab:orange", "train_transformer": "tab:blue", "score_rnn": "tab:brown",
          "score_transformer": "tab:cyan", "generate_rnn": "tab:orange", "generate_kv_cache": "tab:blue",
          "generate_no_cache": "tab:red"}


def _n(x: float | None) -> str:
    """A length-like number: 1,190 (or ∞ for None)."""
    return "∞" if x is None else f"{x:,.0f}"


def _g(x: float | None) -> str:
    return "∞" if x is None else f"{x:.3g}"


def _crossover_text(fit: dict) -> str:
    lo, hi = fit["crossover_ci"]
    return f"L* = {_n(fit['crossover'])} [{_n(lo)}, {_n(hi)}]"


def fit_sentence(name: str, results: dict) -> str:
    """What the fit of series ``name`` says: whether its top term is measured, where the crossover L*
    lies against the measured lengths, and how that compares with the chapter's order."""
    series = results["series"][name]
    fit, chapter = series["fit"], series["chapter_exponent"]
    top, below = fit["powers"][-1], fit["powers"][-2]
    lengths = series["lengths"]
    lo_c, hi_c = fit["coef_ci"][-1]
    status = crossover_status(fit, lengths)
    span = f"L = {lengths[0]:,}…{lengths[-1]:,}"
    coef = f"c{SUB[top]} = {_g(fit['coefs'][-1])} [{_g(lo_c)}, {_g(hi_c)}]"
    if status == "negative":
        return (f"The {TERM[top]} term comes out below 0 ({coef}): over {span} the cost bends the other "
                "way (it grows more slowly at the long end than at the short end), so no crossover can be "
                f"placed; the chapter's O({TERM[chapter]}) does not show at these lengths.")
    if status == "unmeasured":
        text = (f"The {TERM[top]} term is not distinguishable from 0 ({coef}): over {span} this cost is not "
                f"measurably of order {TERM[top]}, so no crossover can be placed")
        text += (", as the chapter's O(L) says." if chapter < top else
                 f"; the chapter's O({TERM[chapter]}) does not show at these lengths.")
        return text
    where = {
        "within": (f"inside the measured range ({span}): past it the {TERM[top]} term is the larger cost"),
        "beyond": (f"beyond the longest L measured ({lengths[-1]:,}): over this whole range the "
                   f"{TERM[below]} term is the larger cost, and the {TERM[top]} term is the asymptote "
                   "past L*"),
        "below": f"below the shortest L measured ({lengths[0]:,}): the {TERM[top]} term is the larger cost "
                 "at every measured L",
        "straddles": f"its interval reaches past the measured range ({span}), so where the {TERM[top]} term "
                     "takes over is only bounded",
    }[status]
    text = f"The {TERM[top]} term is measured ({coef}); {_crossover_text(fit)}, {where}."
    if chapter < top:
        text += (f" The chapter's O({TERM[chapter]}) counts arithmetic, which is constant per token here; "
                 f"this {TERM[top]} term is the machine's (the run does not say which part: memory traffic, "
                 "allocation), not the algorithm's.")
    return text


def sweep_sentence(results: dict) -> str:
    """How the training step's crossover L* moves with the width d over the sweep."""
    points = _sweep(results)
    verdict = sweep_verdict([(d, s["fit"]) for d, s in points])
    (d0, s0), (d1, s1) = points[0], points[-1]
    first, last = _crossover_text(s0["fit"]), _crossover_text(s1["fit"])
    if verdict == "grows":
        text = (f"L* grows with d: {first} at d = {d0}, {last} at d = {d1} (the intervals are disjoint), "
                "as the chapter's counting says (attention ∝ L²·d against projections ∝ L·d², so L* ∝ d).")
    elif verdict == "falls":
        text = (f"L* falls as d grows: {first} at d = {d0}, {last} at d = {d1} (the intervals are disjoint), "
                "against the chapter's L* ∝ d.")
    elif verdict == "unmeasured":
        text = ("At the smallest or the largest d the L² term's interval is not above 0, so this sweep "
                "cannot place L* there and does not show L* moving with d.")
    else:
        text = (f"L* at d = {d0} ({first}) and at d = {d1} ({last}) are not distinguishable (their intervals "
                "overlap): this sweep does not show L* moving with d.")
    return mark_speed(text, results.get("load"))


def against_lstm_sentence(results: dict) -> str:
    """The Transformer's training step against the LSTM's, in wall time: slower, faster or mixed."""
    ratios = _ratios(results, "train_transformer", "train_rnn")
    where = f"in wall time at {results['threads']} thread(s) on {results['device']}"
    lo, hi = min(ratios.values()), max(ratios.values())
    if lo > 1:
        text = (f"{where.capitalize()}, the Transformer's training step is slower than the LSTM's at every "
                f"measured L ({lo:.1f}–{hi:.1f}× its time): computing all positions at once does not make it "
                "faster here, because it does more arithmetic per token.")
    elif hi < 1:
        text = (f"{where.capitalize()}, the Transformer's training step is faster than the LSTM's at every "
                f"measured L ({lo:.2f}–{hi:.2f}× its time): computing all positions at once pays.")
    else:
        text = (f"{where.capitalize()}, the Transformer's training step takes {lo:.2f}–{hi:.2f}× the LSTM's "
                "time: faster at some lengths, slower at others.")
    return mark_speed(text, results.get("load"))


def parallel_sentence(results: dict) -> str:
    """All positions at once (one forward) against one at a time (generation), per system."""
    tr = _ratios(results, "generate_kv_cache", "score_transformer")
    rnn = _ratios(results, "generate_rnn", "score_rnn")
    common = sorted(set(tr) & set(rnn))
    top = common[-1]
    text = (f"Processing L = {top:,} positions one at a time (generation) takes {tr[top]:.1f}× the time "
            "of one forward pass over all of them for the Transformer with its cache, "
            f"{rnn[top]:.1f}× for the LSTM")
    if all(tr[L] > rnn[L] for L in common):
        text += "; at every measured L the Transformer loses more by going one position at a time."
    elif all(tr[L] < rnn[L] for L in common):
        text += "; at every measured L the LSTM loses more by going one position at a time."
    else:
        text += "; which of the two loses more depends on L."
    return mark_speed(text, results.get("load"))


def memory_sentence(results: dict) -> str:
    """The measured KV cache against L (per token, against the formula), the preallocated one, the LSTM's."""
    mem, tr = results["memory"], results["models"]["transformer"]
    L, kv = mem["lengths"], mem["kv_window_L"]
    per_token = (kv[-1] - kv[0]) / (L[-1] - L[0])
    formula = 2 * tr["n_layer"] * tr["d_model"] * 4
    text = (f"Measured ({mem['method']}), the cache of a model whose window is L grows by {per_token:,.0f} B "
            f"per token (log-log slope {mem['kv_fit']['b']:.3f}); the formula 2·n_layer·d·4 = {formula:,} B "
            + ("gives the same." if abs(per_token - formula) <= 0.01 * formula else "differs from it."))
    fixed = mem["kv_window_max"]
    if len(set(fixed)) == 1:
        text += (f" Generating L tokens from the timing model (window {max(L) + 1:,}) holds "
                 f"{_bytes(fixed[0])} at every L: arlm allocates the cache for the whole window at the first "
                 "step, so its memory is set by the window, not by the tokens generated.")
    else:
        text += f" The timing model's cache holds {_bytes(min(fixed))}–{_bytes(max(fixed))} as L varies."
    rnn = mem["rnn_state"]
    text += (f" The LSTM's state holds {_bytes(rnn[0])} at every L." if len(set(rnn)) == 1 else
             f" The LSTM's state holds {_bytes(min(rnn))}–{_bytes(max(rnn))}, varying with L.")
    return text


def _ratios(results: dict, num: str, den: str) -> dict[int, float]:
    a, b = results["series"][num], results["series"][den]
    bs = dict(zip(b["lengths"], b["seconds"], strict=True))
    return {L: t / bs[L] for L, t in zip(a["lengths"], a["seconds"], strict=True) if bs.get(L)}


def _sweep(results: dict) -> list[tuple[int, dict]]:
    plan = results["plan"]
    pts = [(d, results["series"]["train_transformer" if d == plan["d_model"] else f"train_transformer_d{d}"])
           for d in plan["d_sweep"]]
    return sorted(pts, key=lambda p: p[0])


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def render(results: dict, out_dir: Path) -> str:
    """report.md's body and the plots, from ``results`` only."""
    plan, models, load = results["plan"], results["models"], results.get("load")
    tr, rnn = models["transformer"], models["rnn"]
    series = results["series"]
    lines = [
        "## The claim", "",
        "The chapter's table: training costs O(L) for an RNN (sequential) and O(L²) for a Transformer "
        "(parallel); generating L tokens costs O(L) for an RNN, O(L²) for a Transformer with a KV cache "
        "and O(L³) without one (each step re-runs the prefix: Σ t² = O(L³)); the KV cache's memory grows "
        "with L, an RNN's state does not.", "",
        "## What was measured", "",
        f"An LSTM (d_embed = d_hidden = {rnn['d_hidden']}, {models['rnn_params']:,} parameters) and "
        f"Transformers of {tr['n_layer']} layer(s) × {tr['n_head']} heads at widths d = "
        f"{', '.join(map(str, plan['d_sweep']))} (d = {tr['d_model']}, {models['transformer_params']:,} "
        f"parameters, for every series but the sweep), random weights (time does not depend on them), "
        f"vocabulary of 64. Training: forward + backward of {plan['train_rows']} rows of L tokens. All "
        "positions at once: one forward pass over L tokens, batch 1. Generation: L greedy steps from [SOS], "
        f"batch 1. The times are the measurement: {results['clock']} on {results['device']} at "
        f"{results['threads']} torch thread(s), the median of {plan['repeats']} runs after a warm-up run, "
        "the systems alternated within every repeat.", "",
    ]
    if load is not None and load.get("speed_valid") is False:
        lines += [load_sentence(load), ""]
    lines += [
        "The fits: c₀ + c₁·L + c₂·L² (+ c₃·L³ for generation without a cache; c₀ is the fixed cost of a "
        "call) by least squares on "
        "the relative error; L* = c₁/c₂ (c₂/c₃ for the cubic) is the length where the chapter's term "
        f"equals the one below it; 95 % intervals from {plan['draws']:,} bootstrap draws over the repeats "
        "(they hold this run's timing noise, not a different machine's or load's). b is the log-log "
        "slope of T ≈ a·L^b over the measured range, for reference.", "",
        "## " + mark_speed("Fits and crossovers", load), "",
        "| series | chapter | c₀ (s) | c₁ (s) | c₂ (s) | c₃ (s) | L* [95 %] | b [95 %] |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in series.values():
        if s["kind"] == "sweep":
            continue
        fit, pl = s["fit"], s["power_law"]
        cells = [f"{_g(c)} [{_g(lo)}, {_g(hi)}]"
                 for c, (lo, hi) in zip(fit["coefs"], fit["coef_ci"], strict=True)]
        cells += ["-"] * (4 - len(cells))
        ci = pl["ci"]
        b = f"{pl['b']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
        cross = f"{_n(fit['crossover'])} [{_n(fit['crossover_ci'][0])}, {_n(fit['crossover_ci'][1])}]"
        lines.append(f"| {s['label']} | O({TERM[s['chapter_exponent']]}) | " + " | ".join(cells)
                     + f" | {cross} | {b} |")
    lines += ["", "![time against L, log-log, with the fits](complexity.png)", ""]
    for name, s in series.items():
        if s["kind"] != "sweep":
            lines += [f"**{s['label']}.** " + mark_speed(fit_sentence(name, results), load), ""]
    lines += ["## " + mark_speed("The crossover against the width d (training step)", load), "",
              "| d | c₁ (s) | c₂ (s) | L* [95 %] | L*/d |", "|---:|---:|---:|---:|---:|"]
    for d, s in _sweep(results):
        fit = s["fit"]
        ratio = "-" if fit["crossover"] is None else f"{fit['crossover'] / d:.1f}"
        lines.append(f"| {d} | {_g(fit['coefs'][-2])} | {_g(fit['coefs'][-1])} | "
                     f"{_crossover_text(fit).removeprefix('L* = ')} | {ratio} |")
    lines += ["", sweep_sentence(results), "",
              "The chapter's counting (≈ 24·d² FLOPs of projections and MLP per token and layer against "
              "≈ 4·L·d of attention) puts L* near 6·d; the measured L*/d is larger where attention's "
              "kernels run slower per FLOP than the projections' matrix products (or smaller where they "
              "run faster).", "",
              "![L* against d](crossover.png)", "",
              "## " + mark_speed("All positions at once against one at a time", load), "",
              against_lstm_sentence(results), "", parallel_sentence(results), "",
              "### " + mark_speed("Times (seconds, medians)", load), ""]
    lengths = sorted({L for s in series.values() for L in s["lengths"]})
    lines += ["| series | " + " | ".join(f"L={L}" for L in lengths) + " |", "|---|" + "---:|" * len(lengths)]
    for s in series.values():
        cells = dict(zip(s["lengths"], s["seconds"], strict=True))
        row = " | ".join(f"{cells[L]:.4g}" if L in cells else "-" for L in lengths)
        lines.append(f"| {s['label']} | {row} |")
    mem = results["memory"]
    lines += ["", "## Memory: the KV cache grows with L, an RNN's state does not", "",
              "| L | " + " | ".join(f"{L:,}" for L in mem["lengths"]) + " |",
              "|---|" + "---:|" * len(mem["lengths"]),
              "| KV cache, window L (measured) | " + " | ".join(map(_bytes, mem["kv_window_L"])) + " |"]
    if any(p is not None for p in mem["kv_window_L_peak"]):
        lines.append("| peak during that generation (measured) | "
                     + " | ".join(_bytes(p) for p in mem["kv_window_L_peak"]) + " |")
    lines += [f"| KV cache, window {max(mem['lengths']) + 1:,} (measured) | "
              + " | ".join(map(_bytes, mem["kv_window_max"])) + " |",
              "| 2·n_layer·d·L·4 B (formula) | " + " | ".join(map(_bytes, mem["formula"])) + " |",
              "| LSTM state (measured) | " + " | ".join(map(_bytes, mem["rnn_state"])) + " |", "",
              memory_sentence(results), "", "![memory against L](kv_cache.png)", ""]
    _plot_times(results, out_dir / "complexity.png")
    _plot_crossover(results, out_dir / "crossover.png")
    _plot_memory(results, out_dir / "kv_cache.png")
    return "\n".join(lines)


def _fitted(fit: dict, xs: np.ndarray) -> np.ndarray:
    return sum(c * xs ** p for c, p in zip(fit["coefs"], fit["powers"], strict=True))


def _length_ticks(ax, lengths: list[int]) -> None:
    from matplotlib.ticker import NullLocator

    ax.set_xticks(lengths, [str(L) for L in lengths])
    ax.xaxis.set_minor_locator(NullLocator())


def _plot_times(results: dict, path: Path) -> None:
    from arlm.experiments.plots import new_figure, save_png

    fig = new_figure(10.0, 4.2)
    panels = {"train": "one training step (forward + backward); lines: the fits",
              "generate": "all at once (squares), one at a time (dots); lines: the fits"}
    axes = dict(zip(panels, fig.subplots(1, 2), strict=True))
    for name, s in results["series"].items():
        if s["kind"] == "sweep":
            continue
        ax = axes["train" if s["kind"] == "train" else "generate"]
        marker = "s" if s["kind"] == "score" else "o"
        color = COLORS.get(name)
        ax.loglog(s["lengths"], s["seconds"], marker=marker, ms=3, ls="none", color=color,
                  label=s["label"].split(", ")[-1] + (" (all at once)" if s["kind"] == "score" else ""))
        xs = np.geomspace(s["lengths"][0], s["lengths"][-1], 50)
        ys = _fitted(s["fit"], xs)
        ax.loglog(xs[ys > 0], ys[ys > 0], color=color, lw=0.9, ls="--" if s["kind"] == "score" else "-")
    for kind, ax in axes.items():
        shown = [t for s in results["series"].values() if s["kind"] != "sweep"
                 and (s["kind"] == "train") == (kind == "train") for t in s["seconds"]]
        ax.set_ylim(min(shown) / 2, max(shown) * 2)  # the fits' curves never squeeze the data
        ax.set_title(panels[kind], fontsize=10)
        _length_ticks(ax, sorted({L for s in results["series"].values() for L in s["lengths"]}))
        ax.set_xlabel("L (tokens)")
        ax.set_ylabel(f"seconds (median, {results['clock']})", fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    save_png(fig, path)


def _plot_crossover(results: dict, path: Path) -> None:
    from matplotlib.ticker import NullLocator

    from arlm.experiments.plots import new_figure, save_png

    fig = new_figure(6.4, 4.0)
    ax = fig.add_subplot()
    longest = max(results["plan"]["lengths"])
    top = 10 * longest  # where an unmeasured crossover is drawn
    drawn: set[str] = set()  # one legend entry per kind of point
    for d, s in _sweep(results):
        fit = s["fit"]
        lo, hi = fit["crossover_ci"]
        if fit["crossover"] is None or not fit["top_positive"]:  # no crossover measured: an arrow up
            ax.plot([d], [top], marker="^", ms=8, color="tab:red", ls="none",
                    label=None if "unmeasured" in drawn else "L² term not measured")
            drawn.add("unmeasured")
        else:
            mid, lo, hi = fit["crossover"], max(lo or 1.0, 1.0), top if hi is None else hi
            ax.errorbar([d], [mid], yerr=[[max(mid - lo, 0)], [max(hi - mid, 0)]], marker="o", capsize=4,
                        color="tab:blue", label=None if "measured" in drawn else "measured L* [95 %]")
            drawn.add("measured")
    ds = [d for d, _ in _sweep(results)]
    xs = np.array([min(ds) / 1.5, max(ds) * 1.5])
    ax.loglog(xs, 6 * xs, color="gray", ls=":", label="L* = 6·d (FLOP count)")
    ax.axhline(longest, color="gray", lw=0.8, ls="--", label="longest L measured")
    ax.set_xticks(ds, [str(d) for d in ds])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("width d")
    ax.set_ylabel("crossover L* (tokens)")
    ax.set_title("Training step: where the L² term overtakes the L term", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save_png(fig, path)


def _plot_memory(results: dict, path: Path) -> None:
    from arlm.experiments.plots import new_figure, save_png

    mem = results["memory"]
    fig = new_figure(6.4, 3.8)
    ax = fig.add_subplot()
    ax.loglog(mem["lengths"], mem["kv_window_L"], marker="o", ms=4, label="KV cache, window L (measured)")
    ax.loglog(mem["lengths"], mem["formula"], color="black", lw=0.8, ls=":", label="2·n_layer·d·L·4 B")
    ax.loglog(mem["lengths"], mem["kv_window_max"], marker="^", ms=4,
              label=f"KV cache, window {max(mem['lengths']) + 1} (measured)")
    ax.loglog(mem["lengths"], mem["rnn_state"], marker="s", ms=4, label="LSTM state (measured)")
    _length_ticks(ax, mem["lengths"])
    ax.set_xlabel("L (tokens generated)")
    ax.set_ylabel("bytes held after generating L tokens")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Memory of the incremental state against L", fontsize=10)
    save_png(fig, path)

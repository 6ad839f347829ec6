"""The ladder's report, written from results.json alone (:func:`render_report`): tables of the chosen
models and their candidates, paired verdicts for adjacent rungs, the test NLL by position in the line,
the learning curves, and every sentence that states a conclusion generated from those numbers
(:func:`findings`, :func:`position_findings`)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np

from arlm.experiments.protocol import A_LOWER, B_LOWER, compare_paired, comparison_sentence

FAMILIES = ("window MLP", "LSTM", "Transformer")  # the neural rungs, as results.json names them
RUNGS = ("n-gram", *FAMILIES)


def rung_values(results: dict, rung: str) -> list[float]:
    """Test bits/char per seed of a rung (the n-gram, counted once, repeated for every seed)."""
    if rung == "n-gram":
        return [results["ngram"]["test"]["bits_per_char"]] * len(results["seeds"])
    return [r["bits_per_char"] for r in results["families"][rung]["runs"]]


COLORS = {"n-gram": "black", "window MLP": "tab:green", "LSTM": "tab:orange", "Transformer": "tab:blue"}


def paired(results: dict, a: str, b: str):
    """``a`` − ``b`` per seed, recomputed from the per-seed numbers (so the sentence follows them)."""
    return compare_paired(rung_values(results, a), rung_values(results, b), a, b)


def _trend(curve: list[list[float]]) -> str:
    """'still falling (… bits/char over its last … steps)', 'rising again (…)' or 'about flat …'."""
    if len(curve) < 2:
        return "measured once"
    (s0, a), (s1, b) = curve[-2], curve[-1]
    if a - b > 0.005:
        return f"still falling ({a - b:.3f} bits/char over its last {s1 - s0:,.0f} steps)"
    if b - a > 0.005:
        return f"rising again ({b - a:.3f} bits/char over its last {s1 - s0:,.0f} steps)"
    return f"about flat over its last {s1 - s0:,.0f} steps"


def _mean_curve(family: dict) -> list[list[float]]:
    """The chosen configuration's validation curve, averaged over its seeds: [[step, bits/char], …]."""
    curves = np.array([r["curve"] for r in family["runs"]], dtype=float)  # (seeds, points, 2)
    return curves.mean(0).tolist()


def reach(results: dict, rung: str) -> int | None:
    """How many tokens of context a rung reads ([SOS] included): positions k ≥ reach lie beyond it
    (the n-gram: order − 1; the window MLP: its window; None: the whole line)."""
    if rung == "n-gram":
        return results["ngram"]["order"] - 1
    if rung == "window MLP":
        return results["families"][rung]["window"]
    return None


def _profile(results: dict, rung: str) -> np.ndarray:
    """(seeds, positions) test bits/char by position (the n-gram repeated for every seed)."""
    if rung == "n-gram":
        return np.array([results["ngram"]["test"]["positions"]] * len(results["seeds"]))
    return np.array([r["positions"] for r in results["families"][rung]["runs"]])


LINE_END_SHARE = 0.1  # positions where more of the targets than this are a line's newline: left out


def newline_share(results: dict) -> list[float]:
    """At each position shown, the share of its targets that are a line's newline ([EOS]), from how many
    lines reach each position (NaN at the last one shown: how many end there is not recorded)."""
    counts = results["data"]["position_lines"]
    return [(a - b) / a for a, b in itertools.pairwise(counts)] + [math.nan]


def body_end(results: dict) -> int:
    """The last position before the first one where more than :data:`LINE_END_SHARE` of the targets are
    a line's end (or whose share is unknown): the bands end there, so that predicting where long lines
    end, which needs the line's length, is not mixed into them."""
    share = newline_share(results)
    return next((k for k, x in enumerate(share) if not x <= LINE_END_SHARE), len(share)) - 1


def context_gain(results: dict, model: str, reference: str) -> dict[str, Any] | None:
    """``model`` − ``reference`` per seed, averaged over positions inside the reference's reach (its
    second half) and beyond it up to :func:`body_end`; their paired comparison (beyond − inside). None
    when no such position lies beyond the reach."""
    c = reach(results, reference)
    end = body_end(results)
    if c is None or c > end or c < 2:
        return None
    gap = _profile(results, model) - _profile(results, reference)  # (seeds, positions)
    inside, beyond = (c // 2, c - 1), (c, end)
    values = {name: gap[:, lo:hi + 1].mean(1) for name, (lo, hi) in (("inside", inside), ("beyond", beyond))}
    comparison = compare_paired(values["beyond"], values["inside"], "beyond", "inside")
    return {"reach": c, "inside": inside, "beyond": beyond, "comparison": comparison,
            "inside_mean": float(values["inside"].mean()), "beyond_mean": float(values["beyond"].mean())}


# ---------------------------------------------------------------------------------------------
# Sentences
# ---------------------------------------------------------------------------------------------


def findings(results: dict) -> list[str]:
    """The ladder's conclusions, each written from the numbers: each rung against the one below, and
    what the design shows when a rung does not beat the one below it."""
    out = []
    held = 0
    for below, above in itertools.pairwise(RUNGS):
        c = paired(results, above, below)
        held += c.verdict == A_LOWER
        text = f"{above} against {below}: " + comparison_sentence(c, "bits/char")
        if below == "n-gram":
            text += " (The n-gram is counted, so it has no seed spread: the interval is the neural seeds'.)"
        out.append(text)
    out.append(f"The chapter's ladder, each rung below the one before it, holds for {held} of the "
               f"{len(RUNGS) - 1} steps at this budget.")
    window = paired(results, "window MLP", "n-gram")
    if window.verdict != A_LOWER:
        out.append(_window_loses(results, window.verdict))
    return out


def _window_loses(results: dict, verdict: str) -> str:
    """Plainly: the window MLP does not beat the n-gram; what the run shows about why (its budget, its
    curve, its reach against the n-gram's), no more."""
    fam = results["families"]["window MLP"]
    plan, data = results["plan"], results["data"]
    tokens = plan["steps"] * plan["batch_tokens"]
    how = "is above" if verdict == B_LOWER else "is not distinguishable from"
    text = (f"**The window MLP does not beat the counted n-gram here**: it {how} the "
            f"{results['ngram']['chosen']} on the test lines. What the run shows about why: the n-gram "
            f"counts all {data['train_chars']:,} training characters exactly, while each network reads "
            f"{tokens:,} training tokens ({tokens / data['train_chars']:.2f} passes) through "
            f"{plan['steps']:,} gradient steps; the window MLP's chosen configuration ended its budget "
            f"{_trend(_mean_curve(fam))} on validation")
    w, n = fam["window"], reach(results, "n-gram")
    if w is not None and n is not None and w > n:
        text += (f", and it reads {w} tokens of context against the n-gram's {n}: it is not short of "
                 "context, it uses its longer window less well than the counts use theirs at this budget")
    return text + ". Whether a longer budget changes the order is not measured here."


def position_findings(results: dict) -> list[str]:
    """Where a longer context pays: each model's lead over the window MLP and the n-gram, inside their
    reach and beyond it."""
    out = []
    for reference in ("window MLP", "n-gram"):
        for model in ("LSTM", "Transformer"):
            g = context_gain(results, model, reference)
            if g is None:
                out.append(f"{model} against {reference}: no position reached by enough test lines (and "
                           f"not mostly line ends) lies beyond the {reference}'s reach, so this run cannot "
                           "compare them there.")
                continue
            c = g["comparison"]
            d = c.difference
            (a0, a1), (b0, b1) = g["inside"], g["beyond"]
            text = (f"{model} − {reference}: {g['inside_mean']:+.3f} bits/char at positions {a0}–{a1} "
                    f"(inside the {reference}'s reach of {g['reach']} tokens) and {g['beyond_mean']:+.3f} "
                    f"at positions {b0}–{b1} (beyond it); the change is {d.mean:+.3f}")
            interval = ("" if math.isnan(d.low) else
                        f" (95 % interval [{d.low:+.3f}, {d.high:+.3f}], paired over {d.n} seeds)")
            if c.verdict == A_LOWER and g["beyond_mean"] >= 0:
                text += (f"{interval}: the {model} is still above the {reference} beyond its reach, but "
                         f"closer than inside it: where only the {model} still sees the line's earlier "
                         "characters the longer context pays, as the chapter argues, though not enough to "
                         f"overtake the {reference} at this budget.")
            elif c.verdict == A_LOWER and g["inside_mean"] >= 0:
                text += (f"{interval}: the {model} is above the {reference} inside its reach and below it "
                         f"beyond: where only the {model} still sees the line's earlier characters the "
                         "longer context pays, as the chapter argues.")
            elif c.verdict == A_LOWER:
                text += (f"{interval}: the {model}'s lead over the {reference} grows where only the {model} "
                         "still sees the line's earlier characters, as the chapter argues.")
            elif c.verdict == B_LOWER:
                text += (f"{interval}: the {model} loses ground to the {reference} beyond its reach, "
                         "against the chapter's argument.")
            else:
                text += (f"{interval}, not distinguishable from 0: this run does not show the {model}'s "
                         f"longer context paying beyond the {reference}'s reach.")
            out.append(text)
    return [*out, *_line_ends(results)]


def _line_ends(results: dict) -> list[str]:
    """What happens at the positions left out of the bands, where many targets are a line's end."""
    end, share = body_end(results), newline_share(results)
    top = len(share)
    if end >= top - 1:
        return []
    known = [x for x in share[end + 1:] if not math.isnan(x)]
    means = {rung: float(_profile(results, rung)[:, end + 1:].mean()) for rung in RUNGS}
    lowest = min(means, key=means.get)
    where = (f"{100 * min(known):.0f}–{100 * max(known):.0f} % of the targets are" if known else
             "many targets may be")
    return [f"Positions {end + 1}–{top - 1} are left out of these bands: there {where} a line's newline "
            "(long lines end there). Mean test bits/char over those positions: "
            + ", ".join(f"{rung} {v:.3f}" for rung, v in means.items()) + f"; the {lowest} is lowest."]


def curve_findings(results: dict) -> str:
    """Each chosen configuration's validation curve at the end of the budget."""
    parts = [f"the {family} is {_trend(_mean_curve(results['families'][family]))}" for family in FAMILIES]
    return ("At the end of the budget, on validation (mean of the seeds): " + "; ".join(parts) + ".")


def _threads_sentence(results: dict) -> str:
    return (f"Threads: every model was trained in a worker process with {results['torch_threads']} torch "
            f"thread ({results['workers']} worker process(es) ran at once) and scored with "
            f"{results['torch_threads']} torch thread, so the numbers do not depend on `--threads` (it "
            "sets only how many processes run at once); the last digits may differ on another CPU.")


# ---------------------------------------------------------------------------------------------
# Tables and the page
# ---------------------------------------------------------------------------------------------


def _summary_cells(s: dict[str, Any]) -> tuple[str, str]:
    if math.isnan(s["std"]):
        return f"{s['mean']:.4f}", "–"
    return f"{s['mean']:.4f} ± {s['std']:.4f}", f"[{s['low']:.4f}, {s['high']:.4f}]"


def render_report(results: dict, out_dir: str | Path) -> str:
    """report.md's body, with ``ladder.png``, ``learning_curves.png`` and ``positions.png``."""
    out_dir = Path(out_dir)
    plan, data, ngram, fams = results["plan"], results["data"], results["ngram"], results["families"]
    n_seeds, n_configs = len(results["seeds"]), len(fams[FAMILIES[0]]["candidates"])
    tokens = plan["steps"] * plan["batch_tokens"]
    lines = [
        "## The claim",
        "",
        "Each rung of the ladder (n-gram → fixed-window MLP → RNN → Transformer) conditions on more of "
        "the past and shares more statistics between contexts, so each should model text better than "
        "the one below it, and the longer context is where it wins.",
        "",
        "## How it was measured",
        "",
        f"Shakespeare's characters. Every neural family had the same search: {n_configs} "
        f"configurations, each trained with seed {results['seeds'][0]} for {plan['steps']:,} steps of "
        f"{plan['batch_tokens']:,} tokens ({tokens:,} training tokens: the budget, equal for every run), "
        f"the one with the lowest validation bits/char ({data['val_lines']:,} validation lines) chosen "
        f"and trained again with seeds {', '.join(map(str, results['seeds'][1:]))}. The n-gram's order "
        f"and smoothing were chosen on the same validation lines among {len(ngram['candidates'])} "
        f"candidates. The test lines ({data['test_lines']:,} lines, {data['test_chars']:,} characters "
        "with their newlines, each line scored alone from [SOS]) were read once, at the end."
        + (" **Quick run: tiny models, a few steps, the first lines of each split.**" if results["quick"]
           else ""),
        "",
        _threads_sentence(results),
        "",
        "## The ladder: test bits per character",
        "",
        f"| rung | chosen configuration | test bits/char (mean ± std, {n_seeds} seeds) | 95 % interval "
        "| validation bits/char | parameters |",
        "|---|---|---:|---|---:|---:|",
    ]
    chosen_ngram = next(c for c in ngram["candidates"] if c["label"] == ngram["chosen"])
    lines.append(f"| n-gram | {ngram['chosen']} | {ngram['test']['bits_per_char']:.4f} (counted) | – "
                 f"| {chosen_ngram['val_bits_per_char']:.4f} | counts |")
    for family in FAMILIES:
        f = fams[family]
        cand = f["candidates"][f["chosen"]]
        mean, interval = _summary_cells(f["summary"])
        val = np.mean([r["val_bits_per_char"] for r in f["runs"]])
        lines.append(f"| {family} | {cand['name']} | {mean} | {interval} | {val:.4f} | {cand['params']:,} |")
    lines += ["", "![test bits per character of each rung](ladder.png)", "",
              "Adjacent rungs, paired by seed (A − B per seed; the 95 % interval of the mean difference):",
              "",
              "| comparison | A − B, bits/char | 95 % interval | verdict |", "|---|---:|---|---|"]
    for name, c in results["comparisons"].items():
        d = c["difference"]
        interval = "–" if math.isnan(d["low"]) else f"[{d['low']:+.4f}, {d['high']:+.4f}]"
        verdict = {A_LOWER: f"{c['a']} lower", B_LOWER: f"{c['b']} lower"}.get(c["verdict"],
                                                                               "not distinguishable")
        lines.append(f"| {name} | {d['mean']:+.4f} | {interval} | {verdict} |")
    lines += ["", "## What the numbers show", "", *[p for s in findings(results) for p in (s, "")]]
    lines += _positions_section(results)
    lines += _search_section(results)
    lines += ["## What the ladder no longer shows", "",
              "The word n-gram table (orders × smoothings in perplexity) is no longer part of this "
              "experiment: its bits/char counts each unseen word as one [UNK] event and is not a character "
              "model's number, and its smoothing comparison is not a ladder rung; `arlm quickstart` still "
              "prints it (docs/evaluation.md). Samples and the crossings in training seconds (a timing "
              "measurement) are dropped too: every number here is fixed by steps and seeds.", ""]
    plot_ladder(results, out_dir / "ladder.png")
    plot_curves(results, out_dir / "learning_curves.png")
    plot_positions(results, out_dir / "positions.png")
    return "\n".join(lines)


def _positions_section(results: dict) -> list[str]:
    data = results["data"]
    counts = data["position_lines"]
    lines = ["## Where a longer context pays: test NLL by position in the line", "",
             "![test bits per character by position in the line](positions.png)", "",
             f"Position k is the character predicted after k characters of its line (the last one of a line "
             f"is its newline); positions 0–{len(counts) - 1} are shown, each reached by at least "
             f"{counts[-1]:,} of the {data['test_lines']:,} test lines. The n-gram reads the last "
             f"{reach(results, 'n-gram')} tokens, the window MLP the last {reach(results, 'window MLP')} "
             "([SOS] included), the LSTM and the Transformer the whole line.", ""]
    block = results["families"]["Transformer"]["block_size"]
    if block is not None and block < data["longest_line"]:
        lines += [f"The Transformer reads at most {block} tokens: a test line longer than that (the longest "
                  f"has {data['longest_line']} tokens with [SOS] and [EOS]) is scored with a sliding window "
                  f"of {block} tokens at a stride of {block // 2} over that line alone, so each character "
                  f"still sees at least {block - block // 2} earlier tokens of its line.", ""]
    return lines + [p for s in position_findings(results) for p in (s, "")]


def _search_section(results: dict) -> list[str]:
    plan, ngram, fams = results["plan"], results["ngram"], results["families"]
    lines = ["## The search (validation only)", "",
             "![learning curves on validation](learning_curves.png)", "",
             curve_findings(results), "",
             f"| family | configuration (on `{plan['preset']}`) | parameters | validation bits/char, seed "
             f"{results['seeds'][0]} | chosen |", "|---|---|---:|---:|---|"]
    for family in FAMILIES:
        f = fams[family]
        for i, c in enumerate(f["candidates"]):
            overrides = " ".join(c["overrides"]) or "(as is)"
            lines.append(f"| {family} | {c['name']} (`{overrides}`) | {c['params']:,} | "
                         f"{c['val_bits_per_char']:.4f} | {'**chosen**' if i == f['chosen'] else ''} |")
    lines += ["", "| n-gram | validation bits/char | chosen |", "|---|---:|---|"]
    for c in ngram["candidates"]:
        lines.append(f"| {c['label']} | {c['val_bits_per_char']:.4f} | "
                     f"{'**chosen**' if c['label'] == ngram['chosen'] else ''} |")
    return [*lines, ""]


# ---------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------


def plot_ladder(results: dict, path: Path) -> Path:
    """Test bits/char of each rung from zero: the seeds' mean with its 95 % interval (the n-gram
    counted, no interval)."""
    from arlm.experiments.plots import new_figure, save_png

    values, errors = [results["ngram"]["test"]["bits_per_char"]], [0.0]
    for family in FAMILIES:
        s = results["families"][family]["summary"]
        values.append(s["mean"])
        errors.append(0.0 if math.isnan(s["high"]) else s["high"] - s["mean"])
    labels = [f"n-gram\n({results['ngram']['chosen'].removeprefix('char ')})", *FAMILIES]
    fig = new_figure(6.4, 3.6)
    ax = fig.add_subplot()
    x = np.arange(len(values))
    ax.bar(x, values, yerr=errors, capsize=4, color=[COLORS[r] for r in RUNGS])
    for i, v in enumerate(values):
        ax.text(i, v + errors[i], f"{v:.3f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylim(0, max(values) * 1.15)
    ax.set_ylabel("test bits per character (from 0)")
    ax.set_title(f"Mean of {len(results['seeds'])} seeds with its 95 % interval; "
                 f"{results['plan']['steps']:,} steps each", fontsize=9)
    return save_png(fig, path)


def plot_curves(results: dict, path: Path) -> Path:
    """Validation bits/char against steps, one panel per family: every candidate (seed 0, thin) and the
    chosen one's seeds (band: their range), with the chosen n-gram's level."""
    from arlm.experiments.plots import new_figure, save_png

    fig = new_figure(10.0, 3.6)
    axes = fig.subplots(1, len(FAMILIES), sharey=True)
    level = results["ngram"]["curve_bits_per_char"]
    for ax, family in zip(axes, FAMILIES, strict=True):
        f = results["families"][family]
        for i, c in enumerate(f["candidates"]):
            steps, bits = zip(*c["curve"], strict=True)
            ax.plot(steps, bits, lw=1, ls="-" if i == f["chosen"] else ":", marker="o", ms=2,
                    color=f"C{i}", label=c["name"] + (" (chosen)" if i == f["chosen"] else ""))
        curves = np.array([r["curve"] for r in f["runs"]], dtype=float)  # (seeds, points, 2)
        ax.fill_between(curves[0, :, 0], curves[:, :, 1].min(0), curves[:, :, 1].max(0),
                        color=f"C{f['chosen']}", alpha=0.2, lw=0, label="chosen: range of seeds")
        ax.axhline(level, color="black", ls="--", lw=1, label=f"{results['ngram']['chosen']}")
        ax.set_title(family, fontsize=9)
        ax.set_xlabel("training step")
        ax.legend(fontsize=6)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel(f"validation bits/char (first {results['data']['curve_lines']:,} lines)")
    return save_png(fig, path)


def plot_positions(results: dict, path: Path) -> Path:
    """Test bits/char against position in the line for each rung (mean of the seeds, band: their
    range), with the n-gram's and the window MLP's reach marked."""
    from arlm.experiments.plots import new_figure, save_png

    fig = new_figure(7.5, 4.2)
    ax = fig.add_subplot()
    for rung in RUNGS:
        profile = _profile(results, rung)  # (seeds, positions)
        x = np.arange(profile.shape[1])
        ax.plot(x, profile.mean(0), color=COLORS[rung], lw=1.3, label=rung)
        if rung != "n-gram":
            ax.fill_between(x, profile.min(0), profile.max(0), color=COLORS[rung], alpha=0.2, lw=0)
    for rung in ("n-gram", "window MLP"):
        c = reach(results, rung)
        if c is not None:
            ax.axvline(c, color=COLORS[rung], ls=":", lw=1)
            ax.text(c, 0.02, f" {rung} reach", transform=ax.get_xaxis_transform(), fontsize=7,
                    va="bottom", color=COLORS[rung])
    body = np.concatenate([_profile(results, r)[:, 2:] for r in RUNGS], axis=None)
    if body.size:  # the first characters of a line cost far more: keep the rest readable
        ax.set_ylim(max(0.0, float(body.min()) - 0.2), float(np.percentile(body, 99)) + 0.3)
    ax.set_xlabel("position in the line (characters already read)")
    ax.set_ylabel("test bits per character")
    ax.set_title("Test NLL by position: mean of the seeds (band: their range)", fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(True, alpha=0.3)
    return save_png(fig, path)

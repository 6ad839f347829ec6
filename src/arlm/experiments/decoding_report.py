"""The decoding experiment's report: tables, Holtzman et al. 2020's Table 1 row by row, three plots and
the sentences that say what reproduces, each written from results.json (so they change with it)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from arlm.experiments.decoding_measures import (
    DETERMINISTIC,
    EXAMPLE_DECODERS,
    HUMAN,
    MAX_PERIOD,
    MIN_LOOP_TOKENS,
    TEMPERATURES,
    TOP_PS,
)
from arlm.experiments.plots import new_figure, save_png
from arlm.experiments.protocol import A_LOWER, B_LOWER, compare_paired, comparison_sentence

# Holtzman et al. 2020, Table 1 (GPT-2 Large, WebText, 200-token continuations): perplexity, Self-BLEU4,
# Zipf coefficient, Repetition % (generations ending in a loop); None: a row this experiment lacks
HOLTZMAN: dict[str, tuple[str | None, float, float, float, float]] = {
    "Human": (HUMAN, 12.38, 0.31, 0.93, 0.28),
    "Greedy": ("greedy", 1.50, 0.50, 1.00, 73.66),
    "Beam, b=16": ("beam 16", 1.48, 0.44, 0.94, 28.94),
    "Stochastic beam, b=16": (None, 19.20, 0.28, 0.91, 0.32),
    "Pure sampling": ("pure sampling", 22.73, 0.28, 0.93, 0.22),
    "Sampling, t=0.9": ("τ=0.9", 10.25, 0.35, 0.96, 0.66),
    "Top-k=40": ("top-k 40", 6.88, 0.39, 0.96, 0.78),
    "Top-k=640": ("top-k 640", 13.82, 0.32, 0.96, 0.28),
    "Top-k=40, t=0.7": ("top-k 40, τ=0.7", 3.48, 0.44, 1.00, 8.86),
    "Nucleus p=0.95": ("top-p 0.95", 13.13, 0.32, 0.95, 0.36),
}
# (column, our measure, Holtzman's tuple index, our value -> Holtzman's scale)
HOLTZMAN_COLUMNS = (("perplexity", "nll", 1, math.exp), ("Self-BLEU4", "self_bleu", 2, lambda v: v / 100),
                    ("Zipf", "zipf", 3, float), ("Repetition %", "ends_in_loop", 4, lambda v: 100 * v))
ABOVE, BELOW, SAME = "above", "below", "not distinguishable from"


def values(results: dict, label: str, key: str) -> list[float]:
    """The per-seed values of one measure (the human row: one value)."""
    if label == HUMAN:
        return [results["human"][key]]
    return [r[key] for r in results["runs"][label] if r.get(key) is not None]


def mean(results: dict, label: str, key: str) -> float:
    v = values(results, label, key)
    return float(np.mean(v)) if v else math.nan


def against_human(results: dict, label: str, key: str) -> str:
    """Where a decoder's measure lies against the human text's: above, below or not distinguishable
    (samplers: the 95 % interval over seeds of decoder − human; deterministic decoders: the exact
    difference, which seeds do not change)."""
    h = results["human"][key]
    v = values(results, label, key)
    if h is None or not v:
        return SAME
    if label in DETERMINISTIC or len(v) < 2:
        d = v[0] - h
        return ABOVE if d > 1e-12 else BELOW if d < -1e-12 else SAME
    c = compare_paired(v, [h] * len(v))
    return {A_LOWER: BELOW, B_LOWER: ABOVE}.get(c.verdict, SAME)


def _theirs_vs_human(index: int, row: tuple) -> str:
    d = row[index] - HOLTZMAN["Human"][index]
    return ABOVE if d > 0 else BELOW if d < 0 else SAME


def holtzman_rows(results: dict) -> list[dict[str, Any]]:
    """Holtzman's Table 1 row by row: per column their value, ours, and whether the direction against
    human text (above / below) is the same."""
    out = []
    for name, row in HOLTZMAN.items():
        label = row[0]
        cells = []
        for column, key, index, scale in HOLTZMAN_COLUMNS:
            ours = None if label is None else mean(results, label, key)
            cell = {"column": column, "theirs": row[index],
                    "ours": None if ours is None or math.isnan(ours) else scale(ours)}
            if label not in (None, HUMAN):
                cell["theirs_dir"] = _theirs_vs_human(index, row)
                cell["ours_dir"] = against_human(results, label, key)
                cell["agrees"] = cell["theirs_dir"] == cell["ours_dir"]
            cells.append(cell)
        out.append({"name": name, "label": label, "cells": cells})
    return out


# ---------------------------------------------------------------------------------------------
# Sentences
# ---------------------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def loop_sentence(results: dict) -> str:
    """Holtzman's central finding: maximisation text ends in loops, human text does not."""
    g, b, h = (mean(results, k, "ends_in_loop") for k in ("greedy", "beam 16", HUMAN))
    gs, bs = (mean(results, k, "loop_share") for k in ("greedy", "beam 16"))
    text = (f"Repetition: {_pct(g)} of greedy and {_pct(b)} of beam-16 continuations end in a loop (a phrase "
            f"of at most {MAX_PERIOD} tokens repeated at least twice over {MIN_LOOP_TOKENS}+ tokens), "
            f"against {_pct(h)} of the human continuations; {_pct(gs)} and {_pct(bs)} of their tokens lie "
            "inside loops. ")
    if g > h and b > h:
        text += ("Maximisation degenerates into repetition, as Holtzman et al. found (73.66 % and 28.94 % "
                 "against 0.28 %)")
        text += (", and greedy loops more often than beam search, as there." if g > b else
                 "; unlike there, beam search loops at least as often as greedy.")
    elif g > h or b > h:
        which = "greedy" if g > h else "beam 16"
        text += f"Only {which} ends in loops more often than human text: the finding reproduces in part."
    else:
        text += ("Neither ends in loops more often than human text: Holtzman et al.'s central finding "
                 "(73.66 % and 28.94 % against 0.28 %) does not reproduce here.")
    return text


CLIMB = 1.1  # "climbs": the last bin's mean probability above the first's by this factor


def figure2_sentence(results: dict) -> str:
    """Holtzman's Figure 2: the per-token probability of beam text climbs and stays above human text's."""
    human_bins = results["human"]["prob_by_position"]
    beam_bins = results["runs"]["beam 16"][0]["prob_by_position"]
    first, last = beam_bins[0], beam_bins[-1]
    above = all(x is not None and y is not None and x > y for x, y in zip(beam_bins, human_bins, strict=True))
    text = (f"Per-token probability (Holtzman et al.'s Figure 2): beam-16 text averages "
            f"{mean(results, 'beam 16', 'mean_token_prob'):.3f} per token against "
            f"{results['human']['mean_token_prob']:.3f} for the human text; along the continuation beam text "
            f"goes from {first:.3f} (first {results['size']['bin']} tokens) to {last:.3f} (last), human text "
            f"from {human_bins[0]:.3f} to {human_bins[-1]:.3f}. ")
    if above and last > CLIMB * first:
        return text + (f"Beam text is more probable than human text at every position and its probability "
                       f"climbs along the text (by more than {CLIMB - 1:.0%}), as in the paper.")
    if above:
        return text + ("Beam text is more probable than human text at every position, but on average its "
                       f"probability does not climb along the text (not by {CLIMB - 1:.0%}), unlike the "
                       "paper's example.")
    return text + ("Beam text is not more probable than human text at every position: the figure does not "
                   "reproduce.")


def nucleus_sentence(results: dict) -> str:
    """Nucleus p = 0.95 against human text in NLL (Holtzman: 13.13 against 12.38 perplexity, above)."""
    v = values(results, "top-p 0.95", "nll")
    h = results["human"]["nll"]
    c = compare_paired(v, [h] * len(v), "top-p 0.95 text", "human text")
    where = {A_LOWER: "below", B_LOWER: "above"}.get(c.verdict)
    text = "NLL under the model: " + comparison_sentence(c, "nats/token") + " "
    if where == "above":
        return text + ("Nucleus text is less probable than human text, as in Holtzman et al. (perplexity "
                       "13.13 against 12.38).")
    if where == "below":
        return text + ("Nucleus text is more probable than human text, the opposite of Holtzman et al.'s "
                       "(13.13 against 12.38): at p = 0.95 this model's nucleus leaves out more of the "
                       "tokens human text uses than GPT-2 Large's does.")
    return text + ("The two are not distinguishable here (Holtzman et al.: nucleus above human, 13.13 "
                   "against 12.38).")


SWEEPS = {"temperature": ["τ=0.5", "τ=0.7", "τ=0.8", "τ=0.9", "pure sampling"],
          "top-p": ["top-p 0.5", "top-p 0.7", "top-p 0.8", "top-p 0.9", "top-p 0.95", "pure sampling"]}
assert len(SWEEPS["temperature"]) == len(TEMPERATURES) + 1 and len(SWEEPS["top-p"]) == len(TOP_PS) + 1


def closest_sentence(results: dict) -> str:
    """Which sampler is closest to human text by each measure, and whether human text lies on the
    frontier (at equal distinct-2, as probable as sampled text)."""
    samplers = [k for k in results["runs"] if k not in DETERMINISTIC]
    parts = []
    for key, name in (("nll", "NLL"), ("distinct_2", "distinct-2"), ("zipf", "Zipf"),
                      ("self_bleu", "Self-BLEU")):
        h = results["human"][key]
        best = min(samplers, key=lambda k: abs(mean(results, k, key) - h))
        parts.append(f"by {name} {best} ({mean(results, best, key):.3f}; human {h:.3f})")
    text = "Closest to human text among the samplers: " + ", ".join(parts) + ". "
    h_d2, h_nll = results["human"]["distinct_2"], results["human"]["nll"]
    for sweep, labels in SWEEPS.items():
        xs = np.array([mean(results, k, "distinct_2") for k in labels])
        ys = np.array([mean(results, k, "nll") for k in labels])
        order = np.argsort(xs)
        if xs.min() <= h_d2 <= xs.max():
            at = float(np.interp(h_d2, xs[order], ys[order]))
            side = "less" if h_nll > at else "more"
            text += (f"On the {sweep} frontier, sampled text as diverse as human text (distinct-2 "
                f"{h_d2:.3f}) has "
                     f"an NLL of {at:.3f}: human text ({h_nll:.3f}) is {side} probable than it. ")
        else:
            text += (f"The {sweep} sweep spans distinct-2 {xs.min():.3f}–{xs.max():.3f}, and human text "
                     f"({h_d2:.3f}) lies outside it. ")
    return text.strip()


def non_word_sentence(results: dict) -> str:
    h = results["human"]["non_word_rate"]
    p = mean(results, "pure sampling", "non_word_rate")
    g = mean(results, "greedy", "non_word_rate")
    return (f"Non-words (words absent from the training split, left out of distinct-n): {_pct(h)} of the "
            f"human words (names and words the training plays lack), {_pct(p)} of pure sampling's, "
            f"{_pct(g)} of greedy's" + (": sampling's tail invents words the model spells from subwords."
                                          if p > h else "."))


def row_sentence(row: dict[str, Any]) -> str:
    """One Holtzman row: which directions against human text reproduce."""
    cells = [c for c in row["cells"] if "agrees" in c and c["theirs_dir"] != SAME]
    if row["label"] is None:
        return f"{row['name']}: not run (decode/ has no stochastic beam search)."
    ok = [c["column"] for c in cells if c["agrees"]]
    bad = [f"{c['column']} ({c['ours_dir']} human here, {c['theirs_dir']} "
        f"there)" for c in cells if not c["agrees"]]
    return (f"{row['name']}: {len(ok)} of {len(cells)} directions against human text reproduce"
            + (f" ({', '.join(ok)})" if ok else "") + (f"; not {'; '.join(bad)}" if bad else "") + ".")


def findings(results: dict) -> list[str]:
    """Every conclusion of the report, written from the numbers."""
    return [loop_sentence(results), figure2_sentence(results), nucleus_sentence(results),
            closest_sentence(results), non_word_sentence(results)]


# ---------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------


def _xy(results: dict, label: str, key: str) -> tuple[float, float]:
    s = results["summary"][label].get(key, {}) if label != HUMAN else {}
    std = s.get("std")
    return mean(results, label, key), (0.0 if std is None or math.isnan(std) else std)


def plot_frontier(results: dict, path: Path) -> Path:
    """NLL against diversity: the temperature and top-p sweeps as lines, the other decoders as points,
    human text as a star. Left: every decoder (greedy and beam search far off); middle and right: the
    samplers alone, against distinct-2 over known words and against Self-BLEU-4, sweep points labelled."""
    fig = new_figure(15.0, 4.8)
    axes = fig.subplots(1, 3)
    others = [k for k in results["runs"] if not any(k in v for v in SWEEPS.values())]
    panels = ((axes[0], "distinct_2", "distinct-2 over known words (higher: more diverse)", True),
              (axes[1], "distinct_2", "distinct-2 over known words (higher: more diverse)", False),
              (axes[2], "self_bleu", "Self-BLEU-4 over words, 0–100 (lower: more diverse)", False))
    for ax, key, xlabel, overview in panels:
        for i, (sweep, labels) in enumerate(SWEEPS.items()):
            pts = [(_xy(results, k, key), _xy(results, k, "nll")) for k in labels]
            xs, ys = [p[0][0] for p in pts], [p[1][0] for p in pts]
            ax.errorbar(xs, ys, xerr=[p[0][1] for p in pts], yerr=[p[1][1] for p in pts], color=f"C{i}",
                        marker="o", ms=4, lw=1.2, capsize=2, label=f"{sweep} sweep")
            for k, x, y in zip(labels, xs, ys, strict=True):
                if overview:
                    continue
                tag = k.replace("top-p ", "p=").replace("pure sampling", "τ=1" if i == 0 else "p=1")
                ax.annotate(tag, (x, y), fontsize=7, color=f"C{i}", textcoords="offset points",
                            xytext=(-6, 7) if i == 0 else (6, -11), ha="right" if i == 0 else "left")
        for j, k in enumerate(others):
            if not overview and k in DETERMINISTIC:
                continue
            (x, dx), (y, dy) = _xy(results, k, key), _xy(results, k, "nll")
            ax.errorbar([x], [y], xerr=[dx], yerr=[dy], marker="sDv^<>"[j % 6], ms=6, ls="none",
                        color=f"C{j + 2}", label=k)
        ax.scatter([results["human"][key]], [results["human"]["nll"]], marker="*", s=160, color="black",
                   zorder=5, label="human text")
        ax.axhline(results["human"]["nll"], color="black", ls=":", lw=0.8)
        ax.margins(x=0.1, y=0.06)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("NLL of the text under the model (nats/token)")
    axes[0].set_title("every decoder (dotted: human NLL)", fontsize=9)
    axes[0].legend(fontsize=7, loc="best")
    axes[1].set_title("the samplers: likelihood against diversity", fontsize=9)
    axes[2].set_title("the samplers: likelihood against self-similarity", fontsize=9)
    return save_png(fig, path)


PLOTTED = ("greedy", "beam 16", "pure sampling", "τ=0.7", "top-p 0.95", "top-k 40")


def _bins(results: dict) -> np.ndarray:
    size = results["size"]
    return np.arange(0, size["new_tokens"], size["bin"]) + size["bin"] / 2


def _mean_series(results: dict, label: str, key: str) -> np.ndarray:
    if label == HUMAN:
        return np.array(results["human"][key], dtype=float)
    rows = np.stack([np.array(r[key], dtype=float) for r in results["runs"][label]])  # (seeds, bins)
    seen = (~np.isnan(rows)).sum(0)
    return np.where(seen > 0, np.nansum(rows, 0) / np.maximum(seen, 1), np.nan)


def plot_repetition(results: dict, path: Path) -> Path:
    """Share of tokens inside loops and of repeated 4-grams, by position in the continuation."""
    fig = new_figure(11.0, 4.2)
    axes = fig.subplots(1, 2, sharex=True)
    x = _bins(results)
    for ax, key, ylabel in ((axes[0], "loop_by_position", "share of tokens inside a loop"),
                            (axes[1], "repeat_by_position", "share of 4-grams seen earlier in the text")):
        for i, label in enumerate((*PLOTTED, HUMAN)):
            human = label == HUMAN
            ax.plot(x, _mean_series(results, label, key), marker="o", ms=3,
                    color="black" if human else f"C{i}", lw=2 if human else 1.2, ls="--" if human else "-",
                    label="human text" if human else label)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(f"position in the continuation (tokens; bins of {results['size']['bin']})")
        ax.set_ylabel(ylabel)
    axes[0].set_title("loops along the text", fontsize=9)
    axes[1].set_title("repeated 4-grams along the text", fontsize=9)
    axes[1].legend(fontsize=7, loc="best")
    return save_png(fig, path)


def plot_token_prob(results: dict, path: Path) -> Path:
    """Holtzman's Figure 2: per-token probability along one continuation (human against beam 16 and
    greedy), and its mean by position over every prompt."""
    fig = new_figure(11.0, 4.2)
    left, right = fig.subplots(1, 2)
    example = {HUMAN: results["human"]["example_probs"],
               **{k: results["runs"][k][0]["example_probs"] for k in DETERMINISTIC}}
    for i, (label, probs) in enumerate(example.items()):
        human = label == HUMAN
        left.plot(np.arange(len(probs)), probs, lw=0.8, color="black" if human else f"C{i - 1}",
                  label="human text" if human else label)
    left.set_ylim(-0.02, 1.02)
    left.set_xlabel("position in the continuation (tokens)")
    left.set_ylabel("p(token | context) under the model")
    left.set_title("one continuation (the first prompt)", fontsize=9)
    left.legend(fontsize=7, loc="best")
    x = _bins(results)
    for i, label in enumerate((*PLOTTED, HUMAN)):
        human = label == HUMAN
        right.plot(x, _mean_series(results, label, "prob_by_position"), marker="o", ms=3,
                   color="black" if human else f"C{i}", lw=2 if human else 1.2, ls="--" if human else "-",
                   label="human text" if human else label)
    right.set_ylim(0, 1)
    right.set_xlabel(f"position in the continuation (tokens; bins of {results['size']['bin']})")
    right.set_ylabel("mean p(token | context)")
    right.set_title(f"mean over {results['prompts']['count']} prompts", fontsize=9)
    right.legend(fontsize=7, loc="best")
    return save_png(fig, path)


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------

COLUMNS = (("NLL (nats/token)", "nll", 3, 1), ("ends in loop (%)", "ends_in_loop", 1, 100),
           ("tokens in loops (%)", "loop_share", 1, 100), ("Self-BLEU-4", "self_bleu", 1, 1),
           ("Zipf", "zipf", 2, 1), ("distinct-1", "distinct_1", 3, 1), ("distinct-2", "distinct_2", 3, 1),
           ("distinct-3", "distinct_3", 3, 1), ("non-words (%)", "non_word_rate", 1, 100),
           ("mean p(token)", "mean_token_prob", 3, 1))


def _cell(results: dict, label: str, key: str, digits: int, scale: float) -> str:
    v = values(results, label, key)
    if not v:
        return "–"
    m = scale * float(np.mean(v))
    if len(v) < 2:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {scale * float(np.std(v, ddof=1)):.{digits}f}"


def _fmt(x: float | None, digits: int) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _quote(text: str, chars: int = 500) -> str:
    body = text[:chars] + ("…" if len(text) > chars else "")
    return "\n".join("> " + line if line.strip() else ">" for line in body.split("\n"))


def render(results: dict, out_dir: Path) -> str:
    """The report's Markdown, with frontier.png, repetition.png and token_prob.png."""
    out_dir = Path(out_dir)
    frontier = plot_frontier(results, out_dir / "frontier.png")
    repetition = plot_repetition(results, out_dir / "repetition.png")
    token_prob = plot_token_prob(results, out_dir / "token_prob.png")
    size, model, seeds = results["size"], results["model"], results["seeds"]
    curve = ", ".join(f"{s:,.0f}: {v:.3f}" for s, v in model["curve"])
    lines = [
        "# Decoding: maximisation, sampling and truncation against human text",
        "",
        "Holtzman et al. 2020 (The Curious Case of Neural Text Degeneration) found that text maximised by "
        "greedy or beam search falls into repeating loops (73.66 % and 28.94 % of their generations, 0.28 % "
        "of human text) and is far more probable under the model than human text, that pure sampling is "
        "less probable than human text, and that nucleus sampling (p = 0.95) comes closest to human text. "
        "Here the same comparison on a small model." + (" **Quick run: a tiny model, a few prompts.**"
                                                         if results["quick"] else ""),
        "",
        "## Setup",
        "",
        f"Model: a Transformer ({model['parameters']:,} parameters; {', '.join(size['model'])}) over a "
        f"{model['tokenizer']} vocabulary trained on the Shakespeare training split, one sequence per play; "
        f"budget {model['steps']:,} steps of {model['batch_tokens']:,} tokens ({', '.join(size['train'])}); "
        f"final training loss {_fmt(model['train_loss'], 3)} nats/token; validation loss by step: {curve} "
        "(nats/token; the budget is fixed, not chosen on these numbers).",
        "",
        f"Prompts: {results['prompts']['count']} windows of the test plays, each starting at a line start, "
        f"evenly spaced: {size['prompt_tokens']} tokens of prompt, then {size['new_tokens']} tokens of the "
        "true continuation (the human row). Every decoder continues every prompt for exactly "
        f"{size['new_tokens']} tokens (no stop at [EOS]); samplers with seeds {', '.join(map(str, seeds))} "
        "(mean ± std over seeds: the spread covers sampling only, one trained model), greedy and beam search "
        "once. Words (lowercase letter runs) feed Self-BLEU, Zipf and distinct-n; a word is known when the "
        "training split has it "
        f"({results['known_words']:,} words); distinct-n counts only n-grams of known words.",
        "",
        "## Every decoder",
        "",
        "| decoder | " + " | ".join(c for c, *_ in COLUMNS) + " |",
        "|---|" + "---:|" * len(COLUMNS),
    ]
    for label in [*results["runs"], HUMAN]:
        cells = " | ".join(_cell(results, label, k, d, s) for _, k, d, s in COLUMNS)
        lines.append(f"| {label} | {cells} |")
    lines += ["", "## Holtzman et al. 2020, Table 1, row by row", "",
              "Theirs: GPT-2 Large (774M parameters), WebText, 200-token continuations of 5,000 prompts. "
              "Ours: the table above. Each cell: ours / theirs, then two arrows, ours first: where the row "
              "lies against human text, ↑ above, ↓ below "
              "(ours: beyond the sampling seeds' 95 % interval, = when not distinguishable), ✓ when the "
              "direction is theirs.", "",
              "| row | " + " | ".join(c for c, *_ in HOLTZMAN_COLUMNS) + " |",
              "|---|" + "---|" * len(HOLTZMAN_COLUMNS)]
    arrows = {ABOVE: "↑", BELOW: "↓", SAME: "="}
    table = holtzman_rows(results)
    for row in table:
        cells = []
        for c, (_, _, _, _) in zip(row["cells"], HOLTZMAN_COLUMNS, strict=True):
            digits = 2 if c["column"] != "Self-BLEU4" else 3
            text = f"{_fmt(c['ours'], digits)} / {c['theirs']:.2f}"
            if "agrees" in c:
                text += f" {arrows[c['ours_dir']]}{arrows[c['theirs_dir']]}" + (" ✓" if c["agrees"] else "")
            cells.append(text)
        lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    lines += ["", *[f"- {row_sentence(row)}" for row in table if row["label"] != HUMAN], "",
              "## What the numbers show", "", *[p for s in findings(results) for p in (s, "")],
              f"![NLL against diversity]({frontier.name})", "",
              f"![repetition along the text]({repetition.name})", "",
              f"![per-token probability]({token_prob.name})", "",
              "## Why it differs from the paper", "",
              why_sentence(results), "",
              "## The first prompt, continued", "",
              "Prompt:", "", _quote(results["prompts"]["prompt_text"]), "",
              "Human continuation:", "", _quote(results["human"]["example"]), ""]
    for label in EXAMPLE_DECODERS:
        lines += [f"{label} (seed {results['runs'][label][0]['seed']}):", "",
                  _quote(results["runs"][label][0]["example"]), ""]
    return "\n".join(lines) + "\n"


def why_sentence(results: dict) -> str:
    """The differences of setting that bear on what does not reproduce, with this run's numbers."""
    m, size = results["model"], results["size"]
    return (f"The model has {m['parameters']:,} parameters (GPT-2 Large: 774M) and saw "
            f"{m['steps'] * m['batch_tokens']:,} training tokens of one author's plays (GPT-2: WebText, "
            "40 GB of web pages); its perplexity on the human continuations is "
            f"{math.exp(results['human']['nll']):.1f} per BPE token (GPT-2 Large on WebText: 12.38 per GPT-2 "
            "token; perplexities over different vocabularies do not compare directly). A weaker model "
            "spreads its probability more thinly: its "
            f"greedy text averages p = {mean(results, 'greedy', 'mean_token_prob'):.2f} per token, and a "
            "given p or k truncates a flatter distribution. Continuations are "
            f"{size['new_tokens']} tokens over a {m['vocab_size']:,}-token vocabulary (theirs: 200 over "
            f"50,257), so top-k = 640 keeps {min(1.0, 640 / m['vocab_size']):.0%} of ours (1.3 % of GPT-2's) "
            f"and top-k = 40 {40 / m['vocab_size']:.1%} (0.08 %). The loop measure here is the one stated "
            "above; Self-BLEU grows with the number of texts compared "
            f"({results['prompts']['count']} here).")

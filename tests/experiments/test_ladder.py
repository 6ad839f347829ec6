"""`arlm experiment ladder --quick`: every rung in bits per character on the same test lines, the tables
in report.md, plots that decode, and `arlm report` re-rendering the same files from results.json."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from arlm.experiments.ladder import QUICK, curve_steps
from cli_helpers import arlm, ok

pytestmark = pytest.mark.slow  # runs the quick experiment once for the module

PLOTS = {"ladder.png": (320, 640), "learning_curves.png": (400, 640), "ngram_orders.png": (340, 800)}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("ladder")
    ok(arlm("experiment", "ladder", "--quick", "--out", "out", "--seed", "1", cwd=work))
    return work / "out"


def test_results_hold_a_bits_per_char_table_keyed_by_model(run):
    data = json.loads((run / "results.json").read_text())
    assert data["experiment"] == "ladder" and data["config"]["quick"] and data["config"]["seed"] == 1
    assert set(data["provenance"]["versions"]) == {"arlm", "torch", "numpy", "python"}
    results = data["results"]
    bpc = results["bits_per_char"]
    word_best, char_best = results["word_ngrams"]["best"]["label"], results["char_ngrams"]["best"]["label"]
    assert list(bpc) == [word_best, char_best, "window MLP", "LSTM", "Transformer"]
    for name, value in bpc.items():
        assert 0.5 < value < math.log2(results["data"]["char_vocab"]), (name, value)
    assert results["data"]["test_lines"] == QUICK.test_lines
    # the word table: MLE is infinite, every smoothed row finite; orders 1..2
    rows = {row["label"]: row for row in results["word_ngrams"]["rows"]}
    assert all(math.isinf(p) for p in rows["MLE (no smoothing)"]["perplexity"])
    assert all(math.isfinite(p) for r in rows.values() if r["smoothing"] != "mle" for p in r["perplexity"])
    # the char n-gram table covers the plan's orders × smoothings; the best one is the summary row
    char = results["char_ngrams"]
    assert char["orders"] == list(QUICK.char_orders)
    assert min(min(r["bits_per_char"]) for r in char["rows"]) == bpc[char_best]
    # learning curves: scored at the planned steps (never chosen by the clock), seconds increasing
    for row, rung in zip(results["neural"], QUICK.rungs, strict=True):
        steps = [p["step"] for p in row["curve"]]
        assert steps == curve_steps(rung.steps, QUICK.curve_fractions)
        seconds = [p["seconds"] for p in row["curve"]]
        assert all(b > a for a, b in itertools.pairwise(seconds))  # more steps took more time
        assert all(math.isfinite(p["bits_per_char"]) for p in row["curve"])
    # the Transformer reads fewer tokens than the longest test line: it is scored with a sliding window
    transformer = next(row for row in results["neural"] if row["name"] == "Transformer")
    assert transformer["model"]["block_size"] < results["data"]["longest_line"]
    against_line = [c for c in results["crossings"] if c["line"] == char_best]
    assert [c["curve"] for c in against_line] == [r.name for r in QUICK.rungs]
    for c, rung in zip(against_line, QUICK.rungs, strict=True):
        assert c["step"] is None or 1 <= c["step"] <= rung.steps


def test_report_holds_the_tables_and_each_plot_decodes(run):
    report = (run / "report.md").read_text()
    for text in ("## Word n-grams: test perplexity", "| modified Kneser-Ney |", "## The ladder",
                 "| Transformer |", "| LSTM |", "| window MLP |", "learning_curves.png", "Reproduce:",
                 "The Transformer reads at most 32 tokens", "sliding window of 32 tokens at a stride of 16"):
        assert text in report, text
    for name, (height, width) in PLOTS.items():
        image = matplotlib.image.imread(run / name)
        assert image.shape[:2] == (height, width), name
        assert np.ptp(image[..., :3]) > 0.5, name  # not blank
        assert (run / name).stat().st_size < 200_000


def test_arlm_report_rerenders_the_same_files(run, tmp_path):
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "results.json").write_bytes(before["results.json"])
    ok(arlm("report", "copy", cwd=tmp_path))
    assert {p.name: p.read_bytes() for p in copy.iterdir()} == before


def test_a_gpu_run_is_reported_in_wall_clock_and_an_overfitting_curve_is_named(run):
    from arlm.experiments.ladder import _verdict

    results = json.loads((run / "results.json").read_text())["results"]
    text = "\n".join(_verdict(results))
    assert "of CPU time" in text and "wall-clock" not in text  # a CPU run: process time
    for row in results["neural"]:
        row["clock"] = "perf_counter"  # as a --device cuda run records it
    lstm = next(r for r in results["neural"] if r["name"] == "LSTM")
    lstm["curve"][-1]["bits_per_char"] = min(p["bits_per_char"] for p in lstm["curve"]) + 0.5
    text = "\n".join(_verdict(results))
    assert "wall-clock time on the GPU" in text and "CPU time" not in text and "CPU thread" not in text
    assert "The LSTM overfits" in text
    for row in results["neural"]:  # the LSTM leads: no advice to use the GPU the run was on
        if row is not lstm:
            row["bits_per_char"] = lstm["bits_per_char"] + 0.1
    text = "\n".join(_verdict(results))
    assert "**The best neural rung is the LSTM**" in text and "--device cuda" not in text

"""The complexity report's fits and sentences follow its numbers: the least-squares fit recovers known
coefficients, the bootstrap interval holds them, and synthetic results.json files in which the
conclusion flips (a crossover inside against beyond the measured range, a quadratic term that is not
there, L* moving with d or not, the Transformer slower or faster than the LSTM, a loaded machine)
give the flipped sentence, through `arlm report`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from arlm.experiments.complexity import SERIES, sweep_name
from arlm.experiments.complexity_fit import (
    CUBIC,
    QUADRATIC,
    bootstrap_fit,
    crossover,
    crossover_status,
    fit_power_law,
    fit_terms,
    sweep_verdict,
)
from arlm.experiments.complexity_report import (
    against_lstm_sentence,
    fit_sentence,
    memory_sentence,
    parallel_sentence,
    sweep_sentence,
)
from arlm.experiments.protocol import load_record
from cli_helpers import arlm, ok

LENGTHS = [32, 64, 128, 256, 512, 1024, 2048]
PLAN = {"lengths": LENGTHS, "nocache_max": 1024, "repeats": 5, "train_rows": 8, "d_model": 64,
        "d_sweep": [32, 64, 128], "n_layer": 2, "n_head": 4, "draws": 300}


def _repeats(coefs: dict[int, float], lengths: list[int], seed: int,
             noise: float = 0.01) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    return [[sum(c * L ** p for p, c in coefs.items()) * float(1 + rng.normal(0, noise)) for _ in range(5)]
            for L in lengths]


def _series(name: str, coefs: dict[int, float], powers, chapter: int, kind: str, lengths=LENGTHS,
            seed: int = 0) -> dict:
    repeats = _repeats(coefs, lengths, seed)
    seconds = [float(np.median(r)) for r in repeats]
    return {"lengths": lengths, "seconds": seconds, "repeats": repeats, "kind": kind,
            "chapter_exponent": chapter, "label": name,
            "fit": bootstrap_fit(lengths, repeats, powers, 300, seed),
            "power_law": fit_power_law(lengths, seconds)}


def synthetic(*, train_c2: float = 1e-8, sweep_c2: tuple[float, float] = (2e-8, 5e-9),
              transformer_speed: float = 3.0, loads: tuple[float, float] = (0.5, 0.6),
              fixed_window_bytes: list[int] | None = None) -> dict:
    """A complete results dict with known costs: the Transformer's training step c₁ = 1e-5 s per token
    and c₂ = ``train_c2`` (L* = c₁/c₂); the sweep's smallest and largest d with c₂ = ``sweep_c2`` (L*
    1e-5/c₂); the LSTM's training step ``transformer_speed`` times faster than the Transformer's at L*
    small; times with 1 % noise."""
    tr = {0: 1e-3, 1: 1e-5, 2: train_c2}
    series = {}
    for i, (name, kind, chapter, label, powers) in enumerate(SERIES):
        coefs = {"train_rnn": {p: c / transformer_speed for p, c in tr.items()},
                 "train_transformer": tr,
                 "score_rnn": {0: 1e-4, 1: 2e-6}, "score_transformer": {0: 1e-4, 1: 1e-6, 2: 1e-10},
                 "generate_rnn": {0: 1e-4, 1: 1e-4}, "generate_kv_cache": {0: 1e-4, 1: 2e-4, 2: 1e-8},
                 "generate_no_cache": {0: 1e-4, 1: 2e-4, 2: 2e-6, 3: 1e-9}}[name]
        lengths = [L for L in LENGTHS if name != "generate_no_cache" or L <= 1024]
        series[name] = _series(label, coefs, powers, chapter, kind, lengths, seed=i)
    for j, (d, c2) in enumerate(zip((32, 128), sweep_c2, strict=True)):
        series[sweep_name(d, _Plan)] = _series(f"training step, Transformer d = {d}",
                                              {0: 1e-3, 1: 1e-5, 2: c2}, QUADRATIC, 2, "sweep", seed=10 + j)
    kv = [2 * 2 * 64 * L * 4 for L in LENGTHS]
    return {"plan": PLAN, "device": "cpu", "threads": 2, "clock": "wall time",
            "models": {"rnn": {"d_hidden": 64}, "transformer": {"n_layer": 2, "n_head": 4, "d_model": 64},
                       "rnn_params": 41536, "transformer_params": 235328},
            "series": series,
            "memory": {"lengths": LENGTHS, "method": "bytes of the distinct storages the state holds",
                       "kv_window_L": kv, "kv_window_L_peak": [None] * len(LENGTHS),
                       "kv_window_max": fixed_window_bytes or [kv[-1] + 2048] * len(LENGTHS),
                       "rnn_state": [512] * len(LENGTHS), "formula": kv,
                       "kv_fit": fit_power_law(LENGTHS, kv)},
            "load": load_record(list(loads), list(loads), cpu_count=2)}


class _Plan:
    d_model = 64


def test_the_fit_recovers_known_coefficients_and_the_crossover():
    L = [32, 64, 128, 256, 512, 1024]
    T = [1e-3 + 1e-5 * n + 1e-8 * n * n for n in L]
    assert fit_terms(L, T, QUADRATIC) == pytest.approx([1e-3, 1e-5, 1e-8], rel=1e-6)
    T3 = [1e-4 + 2e-4 * n + 2e-6 * n**2 + 1e-9 * n**3 for n in L]
    assert fit_terms(L, T3, CUBIC) == pytest.approx([1e-4, 2e-4, 2e-6, 1e-9], rel=1e-5)
    assert crossover([1e-3, 1e-5, 1e-8]) == pytest.approx(1000)
    assert crossover([0, 1e-5, -1e-8]) == float("inf") and crossover([0, -1e-5, 1e-8]) == 0.0


def test_the_bootstrap_interval_holds_the_true_crossover():
    holds = 0
    for seed in range(40):
        fit = bootstrap_fit(LENGTHS, _repeats({0: 1e-3, 1: 1e-5, 2: 1e-8}, LENGTHS, seed, noise=0.03),
                            QUADRATIC, 200, seed)
        lo, hi = fit["crossover_ci"]
        holds += lo <= 1000 <= hi
        assert fit["top_positive"]
    assert holds >= 30  # a 95 % interval of the median's noise; the medians of 5 are coarse


@pytest.mark.parametrize(("c2", "status", "words"), [
    (1e-8, "within", "inside the measured range"),
    (1e-9, "beyond", "beyond the longest L measured (2,048)"),
    (0.0, "unmeasured", "The L² term is not distinguishable from 0"),
    (-2e-9, "negative", "comes out below 0"),
])
def test_the_crossover_sentence_flips_with_the_numbers(c2, status, words):
    results = synthetic(train_c2=c2)
    assert crossover_status(results["series"]["train_transformer"]["fit"], LENGTHS) == status
    assert words in fit_sentence("train_transformer", results)


def test_a_linear_series_with_a_measured_quadratic_term_says_it_is_not_the_chapters():
    results = synthetic(transformer_speed=3.0)
    assert "as the chapter's O(L) says" in fit_sentence("generate_rnn", results)
    assert "not the algorithm's" in fit_sentence("train_rnn", results)  # the LSTM got c₂ = 1e-8 / 3


def test_the_cubic_fit_of_generation_without_a_cache():
    results = synthetic()
    fit = results["series"]["generate_no_cache"]["fit"]
    assert fit["powers"] == list(CUBIC) and fit["crossover"] == pytest.approx(2000, rel=0.1)
    assert "The L³ term is measured" in fit_sentence("generate_no_cache", results)


@pytest.mark.parametrize(("sweep_c2", "verdict", "words"), [
    ((2e-8, 5e-9), "grows", "L* grows with d"),
    ((1e-8, 1e-8), "not distinguishable", "does not show L* moving with d"),
    ((5e-9, 2e-8), "falls", "L* falls as d grows"),
    ((0.0, 5e-9), "unmeasured", "cannot place L* there"),
])
def test_the_sweep_sentence_flips_with_the_numbers(sweep_c2, verdict, words):
    results = synthetic(sweep_c2=sweep_c2)
    points = [(32, results["series"]["train_transformer_d32"]["fit"]),
              (128, results["series"]["train_transformer_d128"]["fit"])]
    assert sweep_verdict(points) == verdict
    assert words in sweep_sentence(results)


@pytest.mark.parametrize(("speed", "words"), [
    (3.0, "slower than the LSTM's at every measured L"),
    (1 / 3, "faster than the LSTM's at every measured L"),
])
def test_the_transformer_against_the_lstm_is_said_from_the_numbers(speed, words):
    text = against_lstm_sentence(synthetic(transformer_speed=speed))
    assert words in text and "wall time at 2 thread(s) on cpu" in text


def test_all_at_once_against_one_at_a_time():
    text = parallel_sentence(synthetic())
    assert "the Transformer loses more by going one position at a time" in text


def test_memory_sentence_flips_when_the_preallocated_cache_varies():
    assert "set by the window, not by the tokens generated" in memory_sentence(synthetic())
    varying = memory_sentence(synthetic(fixed_window_bytes=[1024 * (i + 1) for i in range(len(LENGTHS))]))
    assert "as L varies" in varying and "set by the window" not in varying
    assert "gives the same" in memory_sentence(synthetic())


def _report(tmp_path: Path, results: dict) -> str:
    folder = tmp_path / "cx"
    folder.mkdir()
    provenance = {"load": results["load"]}
    (folder / "results.json").write_text(json.dumps(
        {"experiment": "complexity", "summary": "s", "command": "arlm experiment complexity", "config": {},
         "provenance": provenance, "results": results}))
    ok(arlm("report", str(folder), cwd=tmp_path))
    return (folder / "report.md").read_text()


def _paragraph(report: str, label: str) -> str:
    return next(line for line in report.splitlines() if line.startswith(f"**{label}.**"))


def test_a_synthetic_results_json_renders_and_a_loaded_run_marks_every_speed_figure(tmp_path):
    (tmp_path / "a").mkdir()
    quiet = _report(tmp_path / "a", synthetic())
    assert "(invalid: load > cores)" not in quiet and "L* grows with d" in quiet
    assert "inside the measured range" in _paragraph(quiet, "training step, Transformer")
    (tmp_path / "b").mkdir()
    loaded = _report(tmp_path / "b", synthetic(train_c2=1e-9, loads=(5.0, 6.0)))
    assert "beyond the longest L measured" in _paragraph(loaded, "training step, Transformer")
    assert loaded.count("(invalid: load > cores)") >= 8  # headings, fits, sweep, ratios
    assert "speed figures (seconds, tokens/s) are invalid" in loaded

"""`arlm experiment complexity --quick`: every series timed and fitted, the KV cache's bytes exactly
linear in L, the tables and plots; the power-law fit against exact and noisy synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from arlm.experiments.complexity import QUICK, SERIES, fit_power_law
from cli_helpers import arlm, ok

pytestmark = pytest.mark.slow  # runs the quick experiment once for the module


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("complexity")
    ok(arlm("experiment", "complexity", "--quick", "--out", "out", cwd=work))
    return work / "out"


def test_every_series_is_timed_and_fitted(run):
    results = json.loads((run / "results.json").read_text())["results"]
    assert list(results["series"]) == [name for name, *_ in SERIES]
    for name, series in results["series"].items():
        expected = [L for L in QUICK.lengths if name != "generate_no_cache" or QUICK.nocache_max >= L]
        assert series["lengths"] == expected
        assert all(s > 0 for s in series["seconds"])
        assert all(len(r) == QUICK.repeats for r in series["repeats"])
        assert series["seconds"] == [float(np.median(r)) for r in series["repeats"]]
        fit = series["fit"]
        assert np.isfinite(fit["b"]) and 0 < fit["ci"][1] - fit["ci"][0] < np.inf


def test_kv_cache_bytes_grow_exactly_linearly_and_the_rnn_state_does_not(run):
    results = json.loads((run / "results.json").read_text())["results"]
    memory, tr = results["memory"], results["models"]["transformer"]
    assert memory["kv_cache_bytes"] == [2 * tr["n_layer"] * tr["d_model"] * L * 4 for L in memory["lengths"]]
    assert memory["gpt2_kv_cache_bytes"] == [2 * 12 * 768 * L * 4 for L in memory["lengths"]]
    assert abs(memory["kv_cache_fit"]["b"] - 1.0) < 1e-9
    assert memory["rnn_state_bytes"] == 2 * results["models"]["rnn"]["d_hidden"] * 4  # h and c, fp32


def test_report_tables_and_plots(run):
    report = (run / "report.md").read_text()
    for text in ("| series | chapter | fitted b [95 % CI]", "O(L^3)", "Transformer + KV cache",
                 "## Where the measurement differs from the chapter, and why", "| LSTM state (h, c) |"):
        assert text in report, text
    for name, shape in (("complexity.png", (400, 900)), ("kv_cache.png", (360, 640))):
        image = matplotlib.image.imread(run / name)
        assert image.shape[:2] == shape and np.ptp(image[..., :3]) > 0.5, name


def test_power_law_fit_recovers_exact_and_noisy_exponents():
    lengths = [64, 128, 256, 512, 1024, 2048]
    exact = fit_power_law(lengths, [3.0 * L**2 for L in lengths])
    assert exact["b"] == pytest.approx(2.0) and exact["a"] == pytest.approx(3.0)
    assert exact["ci"][1] - exact["ci"][0] < 1e-9 and exact["local_b"] == pytest.approx(2.0)
    rng = np.random.default_rng(0)
    holds = 0
    for _ in range(200):  # the 95 % interval holds the true exponent about 95 % of the time
        noisy = [1e-6 * L**1.5 * float(np.exp(rng.normal(0, 0.2))) for L in lengths]
        lo, hi = fit_power_law(lengths, noisy)["ci"]
        holds += lo <= 1.5 <= hi
    assert 180 <= holds <= 198
    two = fit_power_law([10, 100], [1.0, 10.0])
    assert two["b"] == pytest.approx(1.0) and two["ci"] is None

"""`arlm experiment complexity --quick`: every series timed (alternating, every repeat kept) and fitted
with bootstrap intervals, the sweep over d, memory measured after real generations (the KV cache of a
window-L model equal to 2·n_layer·d·L·4 bytes, the preallocated cache and the LSTM's state constant), the
load recorded, the report re-rendered byte for byte from results.json, the plots; `--device cuda`
refused in one line where there is no GPU."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch

from arlm.experiments.complexity import QUICK, SERIES, held_bytes, sweep_name
from arlm.models.rnn import RNNLM, RNNConfig
from arlm.models.transformer import TransformerConfig, TransformerLM
from cli_helpers import arlm, ok, only_an_error


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("complexity")
    ok(arlm("experiment", "complexity", "--quick", "--out", "out", "--threads", "2", cwd=work))
    return work / "out"


def _results(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())["results"]


@pytest.mark.slow
def test_every_series_is_timed_and_fitted(run):
    results = _results(run)
    names = [name for name, *_ in SERIES]
    names += [sweep_name(d, QUICK) for d in QUICK.d_sweep if d != QUICK.d_model]
    assert list(results["series"]) == names
    assert results["threads"] == 2 and results["device"] == "cpu"
    for name, series in results["series"].items():
        expected = [L for L in QUICK.lengths if name != "generate_no_cache" or QUICK.nocache_max >= L]
        assert series["lengths"] == expected
        assert all(len(r) == QUICK.repeats and min(r) > 0 for r in series["repeats"])
        assert series["seconds"] == [float(np.median(r)) for r in series["repeats"]]
        fit = series["fit"]
        terms = 4 if name == "generate_no_cache" else 3
        assert len(fit["coefs"]) == len(fit["coef_ci"]) == len(fit["powers"]) == terms
        for (lo, hi) in fit["coef_ci"]:
            assert lo is not None and hi is not None and lo <= hi
    load = results["load"]
    assert load["cpu_count"] and len(load["start"]) == 3 and load["speed_valid"] in (True, False)


@pytest.mark.slow
def test_memory_is_measured_after_generation(run):
    results = _results(run)
    memory, tr, n = results["memory"], results["models"]["transformer"], len(QUICK.lengths)
    assert memory["kv_window_L"] == [2 * tr["n_layer"] * tr["d_model"] * L * 4 for L in memory["lengths"]]
    assert memory["kv_window_L"] == memory["formula"]
    window = max(QUICK.lengths) + 1
    assert memory["kv_window_max"] == [2 * tr["n_layer"] * tr["d_model"] * window * 4] * n
    assert memory["rnn_state"] == [2 * results["models"]["rnn"]["d_hidden"] * 4] * n
    assert "distinct storages" in memory["method"]


def test_held_bytes_counts_views_once_and_sees_what_a_state_holds():
    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(vocab_size=16, block_size=10, n_layer=2, n_head=2, d_model=8))
    cache = model.start(1)
    cache.layers()  # views of k and v: not counted again
    assert held_bytes(cache) == 2 * 2 * 10 * 8 * 4
    _, cache = model.step(torch.ones(1, 3, dtype=torch.long), cache)
    assert held_bytes(cache) == 2 * 2 * 10 * 8 * 4  # preallocated: filling it allocates nothing
    rnn = RNNLM(RNNConfig(vocab_size=16, cell="lstm", d_embed=8, d_hidden=8))
    assert held_bytes(rnn.start(3)) == 2 * 3 * 8 * 4
    assert held_bytes({"a": [torch.zeros(5)], "b": (torch.zeros(2, dtype=torch.float64),)}) == 5 * 4 + 2 * 8


@pytest.mark.slow
def test_report_tables_plots_and_re_rendering(run):
    report = (run / "report.md").read_text()
    for text in ("| series | chapter | c₀ (s) | c₁ (s) | c₂ (s) | c₃ (s) | L* [95 %] | b [95 %] |",
                 "## The crossover against the width d (training step)",
                 "All positions at once against one at a time", "| KV cache, window L (measured) |",
                 "| LSTM state (measured) |", "Load average (1 min)",
                 "wall time on cpu at 2 torch thread(s)"):
        assert text in report, text
    pngs = {name: (run / name).read_bytes() for name in ("complexity.png", "crossover.png", "kv_cache.png")}
    for name in pngs:
        image = matplotlib.image.imread(run / name)
        assert image.shape[0] > 300 and np.ptp(image[..., :3]) > 0.5, name
    (run / "report.md").unlink()
    ok(arlm("report", str(run), cwd=run.parent))
    assert (run / "report.md").read_text() == report  # a pure function of results.json
    assert {name: (run / name).read_bytes() for name in pngs} == pngs


@pytest.mark.slow
def test_cuda_runs_where_there_is_a_gpu_and_is_refused_in_one_line_where_there_is_none(tmp_path):
    result = arlm("experiment", "complexity", "--quick", "--device", "cuda", "--out", "out", cwd=tmp_path)
    if not torch.cuda.is_available():
        only_an_error(result, "CUDA is not available")
        assert not (tmp_path / "out").exists()
        return
    ok(result)
    results = _results(tmp_path / "out")
    assert results["device"].startswith("cuda (") and "CUDA allocator" in results["memory"]["method"]
    assert results["memory"]["kv_window_L"][-1] >= results["memory"]["formula"][-1]
    assert all(p is not None for p in results["memory"]["kv_window_L_peak"])

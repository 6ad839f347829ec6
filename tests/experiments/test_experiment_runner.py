"""The experiment runner: results.json with provenance, report.md and plots, re-rendered byte for byte
from results.json alone, and the bad inputs that it refuses before anything is written."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch

from arlm.data.tokenizers import WordTokenizer
from arlm.errors import ConfigError, DataError, MismatchError
from arlm.experiments import EXPERIMENTS, ExperimentConfig
from arlm.experiments.plots import new_figure, save_png
from arlm.experiments.runner import read_results, render_report, run_experiment
from arlm.models.ngram import NGramModel
from arlm.usecases.checkpoints import save_model
from cli_helpers import arlm, ok, one_line_error


def _fake_module(name: str, families=None) -> types.ModuleType:
    """A tiny experiment: draws seeded numbers, a table and one plot."""
    module = types.ModuleType(name)
    module.NAME = "fake"
    module.SUMMARY = "A fake experiment for testing the runner."
    if families is not None:
        module.CHECKPOINT_FAMILIES = families

    def run(config: ExperimentConfig) -> dict:
        values = torch.rand(3, generator=torch.Generator().manual_seed(config.seed)).tolist()
        return {"values": values, "quick": config.quick}

    def render(results: dict, out_dir: Path) -> str:
        fig = new_figure(4, 3)
        fig.add_subplot().plot(results["values"])
        save_png(fig, out_dir / "values.png")
        rows = "\n".join(f"| {i} | {v:.6f} |" for i, v in enumerate(results["values"]))
        return f"## Values\n\n| i | value |\n|---|---:|\n{rows}\n\n![values](values.png)\n"

    module.run, module.render = run, render
    return module


@pytest.fixture
def fake(monkeypatch):
    """Register the fake experiment as `fake` (and `fake-needs-transformer`, which takes a checkpoint)."""
    for name, families in (("fake", ()), ("fake-needs-transformer", ("transformer",))):
        module_name = f"_arlm_test_{name.replace('-', '_')}"
        monkeypatch.setitem(sys.modules, module_name, _fake_module(module_name, families))
        monkeypatch.setitem(EXPERIMENTS, name, module_name)


def test_run_writes_results_with_provenance_report_and_plot(fake, tmp_path):
    out = run_experiment("fake", ExperimentConfig(out=tmp_path / "f", seed=3, show_progress=False))
    data = read_results(out)
    assert data["experiment"] == "fake" and data["config"]["seed"] == 3
    assert set(data["provenance"]["versions"]) == {"arlm", "torch", "numpy", "python"}
    machine = data["provenance"]["machine"]
    assert machine["device"] == "cpu" and machine["torch_threads"] == 1 and machine["cpu_count"] >= 1
    assert data["provenance"]["date"] and "arlm experiment fake" in data["command"]
    values = torch.rand(3, generator=torch.Generator().manual_seed(3)).tolist()
    assert data["results"]["values"] == values
    report = (out / "report.md").read_text()
    assert report.startswith("# Experiment `fake`") and f"| 0 | {values[0]:.6f} |" in report
    image = matplotlib.image.imread(out / "values.png")
    assert image.shape[:2] == (300, 400) and np.ptp(image[..., :3]) > 0


def test_report_rerenders_identically_from_results_alone(fake, tmp_path):
    out = run_experiment("fake", ExperimentConfig(out=tmp_path / "f", show_progress=False))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / "report.md").unlink()
    (out / "values.png").unlink()
    render_report(out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_rerunning_into_its_own_folder_is_fine_another_experiments_folder_is_refused(fake, tmp_path):
    out = tmp_path / "f"
    run_experiment("fake", ExperimentConfig(out=out, seed=1, show_progress=False))
    run_experiment("fake", ExperimentConfig(out=out, seed=2, show_progress=False))
    assert read_results(out)["config"]["seed"] == 2
    held = (out / "results.json").read_bytes()
    with pytest.raises(ConfigError, match="holds the results of experiment 'fake'"):
        run_experiment("fake-needs-transformer", ExperimentConfig(out=out, show_progress=False))
    assert (out / "results.json").read_bytes() == held


def test_a_checkpoint_of_the_wrong_kind_is_refused(fake, tmp_path):
    tokenizer = WordTokenizer.from_vocab(["a", "b", "c"])
    ids = np.array([1, 4, 5, 6, 2] * 10)  # [SOS] a b c [EOS]
    save_model(tmp_path / "ng", NGramModel.fit(ids, order=2, vocab=tokenizer.vocab, smoothing="add-k"),
               tokenizer)
    with pytest.raises(MismatchError, match=r"holds a 'ngram' model.*needs a transformer model"):
        run_experiment("fake-needs-transformer",
                       ExperimentConfig(out=tmp_path / "x", checkpoint=tmp_path / "ng", show_progress=False))
    with pytest.raises(ConfigError, match="takes no --checkpoint"):
        run_experiment("fake", ExperimentConfig(out=tmp_path / "x", checkpoint=tmp_path / "ng",
                                                show_progress=False))
    with pytest.raises(DataError, match="does not exist"):
        run_experiment("fake", ExperimentConfig(out=tmp_path / "x", checkpoint=tmp_path / "nope",
                                                show_progress=False))
    assert not (tmp_path / "x").exists()


def test_unknown_experiment_and_a_missing_module_name_the_known_ones(fake, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"unknown experiment 'nope'; choose one of .*ladder"):
        run_experiment("nope", ExperimentConfig(out=tmp_path / "x"))
    monkeypatch.setitem(EXPERIMENTS, "gone", "arlm.experiments._no_such_module")
    with pytest.raises(ConfigError, match="not in this build"):
        run_experiment("gone", ExperimentConfig(out=tmp_path / "x"))


# ----- the command line ---------------------------------------------------------------------------


def test_cli_bad_inputs_are_one_line_errors(tmp_path):
    one_line_error(arlm("experiment", "nope", cwd=tmp_path), "unknown experiment", "ladder")
    one_line_error(arlm("experiment", "ladder", "--threads", "0", cwd=tmp_path), "--threads")
    one_line_error(arlm("experiment", "ladder", "--device", "tpu", cwd=tmp_path), "device")
    if not torch.cuda.is_available():
        one_line_error(arlm("experiment", "ladder", "--device", "cuda", cwd=tmp_path), "cuda")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "results.json").write_text(json.dumps({"experiment": "complexity", "results": {}}))
    one_line_error(arlm("experiment", "ladder", "--quick", "--out", "other", cwd=tmp_path),
                   "complexity", "another folder")
    one_line_error(arlm("experiment", "ladder", "--checkpoint", "other", cwd=tmp_path), "no --checkpoint")
    one_line_error(arlm("report", "missing", cwd=tmp_path), "results.json")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "results.json").write_text("{not json")
    one_line_error(arlm("report", "broken", cwd=tmp_path), "not readable JSON")
    (tmp_path / "broken" / "results.json").write_text(json.dumps(
        {"experiment": "complexity", "results": {}, "provenance": "x"}))
    one_line_error(arlm("report", "broken", cwd=tmp_path), "'provenance' field is not an object")
    (tmp_path / "broken" / "results.json").write_text(json.dumps({"experiment": "complexity", "results": {}}))
    one_line_error(arlm("report", "broken", cwd=tmp_path), "lacks what the complexity report needs")
    assert not (tmp_path / "broken" / "report.md").exists()  # nothing half-written
    assert not (tmp_path / "runs").exists()


def test_cli_lists_the_experiments(tmp_path):
    listing = ok(arlm("experiment", "--list", cwd=tmp_path))
    for name in ("ladder", "complexity"):
        assert name in listing
    assert "ladder" in ok(arlm("experiment", "--help", cwd=tmp_path))

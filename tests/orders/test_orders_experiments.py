"""The orders-text experiment in quick mode (orders-images: tests/experiments/test_orders_images.py),
called as the runner will (run, then render from the results alone): JSON-ready numbers in range, an
exact model equal in every order, PNGs that decode and are not blank, and the same seed giving the same
numbers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from arlm.experiments import EXPERIMENTS, ExperimentConfig, experiment_module

pytestmark = pytest.mark.slow  # runs the quick orders experiments


def _png_ok(path) -> None:
    with Image.open(path) as im:
        pixels = np.asarray(im.convert("L"), dtype=np.float64)
    assert pixels.shape[0] > 50 and pixels.shape[1] > 50 and pixels.std() > 5


def _run(name, tmp_path, monkeypatch):
    monkeypatch.setenv("ARLM_CACHE", str(tmp_path / "cache"))
    module = experiment_module(name)
    results = module.run(ExperimentConfig(out=tmp_path, quick=True, seed=0, show_progress=False))
    results = json.loads(json.dumps(results))  # JSON-ready, and render reads only what JSON keeps
    report = module.render(results, tmp_path)
    return module, results, report


@pytest.mark.usefixtures("one_thread")
def test_orders_text_quick(tmp_path, monkeypatch):
    assert "orders-text" in EXPERIMENTS
    module, results, report = _run("orders-text", tmp_path, monkeypatch)
    exact = results["exact"]["bits_per_char"]
    assert set(exact) == {"l2r", "r2l", "fixed-random"}
    assert max(exact.values()) - min(exact.values()) < 1e-9
    seeds = results["seeds"]
    for arm, a in results["arms"].items():
        assert [r["seed"] for r in a["runs"]] == seeds
        for r in a["runs"]:
            assert 0 < r["bits_per_char"] < math.log2(200)
            assert [step for step, _ in r["curve"]] == [6, 12]  # validation at every eval_interval
        if arm.startswith("σ-GPT"):
            assert 0 < a["summary"]["random_orders"]["mean"] < math.log2(200)
    record = results["protocol"]
    assert record["test_reads"] == 1 and record["budget"]["unit"] == "steps"
    assert set(record["budget"]["per_arm"]) == set(module.ARMS)
    c = results["comparisons"]["σ-GPT l2r − Transformer l2r"]
    sigma = [r["bits_per_char"] for r in results["arms"]["σ-GPT"]["runs"]]
    l2r = [r["bits_per_char"] for r in results["arms"]["Transformer l2r"]["runs"]]
    assert c["ratio"] == pytest.approx(np.mean(sigma) / np.mean(l2r))
    assert c["difference"]["mean"] == pytest.approx(np.mean(sigma) - np.mean(l2r))
    # the sentences follow the numbers: a curriculum made clearly better, then clearly worse
    for shift, words in ((-0.5, "The curriculum closes"), (+0.5, "does not close the gap")):
        flipped = json.loads(json.dumps(results))
        for r, base in zip(flipped["arms"]["σ-GPT"]["runs"], l2r, strict=True):
            r["bits_per_char"] = base + 1.0 + 0.01 * r["seed"]  # σ-GPT clearly behind
        for r, base in zip(flipped["arms"]["σ-GPT + curriculum"]["runs"], l2r, strict=True):
            r["bits_per_char"] = base + 1.0 + shift + 0.02 * r["seed"]
        flipped["comparisons"] = module.comparisons(flipped["arms"])
        assert words in " ".join(module.findings(flipped))
    assert "orders_text.png" in report and module.NAME == "orders-text"
    _png_ok(tmp_path / "orders_text.png")
    _png_ok(tmp_path / "learning_curves.png")
    # the same seed, the same numbers
    again = json.loads(json.dumps(module.run(ExperimentConfig(out=tmp_path, quick=True, seed=0))))
    assert again == results


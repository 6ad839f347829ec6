"""The orders-images experiment: its scoring equals the models' own log-probabilities, the quick run's
protocol (checkpoints and best orders chosen on validation, the test digits read once, equal budgets),
the mixtures' bounds, the same numbers for any worker count, and sentences that flip with the numbers."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from arlm.data.images import digits
from arlm.experiments import ExperimentConfig
from arlm.experiments import orders_images as oi
from arlm.experiments.protocol import Protocol, ProtocolError
from arlm.models.sigma_gpt import SigmaGPT, SigmaGPTConfig
from arlm.models.transformer import TransformerConfig, TransformerLM
from experiment_helpers import quick_run

VOCAB = 21  # 4 special tokens + 17 grey levels


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    return oi.image_rows(digits("val").images[:6])  # (6, 66)


@pytest.fixture(scope="module")
def sigma() -> SigmaGPT:
    torch.manual_seed(0)
    return SigmaGPT(SigmaGPTConfig(vocab_size=VOCAB, block_size=66, n_layer=1, n_head=2, d_model=16)).eval()


def test_sigma_scores_equal_its_log_prob(sigma, rows):
    order = oi.permutations(3)[2]  # Z-order
    expected = -sigma.log_prob(torch.as_tensor(rows), torch.as_tensor(order), known_length=False)
    assert np.allclose(oi.order_nlls(sigma, "sigma_gpt", rows, order), expected.detach().double().numpy())


def test_a_left_to_right_model_reads_the_pixels_in_the_order_given(rows):
    from arlm.evaluate.orders import sequence_nlls

    torch.manual_seed(0)
    model = TransformerLM(TransformerConfig(vocab_size=VOCAB, block_size=66, n_layer=1, n_head=2,
                                            d_model=16)).eval()
    snake = oi.permutations(0)[1]
    reordered = rows.copy()
    reordered[:, 1:-1] = rows[:, 1:-1][:, snake]
    snake_nlls = oi.order_nlls(model, "transformer", rows, snake)
    assert np.allclose(snake_nlls, sequence_nlls(model, reordered.ravel()))
    raster = oi.order_nlls(model, "transformer", rows, list(range(oi.PIXELS)))
    assert np.allclose(raster, sequence_nlls(model, rows.ravel()))


def test_infilling_scores_the_hidden_half_given_the_visible_half(sigma, rows):
    # bottom given top: raster order already reads the visible half first
    assert np.allclose(oi.infill_nll(sigma, "sigma_gpt", rows, oi.MASKS[0], True),
                       oi.infill_nll(sigma, "sigma_gpt", rows, oi.MASKS[0], False))
    # left given right: visible (right) half first; hidden + visible terms = the whole image in that order
    grid = np.arange(oi.PIXELS).reshape(8, 8)
    order = [*grid[:, 4:].ravel().tolist(), *grid[:, :4].ravel().tolist()]
    lp = oi.step_log_probs(sigma, rows, order)  # (6, 65)
    hidden = oi.infill_nll(sigma, "sigma_gpt", rows, oi.MASKS[1], True)
    assert np.allclose(hidden, -lp[:, 32:64].sum(1))
    assert np.allclose(hidden - lp[:, :32].sum(1) - lp[:, 64], oi.order_nlls(sigma, "sigma_gpt", rows, order))


def test_the_fixed_random_order_is_the_seeds():
    perms = oi.permutations(5)
    assert [sorted(p) for p in perms] == [list(range(64))] * 5
    assert perms[0] == list(range(64)) and perms[4] == oi.permutations(5)[4] != oi.permutations(6)[4]


def test_the_test_digits_are_guarded():
    protocol = Protocol({"val": "digits/val", "test": oi.TestDigits()})
    with pytest.raises(ProtocolError):
        _ = protocol.split("test").images
    with protocol.final_test() as test:
        assert np.asarray(test.images).shape[1:] == (8, 8)


# ---------------------------------------------------------------------------------------------
# The quick run
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    return quick_run(oi, tmp_path_factory.mktemp("orders_images"))


def _png_ok(path) -> None:
    with Image.open(path) as im:
        pixels = np.asarray(im.convert("L"), dtype=np.float64)
    assert pixels.shape[0] > 50 and pixels.shape[1] > 50 and pixels.std() > 5


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_quick_run_protocol_and_bounds(quick):
    results, body, out = quick
    record = results["protocol"]
    assert record["test_reads"] == 1 and record["chosen_on"] == "val"
    assert set(record["budget"]["per_arm"]) == set(oi.ARMS)
    assert len(set(record["budget"]["per_arm"].values())) == 1
    for label in (*oi.FAMILIES, oi.SHARED):
        assert record["choices"][f"best order, {label}"] == results["best_order"][label]
    seeds = results["seeds"]
    for arm, runs in results["arms"].items():
        assert [r["seed"] for r in runs] == seeds
        for r in runs:
            steps = [s for s, _ in r["curve"]]
            assert steps == [4, 8] and r["best_step"] in steps
            assert r["val_bits_per_dim"] == min(v for _, v in r["curve"])  # the kept checkpoint's
            assert record["choices"][f"checkpoint step, {arm}, seed {r['seed']}"] == r["best_step"]
            assert 0 < r["bits_per_dim"] < math.log2(VOCAB)
    for i in range(len(seeds)):
        shared = results["arms"][oi.SHARED][i]
        assert shared["mixture"] <= np.mean(shared["per_order"]) + 1e-9  # Jensen
        assert shared["mixture"] >= min(shared["per_order"]) - math.log2(5) / 64 - 1e-9
        for label in oi.FAMILIES:
            each = [results["arms"][f"{label} {o}"][i]["bits_per_dim"] for o in oi.PIXEL_ORDERS]
            mixture = results["mixtures"][label][i]
            assert min(each) - math.log2(5) / 64 - 1e-9 <= mixture <= np.mean(each) + 1e-9
    bottom = results["infill"][oi.MASKS[0]]
    assert bottom[oi.INFILL_SIGMA] == pytest.approx(bottom["σ-GPT random, raster order"])
    pics = results["infill_pictures"]
    originals = np.asarray(pics["originals"])
    for name in ("Transformer raster", oi.RANDOM):
        filled = np.asarray(pics[name]).reshape(len(originals), -1, 8, 8)
        assert (filled[:, :, :4] == originals[:, None, :4]).all()  # the top half is kept
    for png in ("bits_per_dim.png", "curves.png", "infill.png", "infill_samples.png", "samples.png"):
        assert f"({png})" in body
        _png_ok(out / png)
    assert oi.render(json.loads(json.dumps(results)), out) == body  # a pure function of results.json


@pytest.mark.slow
def test_the_same_numbers_with_two_workers(quick, tmp_path):
    results, _, _ = quick
    threads = torch.get_num_threads()
    try:
        again = oi.run(ExperimentConfig(out=tmp_path, quick=True, threads=2, show_progress=False))
    finally:
        torch.set_num_threads(threads)
    assert again["workers"] == 2 and results["workers"] == 1
    again["workers"] = 1
    assert json.loads(json.dumps(again)) == json.loads(json.dumps(results))


# ---------------------------------------------------------------------------------------------
# Flip tests: synthetic results, the sentences follow the numbers
# ---------------------------------------------------------------------------------------------


def synthetic(shared_mixture_shift: float, lstm_shift: float) -> dict:
    """Results with 3 seeds: every arm at 2.0 bits/dim (+ a small seed term), the shared σ-GPT's
    mixture ``shared_mixture_shift`` from its best order, every LSTM ``lstm_shift`` from its Transformer."""
    seeds = [0, 1, 2]

    def run(base: float, seed: int) -> dict:
        return {"seed": seed, "bits_per_dim": base + 0.01 * seed, "best_step": 100, "stopped_at": 100,
                "val_bits_per_dim": base, "train_bits_per_dim": base - 0.1, "parameters": 1000,
                "curve": [[100, base]]}

    arms = {}
    for o in oi.PIXEL_ORDERS:
        arms[f"Transformer {o}"] = [run(2.0, s) for s in seeds]
        arms[f"LSTM {o}"] = [run(2.0 + lstm_shift, s) for s in seeds]
    arms[oi.SHARED] = [{**run(2.0, s), "per_order": [2.0 + 0.01 * s + 0.001 * s * s] * 5,
                        "mixture": 2.0 + 0.01 * s + shared_mixture_shift + 0.002 * s} for s in seeds]
    arms[oi.RANDOM] = [run(2.5, s) for s in seeds]
    methods = (oi.INFILL_SIGMA, "σ-GPT random, raster order", "Transformer raster", "LSTM raster")
    infill = {m: {k: [1.0 + 0.01 * s + 0.003 * s * s for s in seeds] for k in methods} for m in oi.MASKS}
    return {"seeds": seeds, "arms": arms, "max_steps": 100, "patience": 3, "infill": infill,
            "mixtures": {label: [2.0 + 0.01 * s for s in seeds] for label in oi.FAMILIES},
            "best_order": {"Transformer": "raster", "LSTM": "raster", oi.SHARED: "raster"}}


def test_the_sentences_flip_with_the_numbers():
    better, worse = synthetic(-0.05, -0.3), synthetic(+0.05, +0.3)
    text_better, text_worse = " ".join(oi.findings(better)), " ".join(oi.findings(worse))
    assert "the shared model's mixture beats its best order too" in text_better
    assert "the shared model's mixture is worse than its best order" in text_worse
    assert "the LSTM is lower in 5, the Transformer in 0" in text_better
    assert "the LSTM is lower in 0, the Transformer in 5" in text_worse
    assert "still improving" in oi.convergence_sentence(better)
    early = copy.deepcopy(better)
    for runs in early["arms"].values():
        for r in runs:
            r["best_step"] = 50
    assert "stopped improving before the budget ended" in oi.convergence_sentence(early)

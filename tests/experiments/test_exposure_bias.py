"""The exposure-bias experiment (F11): the oracle's distributions, KL zero for a student equal to the oracle,
schedules that reach their target, the quick run's fields, report and plots."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from arlm.experiments import ExperimentConfig
from arlm.experiments import exposure_bias as eb
from arlm.train.trainer import TrainConfig
from experiment_helpers import quick_run

SETUP = eb.QUICK


# slow: runs the quick experiment once for the module
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]  # tiny models on a shared small CPU


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    return quick_run(eb, tmp_path_factory.mktemp("exposure_bias"))


def test_distributions_over_real_tokens_sum_to_one():
    oracle = eb.build_oracle(SETUP, 0)
    seqs = eb.sample(oracle, 50, SETUP.length, 0)
    assert seqs.shape == (50, SETUP.length)
    assert int(seqs.min()) >= eb.NUM_SPECIAL and int(seqs.max()) < eb.NUM_SPECIAL + SETUP.vocab
    lp = eb.real_log_probs(oracle, seqs)
    assert lp.shape == (50, SETUP.length, SETUP.vocab)
    assert torch.allclose(lp.exp().sum(-1), torch.ones(50, SETUP.length, dtype=torch.float64))


def test_samples_follow_the_oracles_distribution():
    """The first token's empirical distribution matches p(x_1 | [SOS]) (total variation < 0.02)."""
    oracle = eb.build_oracle(SETUP, 0)
    seqs = eb.sample(oracle, 20_000, 1, 5)
    freq = np.bincount(seqs[:, 0].numpy() - eb.NUM_SPECIAL, minlength=SETUP.vocab) / 20_000
    p = eb.real_log_probs(oracle, seqs[:1]).exp()[0, 0].numpy()
    assert 0.5 * np.abs(freq - p).sum() < 0.02


def test_oracle_is_fixed_by_its_seed():
    a, b, c = eb.build_oracle(SETUP, 0), eb.build_oracle(SETUP, 0), eb.build_oracle(SETUP, 1)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)
    assert torch.equal(eb.sample(a, 20, SETUP.length, 3), eb.sample(b, 20, SETUP.length, 3))


def test_kl_is_zero_for_a_student_equal_to_the_oracle():
    oracle = eb.build_oracle(SETUP, 0)
    student = copy.deepcopy(oracle)
    test = eb.sample(oracle, SETUP.n_test, SETUP.length, 1)
    result = eb.measure(oracle, student, test, SETUP, 2)
    assert max(map(abs, result["kl_oracle_prefix"])) < 1e-6
    assert max(map(abs, result["kl_own_prefix"])) < 1e-6
    assert result["nll_test"] == pytest.approx(eb.nll_per_token(oracle, test))


def test_kl_is_positive_for_another_student_and_equal_at_the_first_position():
    oracle = eb.build_oracle(SETUP, 0)
    student = eb.build_student(SETUP, 1).eval()
    test = eb.sample(oracle, SETUP.n_test, SETUP.length, 1)
    result = eb.measure(oracle, student, test, SETUP, 2)
    assert min(result["kl_oracle_prefix"]) > 0 and min(result["kl_own_prefix"]) > 0
    # position 1 reads [SOS] alone, whoever wrote the prefix: EB-M(1) = 1
    assert result["kl_own_prefix"][0] == pytest.approx(result["kl_oracle_prefix"][0], rel=1e-9)
    assert result["eb_m"][0] == pytest.approx(1.0)


def test_kl_matches_a_direct_computation():
    oracle, student = eb.build_oracle(SETUP, 0), eb.build_student(SETUP, 4).eval()
    prefixes = eb.sample(oracle, 7, SETUP.length, 9)
    kl = eb.per_position_kl(oracle, student, prefixes)
    with torch.no_grad():
        for t in (0, SETUP.length - 1):
            expected = 0.0
            for row in prefixes.tolist():
                ids = torch.tensor([[1, *row[:t]]])
                po = oracle.log_probs(ids)[0, -1, eb.NUM_SPECIAL:].double().softmax(-1)
                ps = student.log_probs(ids)[0, -1, eb.NUM_SPECIAL:].double().softmax(-1)
                expected += float((po * (po / ps).log()).sum()) / len(prefixes)
            assert float(kl[t]) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(("steps", "first"), [(30, 0.85), (2500, 0.99)])
def test_every_schedule_reaches_the_final_ratio_at_the_last_step(steps, first):
    """From (nearly) pure teacher forcing to FINAL_RATIO; inverse sigmoid starts at k / (k + 1) < 1."""
    for name, scheme in eb.schemes(steps).items():
        config = TrainConfig(max_steps=steps, **scheme)
        expected = 1.0 if name == "teacher forcing" else eb.FINAL_RATIO
        assert config.teacher_forcing(steps - 1) == pytest.approx(expected, rel=1e-6)
        assert config.teacher_forcing(0) > first


def test_results_fields(quick):
    results, _, _ = quick
    L = SETUP.length
    assert list(results["schemes"]) == ["teacher forcing", "SS linear", "SS exponential",
                                        "SS inverse sigmoid"]
    assert results["setup"]["length"] == L and results["setup"]["steps"] == SETUP.steps
    oracle = results["oracle"]
    assert 0 < oracle["entropy_rate"] < math.log(SETUP.vocab)
    for name, r in results["schemes"].items():
        assert len(r["kl_oracle_prefix"]) == len(r["kl_own_prefix"]) == len(r["eb_m"]) == L
        assert all(k > 0 for k in r["kl_oracle_prefix"] + r["kl_own_prefix"])
        assert r["nll_test"] > oracle["entropy_rate"]  # no student beats the truth on held-out data
        assert r["nll_oracle"] > 0 and r["eb_m_mean"] > 0
        final = 1.0 if name == "teacher forcing" else eb.FINAL_RATIO
        assert r["final_teacher_forcing"] == pytest.approx(final)
        assert r["teacher_forcing_curve"][0][0] == 0 and r["teacher_forcing_curve"][-1][0] == SETUP.steps - 1


def test_the_same_seed_gives_the_same_numbers(quick, tmp_path):
    results, _, _ = quick
    again = eb.run(ExperimentConfig(out=tmp_path, quick=True, threads=1, show_progress=False))
    for name, r in results["schemes"].items():
        assert again["schemes"][name]["kl_own_prefix"] == r["kl_own_prefix"]
        assert again["schemes"][name]["nll_test"] == r["nll_test"]


def test_report_and_plots(quick):
    _, body, out = quick
    assert "## Claim" in body and "## Results" in body
    assert "| scheme | ε at the end | NLL_test | NLL_oracle |" in body
    for name in ("oracle (the truth)", *eb.schemes(SETUP.steps)):
        assert f"| {name} |" in body
    for png, size in (("kl_per_position.png", (440, 1100)), ("teacher_forcing_schedules.png", (360, 640))):
        assert f"]({png})" in body
        image = imread(out / png)
        assert image.shape[:2] == size
        assert np.ptp(image[..., :3]) > 0.5
        assert (out / png).stat().st_size < 200_000

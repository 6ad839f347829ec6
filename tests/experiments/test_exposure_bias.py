"""The exposure-bias experiment (F11): the oracle's distributions, KL zero for a student equal to the oracle,
schedules that reach their target, the quick run's fields, report and plots."""

from __future__ import annotations

import copy
import json
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
@pytest.mark.parametrize("final", [0.9, 0.5, 0.25])
def test_every_schedule_reaches_its_final_ratio_at_the_last_step(steps, first, final):
    """From (nearly) pure teacher forcing to ε_end; inverse sigmoid starts at k / (k + 1) < 1."""
    for schedule in eb.SCHEDULES:
        config = TrainConfig(max_steps=steps, **eb.schedule_fields(schedule, steps, final))
        assert config.teacher_forcing(steps - 1) == pytest.approx(final, rel=1e-6)
        assert config.teacher_forcing(0) > max(first, final)
    setup = eb.Setup(steps=steps, eps_ends=(final,))
    assert list(eb.schemes(setup)) == [eb.TEACHER_FORCING, *(eb.arm_name(s, final) for s in eb.SCHEDULES)]


def test_input_reliance_is_zero_for_a_model_that_ignores_its_input():
    oracle = eb.build_oracle(SETUP, 0)
    test = eb.sample(oracle, 40, SETUP.length, 1)
    deaf = eb.build_student(SETUP, 3).eval()
    with torch.no_grad():
        deaf.embed.weight.zero_()  # every input token looks the same
    assert eb.input_reliance(deaf, test, 0) == pytest.approx(0.0, abs=1e-9)
    assert eb.input_reliance(oracle, test, 0) > 0.1  # the truth depends on its last token


def test_input_reliance_matches_a_direct_computation():
    oracle = eb.build_oracle(SETUP, 0)
    seqs = eb.sample(oracle, 5, SETUP.length, 2)
    n, length = seqs.shape
    vocab = SETUP.vocab
    gen = torch.Generator().manual_seed(7)
    shift = torch.randint(1, vocab, (length - 1, n), generator=gen)
    total = 0.0
    for j in range(length - 1):
        for i in range(n):
            changed = seqs[i : i + 1].clone()
            changed[0, j] = (changed[0, j] - eb.NUM_SPECIAL + shift[j, i]) % vocab + eb.NUM_SPECIAL
            assert changed[0, j] != seqs[i, j]
            p = eb.real_log_probs(oracle, seqs[i : i + 1])[0, j + 1]
            q = eb.real_log_probs(oracle, changed)[0, j + 1]
            total += float((p.exp() * (p - q)).sum())
    assert eb.input_reliance(oracle, seqs, 7) == pytest.approx(total / (n * (length - 1)), rel=1e-9)


def test_results_fields(quick):
    results, _, _ = quick
    L = SETUP.length
    assert list(results["arms"]) == list(eb.schemes(SETUP))
    assert results["setup"]["length"] == L and results["setup"]["steps"] == SETUP.steps
    oracle = results["oracle"]
    assert 0 < oracle["entropy_rate"] < math.log(SETUP.vocab) < oracle["uniform_nll_oracle"]
    record = results["protocol"]
    assert record["test_reads"] == 1 and record["budget"]["unit"] == "steps"
    assert set(record["budget"]["per_arm"].values()) == {SETUP.steps * SETUP.seeds}
    for name, arm in results["arms"].items():
        assert [r["seed"] for r in arm["runs"]] == list(range(SETUP.seeds))
        for r in arm["runs"]:
            assert len(r["kl_oracle_prefix"]) == len(r["kl_own_prefix"]) == L
            assert all(k > 0 for k in r["kl_oracle_prefix"] + r["kl_own_prefix"])
            assert r["nll_test"] > oracle["entropy_rate"]  # no student beats the truth on held-out data
            assert r["eb_m"] == pytest.approx(r["mean_kl_own_prefix"] / r["mean_kl_oracle_prefix"])
        s = arm["summary"]["nll_test"]
        assert s["mean"] == pytest.approx(np.mean([r["nll_test"] for r in arm["runs"]]))
        assert s["low"] < s["mean"] < s["high"]
        final = 1.0 if name == eb.TEACHER_FORCING else float(name.rsplit("→ ", 1)[1])
        assert arm["final_teacher_forcing"] == pytest.approx(final)
        curve = arm["teacher_forcing_curve"]
        assert curve[0][0] == 0 and curve[-1][0] == SETUP.steps - 1
    assert set(results["comparisons"]) == set(results["arms"]) - {eb.TEACHER_FORCING}


def test_the_same_seed_gives_the_same_numbers_in_any_number_of_workers(quick, tmp_path):
    results, _, _ = quick
    again = eb.run(ExperimentConfig(out=tmp_path, quick=True, threads=2, show_progress=False))
    assert again["setup"]["workers"] == 2
    for name, arm in results["arms"].items():
        assert again["arms"][name]["runs"] == arm["runs"]


def test_the_findings_follow_the_numbers(quick):
    """Synthetic results in which scheduled sampling is clearly better, then clearly worse, in generation:
    the sentences flip with them."""
    results, _, _ = quick
    base = json.loads(json.dumps(results))
    tf = base["arms"][eb.TEACHER_FORCING]["runs"]
    n = len(base["comparisons"])
    lead = "On the divergence met in generation (KL after own prefixes), scheduled sampling is lower than " \
           "teacher forcing in "
    tallies = ((-1, f"{n} of {n} settings, higher in 0"), (+1, f"0 of {n} settings, higher in {n}"))
    for direction, tally in tallies:
        flipped = copy.deepcopy(base)
        for arm, a in flipped["arms"].items():
            if arm == eb.TEACHER_FORCING:
                continue
            for r, t in zip(a["runs"], tf, strict=True):
                r["mean_kl_own_prefix"] = t["mean_kl_own_prefix"] + direction * (0.1 + 0.001 * r["seed"])
        flipped["comparisons"] = eb.comparisons(flipped["arms"])
        text = " ".join(eb.findings(flipped))
        assert lead + tally in text
        assert (f"lowers the error met in generation in {n} setting(s)" in text) == (direction < 0)


def test_report_and_plots(quick):
    _, body, out = quick
    assert "## Claim" in body and "## Results" in body
    assert "| arm | ε at the end | NLL_test | NLL_oracle |" in body
    for name in ("oracle (the truth)", *eb.schemes(SETUP)):
        assert f"| {name} |" in body
    for png, size in (("sweep.png", (760, 1100)), ("kl_per_position.png", (380, 680)),
                      ("teacher_forcing_schedules.png", (320, 1000))):
        assert f"]({png})" in body
        image = imread(out / png)
        assert image.shape[:2] == size
        assert np.ptp(image[..., :3]) > 0.5
        assert (out / png).stat().st_size < 250_000

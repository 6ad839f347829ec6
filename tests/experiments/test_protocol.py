"""The protocol every experiment follows (arlm.experiments.protocol): the test split read once, in the
final step, choices made on validation only; equal budgets; mean ± std with Student-t intervals and
paired verdicts; load flagging; and, through the runner, the load and the command as typed in
results.json, report sentences that follow the numbers, and old results.json rendered as before."""

from __future__ import annotations

import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from arlm.data.cache import EncodedSplit
from arlm.experiments import EXPERIMENTS, ExperimentConfig, protocol
from arlm.experiments.protocol import (
    A_LOWER,
    B_LOWER,
    NOT_DISTINGUISHABLE,
    Budget,
    Guarded,
    Protocol,
    ProtocolError,
    compare_paired,
    comparison_sentence,
    needs_more_seeds,
    reads,
    summarize,
    summary_text,
    t_975,
    t_975_table,
    verdict,
)
from arlm.experiments.runner import _header, read_results, render_report, run_experiment
from cli_helpers import arlm, ok

DOCS_EXPERIMENTS = Path(__file__).resolve().parents[2] / "docs" / "experiments"


def _split(values: list[int]) -> EncodedSplit:
    """A tiny encoded split whose 'score' is the mean of its tokens."""
    tokens = np.asarray(values, dtype=np.uint16)
    return EncodedSplit(tokens=tokens, num_chars=len(values), num_sequences=1)


def _splits() -> dict[str, EncodedSplit]:
    return {"train": _split([1, 2, 3, 4]), "val": _split([2, 3, 2]), "test": _split([3, 3, 4])}


def _score(model: float, split) -> float:
    """A stand-in for an evaluation: how far the 'model' is from the split's tokens."""
    return float(np.abs(np.asarray(split.tokens, dtype=np.float64) - model).mean())


# ----- rule 1: choose on validation, read the test split once, at the end -------------------------


def _honest_experiment(p: Protocol) -> dict:
    """Chooses its 'model' on validation, then scores it on test in the one final step."""
    val = p.split("val")
    candidates = [1.0, 2.0, 3.0]
    best = p.choose("model", min(candidates, key=lambda m: _score(m, val)), candidates=len(candidates))
    with p.final_test() as test:
        return {"test_score": _score(best, test), "protocol": p.record()}


def _peeking_experiment(p: Protocol) -> dict:
    """Chooses its 'model' by the test score: the selection effect the protocol forbids."""
    test = p.split("test")
    best = p.choose("model", min([1.0, 2.0, 3.0], key=lambda m: _score(m, test)))
    with p.final_test() as final:
        return {"test_score": _score(best, final), "protocol": p.record()}


def test_an_experiment_that_reads_the_test_split_before_its_final_evaluation_fails():
    honest = Protocol(_splits())
    results = _honest_experiment(honest)
    assert results["protocol"] == {"chosen_on": "val", "test_reads": 1, "choices": {"model": 2.0},
                                   "candidates": {"model": 3}}
    assert reads(honest.split("val")) == 3 and reads(honest.split("test")) == 1
    peeking = Protocol(_splits())
    with pytest.raises(ProtocolError, match="'test' split was read before the final test"):
        _peeking_experiment(peeking)
    assert reads(peeking.split("test")) == 0  # the refused read is not counted


def test_the_test_split_is_read_in_one_final_step_and_choices_freeze_after_it():
    p = Protocol(_splits())
    assert p.split("train").num_tokens == 4 and list(p.split("val").tokens) == [2, 3, 2]  # free
    with pytest.raises(ProtocolError, match="chosen on 'test'"):
        p.choose("lr", 0.1, on="test")
    with pytest.raises(ProtocolError, match="before the final test"):
        _ = p.split("test").num_chars
    with p.final_test() as test:
        assert test.tokens.tolist() == [3, 3, 4] and test.num_chars == 3  # as the split itself
    with pytest.raises(ProtocolError, match="read again after the final test"):
        _ = p.split("test").tokens
    with pytest.raises(ProtocolError, match="already taken"), p.final_test():
        pass
    with pytest.raises(ProtocolError, match="chosen after the final test"):
        p.choose("lr", 0.1)
    assert p.record()["test_reads"] == 1


def test_a_protocol_needs_its_selection_and_test_splits():
    with pytest.raises(ProtocolError, match="selection split 'val'"):
        Protocol({"train": [], "test": []})
    with pytest.raises(ProtocolError, match="cannot be made on the test split"):
        Protocol({"val": [], "test": []}, selection="test")
    with pytest.raises(ProtocolError, match="no split 'dev'"):
        Protocol(_splits()).split("dev")


def test_a_guarded_list_or_array_counts_each_read_and_passes_it_on():
    lines = Guarded(["a", "b", "c"], "lines")
    assert lines[1:] == ["b", "c"] and tuple(iter(lines)) == ("a", "b", "c") and len(lines) == 3
    assert lines.index("c") == 2  # an attribute of the list
    assert reads(lines) == 4 and repr(lines) == "Guarded('lines', reads=4)"
    array = Guarded(np.arange(4), "ids")
    assert np.asarray(array, dtype=np.float32).tolist() == [0.0, 1.0, 2.0, 3.0] and reads(array) == 1
    with pytest.raises(AttributeError):
        _ = lines._private


# ----- rule 2: equal budgets in one stated unit ---------------------------------------------------


def test_budgets_in_one_unit_are_recorded_and_unequal_ones_refused():
    p = Protocol(_splits(), budget_unit="steps")
    p.budget.spend("lstm", 4000)
    p.budget.spend("transformer", 3000)
    p.budget.spend("transformer", 1000)
    p.budget.check_equal()
    p.budget.spend("window", 2000)
    p.budget.check_equal(["lstm", "transformer"])
    with pytest.raises(ProtocolError, match=r"unequal budgets in steps \(lstm 4,000, transformer 4,000, "
                                            r"window 2,000\)"):
        p.budget.check_equal()
    with pytest.raises(ProtocolError, match="no budget recorded for gru"):
        p.budget.check_equal(["lstm", "gru"])
    assert p.record()["budget"] == {"unit": "steps",
                                    "per_arm": {"lstm": 4000, "transformer": 4000, "window": 2000}}
    seconds = Budget("cpu_seconds")
    seconds.spend("a", 100.0)
    seconds.spend("b", 104.0)
    seconds.check_equal()  # within 5 %
    seconds.spend("b", 10.0)
    with pytest.raises(ProtocolError, match="unequal"):
        seconds.check_equal()
    with seconds.measure("c"):
        sum(range(10_000))
    assert seconds.spent["c"] >= 0
    with pytest.raises(ProtocolError, match="unknown budget unit 'epochs'"):
        Budget("epochs")
    with pytest.raises(ProtocolError, match="not cpu_seconds"), Budget("tokens").measure("a"):
        pass


# ----- rule 3: seeds, intervals, verdicts ---------------------------------------------------------


def test_t_intervals_match_known_values():
    s = summarize([1, 2, 3])
    assert (s.n, s.mean, s.std) == (3, 2.0, 1.0)
    assert s.half_width == pytest.approx(2.484, abs=5e-4)  # 4.3027 / √3
    assert (s.low, s.high) == pytest.approx((2 - 2.48414, 2 + 2.48414), abs=1e-5)
    assert summary_text(s, "bits/char") == ("2.000 ± 1.000 bits/char (mean ± std of 3 seeds; 95 % interval "
                                            "[-0.484, 4.484])")
    one = summarize([2.5])
    assert one.mean == 2.5 and math.isnan(one.std) and math.isnan(one.low)
    assert summary_text(one) == "2.500 (1 seed: no spread, no interval)"
    with pytest.raises(ProtocolError, match="no values"):
        summarize([])
    # Student's t, 97.5 %: 12.706 (1 dof), 2.228 (10), 2.042 (30), → 1.960
    for dof, value in ((1, 12.706), (2, 4.303), (4, 2.776), (10, 2.228), (29, 2.045), (30, 2.042),
                       (120, 1.980), (10_000, 1.960)):
        assert t_975(dof) == pytest.approx(value, abs=1e-3)
        assert t_975_table(dof) == pytest.approx(value, abs=1e-3)
    with pytest.raises(ProtocolError, match="at least 1 degree of freedom"):
        t_975(0)


def test_without_scipy_the_hand_written_table_gives_the_same_intervals(monkeypatch):
    with_scipy = summarize([2.19, 2.21, 2.20, 2.23])
    monkeypatch.setitem(sys.modules, "scipy.stats", None)  # `from scipy.stats import t` raises ImportError
    without = summarize([2.19, 2.21, 2.20, 2.23])
    assert without.low == pytest.approx(with_scipy.low, abs=1e-5)
    assert [t_975(d) for d in (1, 5, 29, 31, 200)] == [t_975_table(d) for d in (1, 5, 29, 31, 200)]


def test_the_paired_verdict_flips_with_the_numbers():
    lstm = [2.216, 2.221, 2.212]
    # the Transformer lower by 0.018 at every seed, give or take 0.002: distinguishable
    transformer = [2.198, 2.201, 2.196]
    assert verdict(transformer, lstm) == A_LOWER and verdict(lstm, transformer) == B_LOWER
    # the same mean difference, but one seed goes the other way: not distinguishable
    noisy = [2.178, 2.235, 2.182]
    assert np.mean(noisy) == pytest.approx(np.mean(transformer), abs=1e-9)
    assert verdict(noisy, lstm) == NOT_DISTINGUISHABLE
    # one seed never distinguishes, however large the difference
    assert verdict([1.0], [2.0]) == NOT_DISTINGUISHABLE
    with pytest.raises(ProtocolError, match="one value per seed"):
        compare_paired([1.0, 2.0], [1.0])


def test_a_difference_below_five_seed_spreads_needs_three_seeds():
    assert needs_more_seeds(0.018, spread=0.01, num_seeds=3) is True
    assert needs_more_seeds(0.1, spread=0.01, num_seeds=1) is False  # 10 spreads: one seed will do
    with pytest.raises(ProtocolError, match="run at least 3 seeds"):
        needs_more_seeds(0.018, spread=0.01, num_seeds=2)
    with pytest.raises(ProtocolError, match="spread is unknown"):
        needs_more_seeds(0.018, spread=math.nan, num_seeds=1)


def test_report_sentences_follow_the_numbers():
    c = compare_paired([2.198, 2.201, 2.196], [2.216, 2.221, 2.212], "Transformer", "LSTM")
    assert comparison_sentence(c, "bits/char") == (
        "Transformer is lower than LSTM by 0.018 bits/char (95 % interval [0.013, 0.023], paired over 3 "
        "seeds; Transformer 2.198 ± 0.003, LSTM 2.216 ± 0.005).")
    c = compare_paired([2.216, 2.221, 2.212], [2.198, 2.201, 2.196], "LSTM", "Transformer")
    assert comparison_sentence(c).startswith("Transformer is lower than LSTM by 0.018 (95 % interval [0.013,")
    c = compare_paired([2.178, 2.235, 2.182], [2.216, 2.221, 2.212], "Transformer", "LSTM")
    assert comparison_sentence(c, "bits/char").startswith(
        "Transformer and LSTM are not distinguishable: Transformer − LSTM = -0.018 bits/char, whose 95 % "
        "interval [-0.088, +0.052] contains 0 (paired over 3 seeds;")
    c = compare_paired([2.198], [2.216], "Transformer", "LSTM")
    assert comparison_sentence(c) == ("Transformer and LSTM are not distinguishable from one seed: "
                                      "Transformer − LSTM = -0.018, and one seed gives no interval "
                                      "(Transformer 2.198, LSTM 2.216).")


# ----- rule 4: the load --------------------------------------------------------------------------


def test_speed_figures_are_invalid_when_the_load_exceeds_the_core_count(monkeypatch):
    monkeypatch.setattr(protocol.os, "getloadavg", lambda: (7.456, 9.0, 12.0))
    assert protocol.load_average() == [7.46, 9.0, 12.0]
    busy = protocol.load_record(protocol.load_average(), [1.0, 2.0, 3.0], cpu_count=2)
    assert busy == {"start": [7.46, 9.0, 12.0], "end": [1.0, 2.0, 3.0], "cpu_count": 2, "speed_valid": False}
    assert protocol.mark_speed("1,234 tokens/s", busy) == "1,234 tokens/s (invalid: load > cores)"
    assert "invalid" in protocol.load_sentence(busy)
    quiet = protocol.load_record([1.5, 1.0, 1.0], [2.0, 1.0, 1.0], cpu_count=2)
    assert quiet["speed_valid"] is True and protocol.mark_speed("5 s", quiet) == "5 s"
    assert protocol.load_sentence(quiet) == ("Load average (1 min): 1.50 at the start, 2.00 at the end, "
                                             "on 2 CPUs.")

    def no_load() -> tuple[float, float, float]:
        raise OSError("no load average here")

    monkeypatch.setattr(protocol.os, "getloadavg", no_load)
    assert protocol.load_average() is None
    unknown = protocol.load_record(None, None, cpu_count=2)
    assert unknown["speed_valid"] is None and "unknown" in protocol.load_sentence(unknown)


# ----- through the runner: results.json and report.md ---------------------------------------------


def _comparing_module(module_name: str) -> types.ModuleType:
    """An experiment that follows the protocol: two arms over 3 seeds, chosen on val, tested once; its
    report's conclusion is written from the numbers."""
    module = types.ModuleType(module_name)
    module.NAME, module.SUMMARY, module.CHECKPOINT_FAMILIES = "compare", "Two arms, three seeds.", ()

    def run(config: ExperimentConfig) -> dict:
        p = Protocol(_splits(), budget_unit="steps")
        arms: dict[str, list[float]] = {"A": [], "B": []}
        p.choose("lr", 0.01, candidates=3)
        for arm in arms:
            p.budget.spend(arm, 100)
        p.budget.check_equal()
        with p.final_test() as test:
            for seed in range(3):
                arms["A"].append(_score(2.0 + 0.01 * seed, test))
                arms["B"].append(_score(2.5 + 0.01 * seed, test))
        return {"arms": arms, "protocol": p.record()}

    def render(results: dict, out_dir: Path) -> str:
        c = compare_paired(results["arms"]["A"], results["arms"]["B"], "A", "B")
        return "## Conclusion\n\n" + comparison_sentence(c, "nats") + "\n"

    module.run, module.render = run, render
    return module


@pytest.fixture
def compare(monkeypatch):
    """Register the comparing experiment as `compare`."""
    monkeypatch.setitem(sys.modules, "_arlm_test_compare", _comparing_module("_arlm_test_compare"))
    monkeypatch.setitem(EXPERIMENTS, "compare", "_arlm_test_compare")


def test_results_record_the_protocol_the_load_and_the_command_as_typed(compare, tmp_path, monkeypatch):
    monkeypatch.setattr(protocol.os, "getloadavg", lambda: (9.0, 8.0, 7.0))
    monkeypatch.setattr(protocol.os, "cpu_count", lambda: 2)
    ok(arlm("experiment", "compare", "--out", "c", "--seed", "3", cwd=tmp_path))
    data = read_results(tmp_path / "c")
    assert data["command"] == "arlm experiment compare --out c --seed 3"  # as typed, nothing added
    assert data["provenance"]["command_from"] == "cli" and "argv" not in data["provenance"]
    assert data["provenance"]["load"] == {"start": [9.0, 8.0, 7.0], "end": [9.0, 8.0, 7.0], "cpu_count": 2,
                                          "speed_valid": False}
    assert data["results"]["protocol"] == {"chosen_on": "val", "test_reads": 1, "choices": {"lr": 0.01},
                                           "candidates": {"lr": 3},
                                           "budget": {"unit": "steps", "per_arm": {"A": 100, "B": 100}}}
    report = (tmp_path / "c" / "report.md").read_text()
    assert "Reproduce: `arlm experiment compare --out c --seed 3` (then" in report
    assert ("Load average (1 min): 9.00 at the start, 9.00 at the end, on 2 CPUs; it exceeded the core "
            "count, so this run's speed figures (seconds, tokens/s) are invalid") in report
    assert ("Protocol: chosen on val: lr = 0.01 (of 3); test split read once, at the end; budget in steps: "
            "A 100, B 100.") in report
    assert "B is lower than A by 0.500 nats" in report  # B's model, 2.5, is nearer the test tokens


def test_a_run_started_from_python_says_so_beside_its_equivalent_command(compare, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["one_off.py", "--fast"])
    out = run_experiment("compare", ExperimentConfig(out=tmp_path / "c", show_progress=False))
    data = read_results(out)
    assert data["command"].startswith("arlm experiment compare --out ")
    assert data["provenance"]["command_from"] == "python"
    assert data["provenance"]["argv"] == ["one_off.py", "--fast"]
    assert ("This run was started from Python (`one_off.py --fast`), not by this command"
            in (out / "report.md").read_text())


def test_a_synthetic_results_json_flips_the_reports_conclusion(compare, tmp_path):
    out = run_experiment("compare", ExperimentConfig(out=tmp_path / "c", show_progress=False))
    data = read_results(out)
    for a, b, conclusion in (([2.0, 2.01, 2.02], [2.5, 2.51, 2.52], "A is lower than B by 0.500 nats"),
                             ([2.5, 2.51, 2.52], [2.0, 2.01, 2.02], "B is lower than A by 0.500 nats"),
                             ([2.0, 2.6, 2.1], [2.5, 2.1, 2.6], "A and B are not distinguishable")):
        data["results"]["arms"] = {"A": a, "B": b}
        (out / "results.json").write_text(json.dumps(data))
        render_report(out)
        assert conclusion in (out / "report.md").read_text()


def test_results_written_before_the_protocol_render_their_header_as_before():
    """Every committed report.md starts with the header its results.json gives: no load or protocol
    line where results.json has none (so `arlm report` re-renders them byte for byte)."""
    folders = sorted(p.parent for p in DOCS_EXPERIMENTS.glob("*/results.json"))
    assert folders, DOCS_EXPERIMENTS
    for folder in folders:
        data = json.loads((folder / "results.json").read_text())
        assert (folder / "report.md").read_text().startswith(_header(data)), folder
        if "load" not in data["provenance"]:
            assert "Load average" not in _header(data)

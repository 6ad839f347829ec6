"""`arlm experiment ladder`: the protocol (choices on validation, the test split read once at the end,
equal token budgets, 3 seeds), report sentences that follow the numbers (synthetic results.json in which
the conclusions flip), plots that decode, and `--quick` runs that repeat whatever the worker count."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from arlm.experiments import ExperimentConfig, ladder
from arlm.experiments.ladder_report import context_gain, findings, position_findings, render_report
from arlm.experiments.protocol import Protocol, ProtocolError, summarize
from cli_helpers import arlm, ok

PLOTS = ("ladder.png", "learning_curves.png", "positions.png")
SEEDS = [0, 1, 2]
POSITIONS = 40
WINDOW, ORDER = 16, 9  # the synthetic window MLP's reach and the n-gram's order (reach 8)


def _png_ok(path: Path) -> None:
    with Image.open(path) as im:
        pixels = np.asarray(im.convert("L"), dtype=np.float64)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 300 and pixels.std() > 5, path


def _profile(level: float, beyond: float = 0.0, start: int = WINDOW) -> list[float]:
    """A flat test NLL profile at ``level``, ``beyond`` added from position ``start`` on."""
    return [level + (beyond if k >= start else 0.0) for k in range(POSITIONS)]


def synthetic(bits: dict[str, list[float]], ngram: float = 2.0,
              beyond: dict[str, float] | None = None) -> dict:
    """A results dict as :func:`ladder.run` writes it: per-seed test bits/char of each family, the
    n-gram's, and position profiles flat at those levels (plus ``beyond[family]`` past the window)."""
    beyond = beyond or {}
    families = {}
    for family in ladder.FAMILIES:
        runs = [{"seed": s, "bits_per_char": b, "val_bits_per_char": b + 0.01,
                 "curve": [[100, b + 0.3], [200, b + 0.1]],
                 "positions": _profile(b, beyond.get(family, 0.0))} for s, b in zip(SEEDS, bits[family],
                                                                                   strict=True)]
        config = {"context": WINDOW} if family == "window MLP" else (
            {"block_size": 48} if family == "Transformer" else {})
        families[family] = {
            "candidates": [{"name": f"{family} {i}", "overrides": [f"lr={i}"], "params": 1000 + i,
                            "config": config, "curve": [[100, 3.0 - i / 10], [200, 2.9 - i / 10]],
                            "val_bits_per_char": 2.9 - i / 10} for i in range(3)],
            "chosen": 2, "runs": runs, "summary": asdict(summarize([r["bits_per_char"] for r in runs])),
            "window": config.get("context"), "block_size": config.get("block_size")}
    results = {
        "quick": False, "seeds": SEEDS, "workers": 2, "torch_threads": 1,
        "plan": {"preset": "cpu-small", "steps": 200, "batch_tokens": 1536},
        "data": {"train_chars": 3_000_000, "val_lines": 100, "val_chars": 4000, "curve_lines": 50,
                 "test_lines": 100, "test_chars": 4000, "longest_line": 65,
                 "position_lines": [100] * POSITIONS},
        "ngram": {"candidates": [{"label": f"char {ORDER}-gram (mkn)", "order": ORDER, "smoothing": "mkn",
                                  "val_bits_per_char": ngram}],
                  "chosen": f"char {ORDER}-gram (mkn)", "order": ORDER, "curve_bits_per_char": ngram,
                  "test": {"bits_per_char": ngram, "positions": _profile(ngram)}},
        "families": families,
    }
    results["comparisons"] = ladder.comparisons(results)
    return results


LADDER_HOLDS = {"window MLP": [1.90, 1.91, 1.92], "LSTM": [1.80, 1.82, 1.81],
                "Transformer": [1.70, 1.71, 1.73]}


def test_the_sentences_follow_each_rung_against_the_one_below():
    text = " ".join(findings(synthetic(LADDER_HOLDS)))
    assert "holds for 3 of the 3 steps" in text and "does not beat" not in text
    assert "Transformer is lower than LSTM by 0.097 bits/char" in text
    # the window MLP above the n-gram: said plainly, with what the run shows about why
    losing = {**LADDER_HOLDS, "window MLP": [2.30, 2.31, 2.33]}
    text = " ".join(findings(synthetic(losing)))
    assert "**The window MLP does not beat the counted n-gram here**: it is above" in text
    assert "holds for 2 of the 3 steps" in text and "0.10 passes" in text
    assert f"reads {WINDOW} tokens of context against the n-gram's {ORDER - 1}" in text
    # the Transformer and the LSTM within the seeds' spread: not distinguishable, never a winner
    level = {**LADDER_HOLDS, "Transformer": [1.81, 1.80, 1.82]}
    text = " ".join(findings(synthetic(level)))
    assert "Transformer and LSTM are not distinguishable" in text
    assert "holds for 2 of the 3 steps" in text


def test_the_position_sentences_follow_the_profiles():
    # the LSTM's NLL drops beyond the window MLP's reach (with some seed spread): it gains there
    results = synthetic(LADDER_HOLDS)
    for run, drop in zip(results["families"]["LSTM"]["runs"], (-0.20, -0.25, -0.22), strict=True):
        run["positions"] = _profile(run["bits_per_char"], drop)
    g = context_gain(results, "LSTM", "window MLP")
    assert g["reach"] == WINDOW and g["inside"] == (8, 15) and g["beyond"] == (16, POSITIONS - 2)
    assert g["comparison"].difference.mean == pytest.approx(-0.2233, abs=1e-4)
    text = " ".join(position_findings(results))
    assert "the LSTM's lead over the window MLP grows where only the LSTM still sees" in text
    # above the n-gram everywhere, but closer beyond its reach (8): still above, the gap narrower
    assert "the LSTM is still above the n-gram beyond its reach, but closer than inside it" not in text
    for run in results["families"]["LSTM"]["runs"]:
        run["positions"] = [2.3 - (0.1 + 0.01 * run["seed"] if k >= ORDER - 1 else 0.0)
                            for k in range(POSITIONS)]
    text = " ".join(position_findings(results))
    assert "the LSTM is still above the n-gram beyond its reach, but closer than inside it" in text
    # the same profiles flat: not distinguishable; rising beyond the reach: it loses ground
    for run, rise in zip(results["families"]["LSTM"]["runs"], (0.0, 0.01, -0.01), strict=True):
        run["positions"] = _profile(run["bits_per_char"], rise)
    assert "does not show the LSTM's longer context paying beyond the window MLP" in " ".join(
        position_findings(results))
    for run, rise in zip(results["families"]["LSTM"]["runs"], (0.20, 0.25, 0.22), strict=True):
        run["positions"] = _profile(run["bits_per_char"], rise)
    assert "the LSTM loses ground to the window MLP beyond its reach" in " ".join(position_findings(results))
    # a window that covers every position shown: no comparison beyond it is claimed
    results["families"]["window MLP"]["window"] = POSITIONS
    assert "cannot compare them there" in " ".join(position_findings(results))


def test_positions_where_lines_end_are_kept_out_of_the_bands_and_described():
    results = synthetic(LADDER_HOLDS)
    counts = [100] * (POSITIONS - 4) + [80, 50, 20, 10]  # from position 35 on, 20 % or more end there
    results["data"]["position_lines"] = counts
    g = context_gain(results, "LSTM", "window MLP")
    assert g["beyond"] == (WINDOW, POSITIONS - 6)
    text = " ".join(position_findings(results))
    assert f"Positions {POSITIONS - 5}–{POSITIONS - 1} are left out of these bands" in text
    assert "20–60 % of the targets are a line's newline" in text and "the Transformer is lowest" in text


def test_the_report_renders_from_synthetic_results_with_plots_that_decode(tmp_path):
    results = synthetic({**LADDER_HOLDS, "window MLP": [2.30, 2.31, 2.33]})
    report = render_report(json.loads(json.dumps(results)), tmp_path)
    for text in ("| window MLP − n-gram |", "| n-gram lower |", "**chosen**",
                 "## The search (validation only)", "The Transformer reads at most 48 tokens",
                 "What the ladder no longer shows",
                 "the numbers do not depend on `--threads`"):
        assert text in report, text
    for name in PLOTS:
        _png_ok(tmp_path / name)


def test_curve_steps_are_fixed_in_advance():
    assert ladder.curve_steps(2000, 5) == [400, 800, 1200, 1600, 2000]
    assert ladder.curve_steps(3, 5) == [1, 2, 3]


def test_every_family_gets_the_same_search():
    for plan in (ladder.FULL, ladder.QUICK):
        assert set(plan.candidates) == set(ladder.FAMILIES)
        assert {len(c) for c in plan.candidates.values()} == {3}
        assert plan.seeds == 3
    for _, overrides in ladder.FULL.candidates["Transformer"]:  # whole rows: equal tokens per step
        block = next(int(o.split("=")[1]) for o in overrides if o.startswith("block_size="))
        assert ladder.FULL.batch_tokens % block == 0


# ---------------------------------------------------------------------------------------------
# --quick runs (seconds each)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("ladder")
    ok(arlm("experiment", "ladder", "--quick", "--out", "out", "--seed", "1", cwd=work))
    return work / "out"


@pytest.mark.slow
def test_quick_run_follows_the_protocol(run):
    data = json.loads((run / "results.json").read_text())
    assert data["experiment"] == "ladder" and data["config"]["quick"]
    results = data["results"]
    assert results["seeds"] == [1, 2, 3]
    record = results["protocol"]
    assert record["test_reads"] == 1 and record["chosen_on"] == "val"
    assert record["budget"]["unit"] == "tokens"
    spent = record["budget"]["per_arm"]
    assert len(spent) == 3 * 3 + 3 * 2 and len(set(spent.values())) == 1  # 15 runs, one budget
    assert record["candidates"] == {"n-gram": 4, "window MLP": 3, "LSTM": 3, "Transformer": 3}
    for family in ladder.FAMILIES:
        f = results["families"][family]
        vals = [c["val_bits_per_char"] for c in f["candidates"]]
        assert f["chosen"] == int(np.argmin(vals))  # the lowest validation bits/char
        assert record["choices"][family] == f["candidates"][f["chosen"]]["name"]
        assert [r["seed"] for r in f["runs"]] == [1, 2, 3]
        assert f["runs"][0]["val_bits_per_char"] == vals[f["chosen"]]  # seed 1 ran the search
        for r in f["runs"]:
            assert 0.5 < r["bits_per_char"] < math.log2(200)
            assert len(r["positions"]) == len(results["data"]["position_lines"])
            assert [step for step, _ in r["curve"]] == [8, 16]
    ngram = results["ngram"]
    assert ngram["chosen"] == min(ngram["candidates"], key=lambda c: c["val_bits_per_char"])["label"]
    report = (run / "report.md").read_text()
    assert "test split read once, at the end" in report and "Reproduce:" in report
    for name in PLOTS:
        _png_ok(run / name)


@pytest.mark.slow
def test_arlm_report_rerenders_the_same_files(run, tmp_path):
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    (copy_dir / "results.json").write_bytes(before["results.json"])
    ok(arlm("report", "copy", cwd=tmp_path))
    assert {p.name: p.read_bytes() for p in copy_dir.iterdir()} == before


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_the_test_split_is_read_only_in_the_final_evaluation(run, monkeypatch, tmp_path):
    """Every encoding of the test split happens inside ``protocol.final_test()`` (the jobs run inline
    with one worker, so the spy sees them too); the same seed gives the CLI run's numbers."""
    import arlm.data.cache
    import arlm.usecases.data
    real_encode, real_final = arlm.data.cache.encode_corpus, Protocol.final_test
    state = {"final": False, "test_reads": 0}

    def encode(corpus, split, *args, **kw):
        if split == "test":
            if not state["final"]:
                raise ProtocolError("the test split was encoded before the final test")
            state["test_reads"] += 1
        return real_encode(corpus, split, *args, **kw)

    def final_test(self):
        state["final"] = True
        return real_final(self)

    monkeypatch.setattr(arlm.data.cache, "encode_corpus", encode)
    monkeypatch.setattr(arlm.usecases.data, "encode_corpus", encode)
    monkeypatch.setattr(Protocol, "final_test", final_test)
    results = ladder.run(ExperimentConfig(out=tmp_path, quick=True, seed=1, threads=1, show_progress=False))
    assert state["test_reads"] == 1 and results["workers"] == 1
    cli = json.loads((run / "results.json").read_text())["results"]
    results = json.loads(json.dumps(results))
    for key in ("ngram", "families", "comparisons", "data"):
        assert results[key] == cli[key], key


@pytest.mark.slow
def test_two_worker_processes_give_the_same_numbers(run, tmp_path):
    ok(arlm("experiment", "ladder", "--quick", "--out", "two", "--seed", "1", "--threads", "2", cwd=tmp_path))
    two = json.loads((tmp_path / "two" / "results.json").read_text())["results"]
    one = json.loads((run / "results.json").read_text())["results"]
    assert one["workers"] == 1 and two["workers"] == 2
    for key in ("ngram", "families", "comparisons", "data"):
        assert two[key] == one[key], key


def test_a_test_read_before_the_final_test_is_refused():
    protocol = Protocol({"train": [], "val": [], "test": ladder.TestLines(5)})
    with pytest.raises(ProtocolError, match="before the final test"):
        protocol.split("test").encoded(None)

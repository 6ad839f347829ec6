"""serve_load.py's arithmetic: time to first token and time between tokens from arrival times, and the
verdict on the issue's aim read from the numbers (met and not met)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))  # the scripts import it so

from serve_load import model_table, summary

MODEL = {"name": "m", "family": "transformer", "parameters": 1000, "tokenizer": "char", "vocab_size": 9}


def test_summary_reads_ttft_tbt_and_rates_from_arrivals():
    results = [{"arrivals": [0.1, 0.2, 0.4], "done": True}, {"arrivals": [0.3, 0.3, 0.6], "done": True},
               {"arrivals": [0.5], "done": False}]  # an incomplete client counts for nothing
    run = summary(results, wall=2.0, cpu=0.3)
    assert run["completed"] == 2 and run["aggregate"] == pytest.approx(6 / 2.0)
    assert run["ttft_p50"] == pytest.approx(0.1) and run["ttft_p99"] == pytest.approx(0.3)
    assert run["tbt_p50"] == pytest.approx(0.1) and run["tbt_p99"] == pytest.approx(0.3)  # gaps 0.1 .2 0 .3
    assert run["cpu_per_token"] == pytest.approx(0.05)


def case(aggregate: float, tbt_p99: float) -> dict:
    return {"clients": 1, "completed": 1, "aggregate": aggregate, "ttft_p50": 0.01, "ttft_p99": 0.02,
            "tbt_p50": 0.001, "tbt_p99": tbt_p99, "cpu_per_token": 1e-4}


@pytest.mark.parametrize(("speed", "tbt", "verdict"), [(5.0, 1.5, "is met"), (3.0, 1.5, "is not met"),
                                                       (5.0, 2.5, "is not met")])
def test_the_verdict_follows_the_numbers(speed, tbt, verdict):
    table = {"before": {1: case(100, 0.010), 32: case(100, 0.05)},
             "after": {1: case(120, 0.010), 32: case(100 * speed, 0.010 * tbt)}}
    text = "\n".join(model_table(MODEL, table, [1, 32]))
    assert verdict in text and f"{speed:.2f}× the aggregate" in text and f"{tbt:.2f}× a single" in text

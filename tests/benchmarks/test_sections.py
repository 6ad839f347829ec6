"""Each kind of benchmark run writes its own section of docs/benchmarks.md: a run with another target or
thread count must not replace the default run's table (decode_speed.py's fast case, decode_levers.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))  # the scripts import it so

import decode_levers
from decode_speed import FAST_SECTION, TARGET_SECTION, fast_heading


def test_each_kind_of_fast_run_has_its_own_section():
    headings = [fast_heading(target, threads) for target in (None, Path("runs/gpt")) for threads in (1, 2)]
    assert headings[0] == FAST_SECTION and headings[2] == TARGET_SECTION
    assert len(set(headings)) == 4
    assert all(h.startswith("## ") for h in headings)


def test_decode_levers_has_a_section_per_thread_count():
    assert decode_levers.heading(1) == decode_levers.SECTION
    assert decode_levers.heading(2) != decode_levers.heading(1)
    assert decode_levers.heading(2).startswith(decode_levers.SECTION)

"""benchmarks/report.py: the round-robin timer and the command line every benchmark section starts with.

No timing is asserted: only the order and number of the calls, what comes back per case, and the line's text.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))  # the scripts import it so

from report import command_line, round_robin, timed


def recorder(log: list[str], name: str):
    """A case that logs its name and returns how many calls it has had."""
    calls = 0

    def call() -> int:
        nonlocal calls
        calls += 1
        log.append(name)
        return calls
    return call


def test_cases_take_turns_warmups_first_and_every_case_is_timed_repeats_times():
    log: list[str] = []
    runs = round_robin({n: recorder(log, n) for n in "abc"}, 3, warmup=2, keep_results=True)
    assert log == list("abc") * 5  # two untimed rounds, then three timed ones, always in the given order
    assert list(runs) == list("abc")
    for r in runs.values():
        assert len(r.seconds) == 3 and all(s >= 0 for s in r.seconds)
        assert r.results == [3, 4, 5]  # the timed calls' results, not the warm-ups'
        assert r.last == 5
        assert r.median == sorted(r.seconds)[1]


def test_results_are_kept_only_when_asked_and_last_is_the_warmups_without_timed_calls():
    runs = round_robin({"a": recorder([], "a")}, 2)
    assert runs["a"].results == [] and runs["a"].last == 3
    assert round_robin({"a": recorder([], "a")}, 0, warmup=1)["a"].last == 1
    assert round_robin({"a": recorder([], "a")}, 0, warmup=0)["a"].last is None


def test_synchronize_brackets_every_call_and_garbage_is_collected_before_timed_ones(monkeypatch):
    import report

    log: list[str] = []
    monkeypatch.setattr(report.gc, "collect", lambda: log.append("gc"))
    round_robin({"a": recorder(log, "a"), "b": recorder(log, "b")}, 1, synchronize=lambda: log.append("|"))
    assert log == ["|", "a", "|", "|", "b", "|", "gc", "|", "a", "|", "gc", "|", "b", "|"]
    log.clear()
    timed(recorder(log, "a"), 2, warmup=0, collect_garbage=False)
    assert log == ["a", "a"]


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="repeats"):
        round_robin({"a": lambda: None}, -1)
    with pytest.raises(ValueError, match="warmup"):
        timed(lambda: None, 1, warmup=-1)


def test_the_command_line_names_command_facts_load_and_note():
    line = command_line("x.py", ["python", "numpy", "2 CPUs (nproc)"], argv=["--out", "a b.md"], nice=True,
                        more=["1 torch thread(s)"], load=[(1.0, 2.0, 3.0), (4.5,)], note="shared")
    assert re.fullmatch(
        r"Command: `nice python benchmarks/x\.py --out 'a b\.md'` — \d{4}-\d\d-\d\d, Python [\d.]+, "
        r"numpy \S+, 2 CPUs \(nproc\); 1 torch thread\(s\); load average at the start 1\.00, 2\.00, "
        r"3\.00, at the end 4\.50 \(shared\)\.", line), line
    assert command_line("y.py", [], argv=[]).startswith("Command: `python benchmarks/y.py` — ")
    assert command_line("y.py", [], argv=[], load=[(0.5,)]).endswith("; load average at the start 0.50.")
    with pytest.raises(ValueError, match="load"):
        command_line("y.py", [], argv=[], load=[(1.0,)] * 3)

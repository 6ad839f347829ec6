"""benchmarks/report.py: the round-robin timer and the command line every benchmark section starts with
(its 'nice', the arguments it shows); train_speed.py's systems taking turns.

No timing is asserted: only the order and number of the calls, what comes back per case, and the line's text.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))  # the scripts import it so

from report import command_line, round_robin, table_argv, timed

ROOT = Path(__file__).resolve().parents[2]


def recorder(log: list[str], name: str):
    """A case that logs its name and returns how many calls it has had."""
    calls = 0

    def call() -> int:
        nonlocal calls
        calls += 1
        log.append(name)
        return calls
    return call


@pytest.mark.slow  # real timed rounds
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


def test_the_command_line_names_command_facts_load_and_note(monkeypatch):
    monkeypatch.setattr(os, "nice", lambda increment: 0)  # not niced (pytest may run under nice)
    line = command_line("x.py", ["python", "numpy", "2 CPUs (nproc)"], argv=["--target", "a b"],
                        more=["1 torch thread(s)"], load=[(1.0, 2.0, 3.0), (4.5,)], note="shared")
    assert re.fullmatch(
        r"Command: `python benchmarks/x\.py --target 'a b'` — \d{4}-\d\d-\d\d, Python [\d.]+, "
        r"numpy \S+, 2 CPUs \(nproc\); 1 torch thread\(s\); load average at the start 1\.00, 2\.00, "
        r"3\.00, at the end 4\.50 \(shared\)\.", line), line
    assert command_line("y.py", [], argv=[]).startswith("Command: `python benchmarks/y.py` — ")
    assert command_line("y.py", [], argv=[], load=[(0.5,)]).endswith("; load average at the start 0.50.")
    with pytest.raises(ValueError, match="load"):
        command_line("y.py", [], argv=[], load=[(1.0,)] * 3)


def test_nice_is_shown_exactly_when_the_process_runs_niced(monkeypatch):
    monkeypatch.setattr(os, "nice", lambda increment: 5)
    assert command_line("y.py", [], argv=["-q"]).startswith("Command: `nice python benchmarks/y.py -q` ")
    monkeypatch.setattr(os, "nice", lambda increment: 0)
    assert command_line("y.py", [], argv=["-q"]).startswith("Command: `python benchmarks/y.py -q` ")


def child_line(niceness: int) -> str:
    """The command line a child process makes after raising its niceness by ``niceness``."""
    code = "import report; print(report.command_line('z.py', [], argv=['--iters', '5']))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "benchmarks")])}
    # a process of its own: its niceness is raised, which a process can never lower again
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                          preexec_fn=lambda: os.nice(niceness))
    return done.stdout


@pytest.mark.skipif(not hasattr(os, "nice"), reason="no process niceness on this OS")
def test_a_niced_child_says_nice_and_one_at_this_niceness_does_so_only_when_this_one_is_niced():
    assert child_line(5).startswith("Command: `nice python benchmarks/z.py --iters 5` ")
    here = child_line(0)
    assert here.startswith("Command: `nice python") == (os.nice(0) > 0), here


def parser() -> argparse.ArgumentParser:
    """A benchmark's options: a positional, table options, and the output-only --out and --no-write."""
    p = argparse.ArgumentParser()
    p.add_argument("checkpoint")
    p.add_argument("more", nargs="*")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--new", type=int, default=32)
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    p.add_argument("--no-write", action="store_true")
    return p


@pytest.mark.parametrize("argv, shown", [
    (["ck", "--out", "/tmp/x.md", "--threads", "1"], ["ck", "--threads", "1"]),  # a default passed stays
    (["--no-write", "ck", "--new", "8", "--quick"], ["ck", "--new", "8", "--quick"]),
    (["ck", "--out=/tmp/x.md", "--new=8"], ["ck", "--new=8"]),
    (["ck", "--ou", "/tmp/x.md", "--no-w", "--thr", "2"], ["ck", "--thr", "2"]),  # abbreviations as argparse
    (["ck", "--", "--out"], ["ck", "--", "--out"]),  # after '--' nothing is an option
    ([], []),
])
def test_output_only_options_and_their_values_are_dropped_and_the_table_options_kept(argv, shown):
    p = parser()
    p.parse_args(argv or ["ck"])  # what the scripts accept
    assert table_argv(p, argv) == shown


def test_the_dropped_options_are_the_ones_named_and_argv_defaults_to_this_process(monkeypatch):
    assert table_argv(parser(), ["ck", "--new", "8", "--out", "o"], drop=("--new",)) == ["ck", "--out", "o"]
    assert table_argv(argparse.ArgumentParser(), ["--out", "o"]) == ["--out", "o"]  # a parser without it
    monkeypatch.setattr(sys, "argv", ["x.py", "ck", "--out", "o", "--quick"])
    assert table_argv(parser()) == ["ck", "--quick"]


def test_gpu_speed_shows_its_table_options_not_where_it_wrote():
    import gpu_speed

    argv = ["--part", "train", "--out", "/root/out/b.md", "--blocks", "8", "--no-write", "--iters", "2"]
    assert table_argv(gpu_speed.arguments(), argv) == ["--part", "train", "--blocks", "8", "--iters", "2"]


def test_train_speed_builds_each_system_then_steps_them_in_turns():
    import train_speed

    log: list[str] = []

    def system(name: str, fail: bool = False):
        def build():
            log.append(f"build {name}")
            if fail:
                raise RuntimeError("no fused AdamW here\nsecond line")
            return lambda: log.append(name)
        return build

    timings = train_speed.race({"a": system("a"), "x": system("x", fail=True), "b": system("b")}, steps=3,
                               warmup=2, optional={"x"})
    assert log == ["build a", "a", "build x", "build b", "b", *["a", "b"] * 4]  # 1 warm-up + 3 timed rounds
    assert list(timings) == ["a", "x", "b"]
    assert timings["x"].error == "failed: RuntimeError: no fused AdamW here"
    for t in (timings["a"], timings["b"]):
        assert not t.error and 0 <= t.first <= t.total and t.median >= 0
    with pytest.raises(RuntimeError, match="fused"):  # a system that is not optional stops the run
        train_speed.race({"x": system("x", fail=True)}, steps=1)
    with pytest.raises(ValueError, match="warmup"):
        train_speed.race({"a": system("a")}, steps=1, warmup=0)


def test_train_speed_times_the_first_step_apart_and_the_median_over_the_timed_rounds_only(monkeypatch):
    import time

    import train_speed

    clock = [0.0]  # a fake clock: a build takes 1 s, a system's k-th step 10·k s
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])

    def build():
        clock[0] += 1
        calls = 0

        def step():
            nonlocal calls
            calls += 1
            clock[0] += 10 * calls
        return step

    t = train_speed.race({"a": build, "b": build}, steps=3, warmup=2)["a"]
    assert (t.first, t.median, t.total) == (10, 40, 1 + 10 + 20 + 30 + 40 + 50)  # 20: the untimed warm-up


def test_train_speed_refuses_bad_threads_in_one_line(monkeypatch, capsys):
    import train_speed

    monkeypatch.setattr(sys, "argv", ["train_speed.py", "--threads", "two", "--no-write"])
    with pytest.raises(SystemExit) as e:
        train_speed.main()
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--threads" in err

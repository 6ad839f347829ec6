"""benchmarks/train_vs_nanogpt.py reads what nanoGPT's train.py and `arlm train` print, judges the issue's
aims on compile=auto's run, and refuses a folder that is not a nanoGPT checkout in one line."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))  # the scripts import it so

import train_vs_nanogpt as bench
from arlm.train.compile_choice import AUTO_COMPILE_STEPS

NANOGPT_OUTPUT = """step 0: train loss 4.2874, val loss 4.2823
iter 0: loss 4.2971, time 5530.04ms, mfu -100.00%
iter 1: loss 4.2603, time 250.59ms, mfu -100.00%
iter 2: loss 4.2361, time 260.27ms, mfu -100.00%
step 250: train loss 2.1000, val loss 1.8347
"""
ARLM_OUTPUT = ("step 2000: train loss 1.8303, val loss 1.8320, best 1.8320\nthe first step took 204.8 s (it "
               "compiled the step), the others 198.0 ms each (median); 671.3 s in all\n")


def test_the_outputs_are_read():
    assert [float(ms) for _, ms in bench.NANO_ITER.findall(NANOGPT_OUTPUT)] == [5530.04, 250.59, 260.27]
    assert bench.NANO_EVAL.findall(NANOGPT_OUTPUT)[-1] == ("250", "2.1000", "1.8347")
    times = bench.FIRST_STEP.search(ARLM_OUTPUT)
    assert (float(times[1]), float(times[2])) == (204.8, 198.0)


def _run(wall: float, setting: str = "true") -> dict:
    return {"wall": wall, "load": [1.0, 1.0, 1.0], "first": 1.0, "median": 0.1, "val_bits_per_char": 2.5,
            "setting": setting}


def test_the_verdict_judges_compile_autos_run():
    short = [{"nanogpt": _run(100), "eager": _run(90, "auto"), "cold": _run(120)}]
    assert "1.11× nanoGPT's wall time" in bench.verdict(2000, short)  # eager's run
    assert ", met in this run" in bench.verdict(2000, short)  # the aim at 2,000: ≥ 1.0×
    long = [{"nanogpt": _run(100), "eager": _run(90, "false"), "cold": _run(80, "auto")}]
    line = bench.verdict(AUTO_COMPILE_STEPS, long)
    assert "1.25× nanoGPT's wall time" in line and "≥ 1.3×, not met" in line and "1.12× arlm eager" in line
    rows = bench.table(long)
    assert len(rows) == 2 + 3 and "= compile=auto's run" in rows[-1]


def test_the_bf16_row_says_what_auto_chose_and_the_verdict_compares_its_quality():
    mixed = {**_run(50, "auto"), "note": "compile=auto: not compiling, 5,000 steps are fewer than …",
             "val_bits_per_char": 2.4}
    rounds = [{"nanogpt": _run(100), "eager": _run(90, "false"), "cold": _run(80, "auto"), "bf16": mixed}]
    assert bench.table(rounds)[-1].startswith(f"| {bench.SYSTEMS['bf16']}: not compiling |")
    line = bench.verdict(AUTO_COMPILE_STEPS, rounds)
    assert "In bf16 (mixed precision, compile=auto, empty caches): 2.00× nanoGPT's wall time (met" in line
    assert "1.80× arlm eager in fp32, held-out 2.400 bits/char against fp32's 2.500" in line


def test_the_cpu_flags_name_native_bf16(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
    assert bench.native_bf16(info) == "CPU with native bf16 (avx512_bf16, amx_bf16)"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512bw\n")
    assert bench.native_bf16(info) == "CPU without native bf16 (emulated)"
    assert bench.native_bf16(tmp_path / "none") == "CPU bf16 support unknown"


TICKS = """import time
for _ in range(80):
    end = time.time() + 0.005
    while time.time() < end:
        pass
    print(time.time(), flush=True)
"""


def test_time_sliced_lanes_take_turns_one_process_at_a_time(tmp_path):
    # two lanes (the second of two jobs), each job printing the clock every 5 ms of its running time;
    # had two processes run at once, their clocks would interleave tick by tick
    def job(key):
        return bench.Job(key, [sys.executable, "-c", TICKS], tmp_path, {}, tmp_path / f"{key}.log",
                         lambda *a: {})

    timed = bench.time_sliced([[job("a")], [job("b"), job("c")]], slice_seconds=0.08)
    assert sorted(timed) == ["a", "b", "c"]
    ticks = sorted((float(t), key) for key, (wall, output, load) in timed.items() for t in output.split())
    assert all(len(output.split()) == 80 and wall > 0.4 and len(load) == 3
               for wall, output, load in timed.values())
    runs = [len(list(group)) for _, group in itertools.groupby(key for _, key in ticks)]  # in time order
    assert len(runs) >= 6  # they took turns
    assert sorted(runs)[len(runs) // 4] >= 5  # a turn holds several ticks of one process alone


def test_a_failing_time_sliced_job_stops_the_benchmark_in_one_line(tmp_path):
    job = bench.Job("a", [sys.executable, "-c", "raise SystemExit(3)"], tmp_path, {}, tmp_path / "a.log",
                    lambda *a: {})
    with pytest.raises(SystemExit, match=r"failed \(exit 3\); see .*a\.log"):
        bench.time_sliced([[job]], slice_seconds=0.05)


def test_a_folder_that_is_not_nanogpt_is_refused(tmp_path):
    with pytest.raises(SystemExit, match=r"has no train\.py; pass a checkout of karpathy/nanoGPT"):
        bench.prepare_nanogpt(tmp_path, tmp_path / "work")

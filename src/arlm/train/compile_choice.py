"""``compile=auto``: compile the training step only when the run is long enough to pay back the compile.

Compiling costs C seconds once (the first step waits for it) and then saves Δ seconds every step,
so over S steps it pays when

    S · Δ > C,    i.e.    S > S* = C / Δ.

On this project's 2-core CPU, for nanoGPT's baby config at 2 threads, with the whole step compiled as
its forward and backward pass only (:mod:`arlm.train.compiled_step`, since 2026-12-05):

* a compile from empty caches C ≈ 21 s (19.6–20.9 s measured, 2026-12-05; it was 32–52 s while clipping
  and AdamW were inside the graph);
* the step saves Δ ≈ 4.4–9.5 ms: arlm's eager step 46.4–47.6 ms, the compiled one 37–42 ms (the same
  code gives either on this shared machine, in spells of minutes): S* = C / Δ ≈ 2,200–4,700 steps;
* ``benchmarks/train_vs_nanogpt.py`` (docs/benchmarks.md "Training against the real nanoGPT") measures
  both sides of the choice at 2,000 and 5,000 iterations: at 2,000 compiling lost (111.9 against
  101.6 s eager), at 5,000 it broke even (248.2 against 247.4 s) in a run where the compiled step took
  42 ms.
* 2026-12-06, another machine of the same kind (AVX-512): C = 18.5–22.5 s; in alternating blocks in
  one process the step saved 3.5–5.2 ms (eager 38.4–50.4 ms, compiled 34.6–45.2); with the systems'
  processes time-sliced (``--sliced 2``, every system meeting the machine's spells alike) 5.1 ms at
  2,000 iterations and 2.4 ms at 5,000, where compiling lost to eager (231.3 against 224.9 s, 0.97×):
  S* ≈ 3,600–6,400 steps in one process, 9,400 in that run.

:data:`AUTO_COMPILE_STEPS` = 6,000 lies at the upper end of the in-process range (it was 4,000 until
2026-12-06, from the first range alone): a run just above it loses little against eager when the
compiled step is slow, and a run just below it leaves a few seconds on the table when it is fast. A
larger model saves more per step and compiles in about the same time (more kernels of the same
kinds), so there the threshold errs towards eager.

**Mixed precision on the CPU** (``dtype=bf16``) is its own case. The eager step is already fast there
(oneDNN's bf16 products, and the explicit attention of :func:`arlm.models.transformer.sdpa_pays`), the
compile (the forward pass, :func:`~arlm.train.trainer.compile_model`) is slower, and it saves less:
nanoGPT's baby config at 2 threads, 2026-12-06, on an AVX-512 CPU with native bf16, in alternating
blocks of steps in one process: C ≈ 25–37 s from empty caches, the step 25.5 against 21.6 ms (a
second run: 37.4 against 29.4 ms; a third 36.4 against 33.3): Δ ≈ 3–8 ms, S* ≈ 3,400–12,000 steps.
:data:`AUTO_COMPILE_STEPS_CPU_MIXED` = 8,000 lies towards the cautious end, as above.

The choice reads only the configuration (``max_steps``), never the clock or what is in the compile
cache: the same command trains the same weights whatever ran before it. A run that will be repeated
with the same shapes can set ``compile=true``: from the artifacts of an earlier run
(:mod:`arlm.train.compile_cache`) its compile takes seconds.
"""

from __future__ import annotations

from typing import Any

COMPILE_CHOICES = (True, False, "auto")

# S*, the steps from which compile=auto compiles, and C, a compile from an empty cache, for the message
# (the measurements in the module's docstring): fp32, and bf16/fp16 on the CPU
AUTO_COMPILE_STEPS = 6000
COLD_COMPILE_SECONDS = 20  # measured: 18.5-22.5 s
AUTO_COMPILE_STEPS_CPU_MIXED = 8000
COLD_COMPILE_SECONDS_CPU_MIXED = 25  # measured: 24.9-37.2 s


def auto_compile_steps(dtype: str = "fp32", device: str = "cpu") -> tuple[int, int, str]:
    """(S*, C in seconds, what is compiled) for a run's precision and device type."""
    if dtype != "fp32" and device == "cpu":
        return AUTO_COMPILE_STEPS_CPU_MIXED, COLD_COMPILE_SECONDS_CPU_MIXED, f"a compile of the {dtype} step"
    return AUTO_COMPILE_STEPS, COLD_COMPILE_SECONDS, "a compile"


def check_compile_setting(value: Any) -> None:
    """``compile`` must be true, false or "auto"."""
    from arlm.errors import ConfigError

    if value not in COMPILE_CHOICES or (value != "auto" and not isinstance(value, bool)):
        raise ConfigError(f"compile must be true, false or auto, not {value!r}; e.g. --set compile=auto")


def choose_compile(setting: bool | str, max_steps: int, dtype: str = "fp32",
                   device: str = "cpu") -> tuple[bool, str | None]:
    """(compile?, the one-line note of ``compile=auto``'s choice, None for an explicit setting)."""
    if setting != "auto":
        return bool(setting), None
    steps, seconds, what = auto_compile_steps(dtype, device)
    pays_back = f"pay back {what} (~{seconds} s from an empty cache on a 2-core CPU)"
    if max_steps >= steps:
        return True, (f"compile=auto: compiling, {max_steps:,} steps are at least the {steps:,} over which "
                      f"the step's time saved would {pays_back}")
    return False, (f"compile=auto: not compiling, {max_steps:,} steps are fewer than the {steps:,} that "
                   f"{pays_back}; set compile=true to compile anyway (seconds when an earlier run left its "
                   "compiled artifacts)")

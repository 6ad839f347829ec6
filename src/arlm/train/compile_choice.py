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

:data:`AUTO_COMPILE_STEPS` = 4,000 lies in that range, towards its cautious end: a run just above it
loses nothing measurable against eager when the compiled step is slow, and a run just below it leaves
a few seconds on the table when it is fast. A larger model saves more per step and compiles in about
the same time (more kernels of the same kinds), so there the threshold errs towards eager.

The choice reads only the configuration (``max_steps``), never the clock or what is in the compile
cache: the same command trains the same weights whatever ran before it. A run that will be repeated
with the same shapes can set ``compile=true``: from the artifacts of an earlier run
(:mod:`arlm.train.compile_cache`) its compile takes seconds.
"""

from __future__ import annotations

from typing import Any

COMPILE_CHOICES = (True, False, "auto")

# S*, the steps from which compile=auto compiles (the measurements in the module's docstring)
AUTO_COMPILE_STEPS = 4000
COLD_COMPILE_SECONDS = 20  # C, a compile from an empty cache, for the message (measured: 19.6-20.9 s)


def check_compile_setting(value: Any) -> None:
    """``compile`` must be true, false or "auto"."""
    from arlm.errors import ConfigError

    if value not in COMPILE_CHOICES or (value != "auto" and not isinstance(value, bool)):
        raise ConfigError(f"compile must be true, false or auto, not {value!r}; e.g. --set compile=auto")


def choose_compile(setting: bool | str, max_steps: int) -> tuple[bool, str | None]:
    """(compile?, the one-line note of ``compile=auto``'s choice, None for an explicit setting)."""
    if setting != "auto":
        return bool(setting), None
    if max_steps >= AUTO_COMPILE_STEPS:
        return True, (f"compile=auto: compiling, {max_steps:,} steps are at least the {AUTO_COMPILE_STEPS:,} "
                      f"over which the step's time saved pays back a compile (~{COLD_COMPILE_SECONDS} s "
                      "from an empty cache on a 2-core CPU)")
    return False, (f"compile=auto: not compiling, {max_steps:,} steps are fewer than the "
                   f"{AUTO_COMPILE_STEPS:,} that pay back a compile (~{COLD_COMPILE_SECONDS} s from an empty "
                   "cache on a 2-core CPU); set compile=true to compile anyway (seconds when an earlier run "
                   "left its compiled artifacts)")

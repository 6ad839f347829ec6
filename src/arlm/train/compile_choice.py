"""``compile=auto``: compile the training step only when the run is long enough to pay back the compile.

Compiling costs C seconds once (the first step waits for it) and then saves Δ seconds every step,
so over S steps it pays when

    S · Δ > C,    i.e.    S > S* = C / Δ.

On this project's 2-core CPU, for nanoGPT's baby config at 2 threads:

* idle machine: a compile from an empty cache C ≈ 35 s (34.5 s measured at load 1.5, 2026-12-04); the
  whole compiled step 21.7 ms against 28.2 ms for arlm's eager step with fused AdamW (≈ 30 ms with the
  default for-loop AdamW) (2026-11-28, the 2-thread table of the former ``benchmarks/train_baby.py``):
  Δ ≈ 6.5–8.5 ms, S* ≈ 4,000–5,400 steps;
* loaded machine (issue 24's run): C = 51.7 s, 42 ms against 60 ms a step: Δ ≈ 18 ms, S* ≈ 2,900;
* ``benchmarks/train_vs_nanogpt.py`` (docs/benchmarks.md "Training against the real nanoGPT") measures
  both sides of the choice at 2,000 and 5,000 iterations.

:data:`AUTO_COMPILE_STEPS` = 4,000 lies between: on an idle machine a run just above it can lose up to
~10 s against eager (~7% of such a run), on a loaded one a run just below it leaves a little on the
table. A larger model saves more per step and compiles in about the same time (more kernels of the
same kinds), so there the threshold errs towards eager.

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
COLD_COMPILE_SECONDS = 45  # C, a compile from an empty cache, for the message (measured: 35-50 s)


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

"""``compile=auto``: compile the training step only when the run is long enough to pay back the compile.

Compiling costs C seconds once (the first step waits for it) and then saves Δ seconds every step,
so over S steps it pays when

    S · Δ > C,    i.e.    S > S* = C / Δ.

On this project's 2-core CPU, for nanoGPT's baby config at 2 threads (``benchmarks/train_vs_nanogpt.py``,
docs/benchmarks.md "Training against the real nanoGPT"), a compile from an empty cache took C ≈ 35–50 s
and saved Δ ≈ 14–19 ms a step (the whole step as one graph against arlm's eager step), so
S* ≈ 2,500–3,500 steps; :data:`AUTO_COMPILE_STEPS` is the upper end, so that ``auto`` is never slower
than eager in those measurements. A larger model saves more per step and compiles in about the same
time (the graph has the same kinds of kernels, more of them), so the threshold errs towards eager.

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

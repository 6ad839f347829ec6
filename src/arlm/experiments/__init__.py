"""Experiments: the chapter's claims, measured (F11, F17, F18, F22, F23, F26, F28).

An experiment is a module of this package with

* ``NAME`` (what ``arlm experiment NAME`` takes) and ``SUMMARY`` (one line for ``--help``);
* ``run(config: ExperimentConfig) -> dict``: does the work (with a progress bar when
  ``config.show_progress``) and returns JSON-ready results: every number the report shows;
* ``render(results: dict, out_dir: Path) -> str``: the Markdown body of ``report.md`` (the claim,
  tables of what was measured, where and why they differ), writing its PNG plots into ``out_dir``
  with :func:`arlm.experiments.plots.save_png`. It reads ``results`` only, so ``arlm report DIR``
  re-renders a report from ``results.json`` alone.

Each must follow the protocol of :mod:`arlm.experiments.protocol` (choices on validation, the test
split read once at the end, equal budgets, seeds with intervals); docs/experiments.md, "The protocol",
states it and names the experiments that do not follow it yet.

:data:`EXPERIMENTS` maps names to module paths (imported on demand, so listing them is cheap).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from arlm.errors import ConfigError

# name -> module (one line per experiment)
EXPERIMENTS: dict[str, str] = {
    "ladder": "arlm.experiments.ladder",
    "decoding": "arlm.experiments.decoding",
    "exposure-bias": "arlm.experiments.exposure_bias",
    "complexity": "arlm.experiments.complexity",
    "orders-text": "arlm.experiments.orders_text",
    "orders-images": "arlm.experiments.orders_images",
    "infinigram-mix": "arlm.experiments.infinigram_mix",
}


@dataclass(frozen=True)
class ExperimentConfig:
    """What every experiment takes: the same seed and threads give the same numbers."""

    out: Path  # the experiment's folder: results.json, report.md, *.png
    quick: bool = False  # a small run that finishes in well under a minute (tests, a first look)
    device: str = "cpu"  # "cpu" or "cuda"
    threads: int = 1  # torch CPU threads
    seed: int = 0
    checkpoint: Path | None = None  # an experiment that needs a trained model may take one
    show_progress: bool | None = None  # None: a progress bar when stderr is a terminal


def experiment_module(name: str) -> ModuleType:
    """The module of experiment ``name`` (ConfigError naming the known ones otherwise)."""
    if name not in EXPERIMENTS:
        known = ", ".join(sorted(EXPERIMENTS)) or "none yet"
        raise ConfigError(f"unknown experiment {name!r}; choose one of {known}")
    try:
        return importlib.import_module(EXPERIMENTS[name])
    except ModuleNotFoundError as e:
        if e.name != EXPERIMENTS[name]:
            raise
        raise ConfigError(f"experiment {name!r} is not in this build of arlm; choose another") from None

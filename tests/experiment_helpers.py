"""What the experiment tests share: one quick run of an experiment module, rendered from a strict JSON
round trip of its results (no NaN or inf anywhere), with torch's thread count restored afterwards."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from arlm.experiments import ExperimentConfig


def quick_run(experiment: ModuleType, out: Path) -> tuple[dict[str, Any], str, Path]:
    """``experiment.run`` with ``--quick`` into ``out``, then its ``render``: (results, body, out)."""
    threads = torch.get_num_threads()
    try:
        results = experiment.run(ExperimentConfig(out=out, quick=True, threads=1, show_progress=False))
        body = experiment.render(json.loads(json.dumps(results, allow_nan=False)), out)
    finally:
        torch.set_num_threads(threads)
    return results, body, out

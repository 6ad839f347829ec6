"""Plots for reports: matplotlib with the Agg backend (no display), written atomically, kept small.

Experiments draw on a :func:`new_figure` and save it with :func:`save_png`; nothing here uses pyplot's
global state, so plots are safe in tests, servers and threads.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from arlm.io import atomic_write

DPI = 100


def new_figure(width: float = 6.4, height: float = 4.0) -> Figure:
    """A blank figure of ``width`` × ``height`` inches (640 × 400 pixels by default)."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG atomically (a crash leaves the old file or the new one, never half)."""
    path = Path(path)
    with atomic_write(path, "wb", encoding=None) as f:
        fig.savefig(f, format="png", dpi=DPI)
    return path

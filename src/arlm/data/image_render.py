"""Drawing small grey-level images: a PNG grid for files and notes, ASCII shades for the terminal.

Both take a batch of images (N, H, W) of integer grey levels 0..levels-1 (the digits: 0 = paper,
16 = ink) and lay them out in rows of ``columns`` images.

* :func:`save_image_grid` draws with matplotlib's ``Figure`` directly (no pyplot, no GUI backend)
  and writes the PNG atomically. Each image pixel is a ``scale``×``scale`` block, images are
  separated by a one-pixel line, and the PNG's size in pixels is exact (see :func:`grid_size`),
  so 100 digits at the default scale make a file of a few kilobytes.
* :func:`ascii_images` writes each pixel as a character from dark-on-light shades
  ``" .:-=+*#%@"`` (paper is a space), twice as wide as tall so the digits keep their shape.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from arlm.data.images import LEVELS
from arlm.errors import ConfigError, DataError
from arlm.io import atomic_write

DPI = 128  # a power of two: inches = pixels / DPI is exact, so the PNG has exactly the planned size
PAD_PX = 4  # blank margin around the grid
TITLE_PX = 18  # height of the title band
LABEL_CHAR_PX = 7  # width of one row-label character (at FONT_PT)
FONT_PT = 6.5
GAP_COLOR = (0.80, 0.85, 0.95)  # the line between images
SHADES = " .:-=+*#%@"


def _checked(images: np.ndarray, levels: int) -> np.ndarray:
    """images (N, H, W) as int64 grey levels in 0..levels-1, else a DataError."""
    images = np.asarray(images)
    if images.ndim != 3:
        raise DataError(f"images must be a batch (N, H, W), got shape {images.shape}; add a leading axis "
                        "for a single image")
    grey = images.astype(np.int64)
    if not np.array_equal(grey, images) or grey.min(initial=0) < 0 or grey.max(initial=0) >= levels:
        raise DataError(f"pixel values must be integer grey levels 0..{levels - 1}; convert tokens with "
                        "tokens_to_image first")
    return grey


def _layout(count: int, columns: int | None) -> tuple[int, int]:
    """(rows, columns) of the grid for ``count`` images, at most ``columns`` per row."""
    if columns is not None and columns < 1:
        raise ConfigError(f"columns must be at least 1, got {columns}")
    cols = max(1, min(count, columns or 10))
    return max(1, math.ceil(count / cols)), cols


# -------------------------------------------------------------------------------------------- PNG
def grid_size(count: int, height: int, width: int, *, columns: int | None = None, scale: int = 4,
              row_labels: Sequence[str] | None = None, title: str | None = None) -> tuple[int, int]:
    """(height, width) in pixels of the PNG that :func:`save_image_grid` writes with these arguments.

    The mosaic is rows·H + (rows−1) image pixels tall (one-pixel lines between images), each pixel
    ``scale`` screen pixels; around it a ``PAD_PX`` margin, a title band and a row-label column.
    """
    rows, cols = _layout(count, columns)
    left = PAD_PX + (LABEL_CHAR_PX * max(map(len, row_labels), default=0) + PAD_PX if row_labels else 0)
    top = PAD_PX + (TITLE_PX if title else 0)
    mosaic_h = (rows * (height + 1) - 1) * scale
    mosaic_w = (cols * (width + 1) - 1) * scale
    return top + mosaic_h + PAD_PX, left + mosaic_w + PAD_PX


def save_image_grid(path: str | os.PathLike, images: np.ndarray, *, columns: int | None = None,
                    row_labels: Sequence[str] | None = None, title: str | None = None, scale: int = 4,
                    levels: int = LEVELS) -> Path:
    """Write images (N, H, W) as a PNG grid, ``columns`` per row (default up to 10), atomically.

    ``row_labels``: one label per grid row, written to the left (e.g. the pixel order of each row);
    ``title``: a line above. Returns the path. Ink (the highest level) is black, paper white.
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    grey = _checked(images, levels)
    if len(grey) == 0:
        raise DataError("there are no images to draw; pass at least one")
    if scale < 1:
        raise ConfigError(f"scale must be a whole number of screen pixels per image pixel, got {scale}")
    count, height, width = grey.shape
    rows, cols = _layout(count, columns)
    if row_labels is not None and len(row_labels) != rows:
        raise ConfigError(f"the grid has {rows} rows but {len(row_labels)} row labels were given; "
                          "give one label per row")

    # the mosaic in image pixels: RGB, gaps in GAP_COLOR, unused cells left as gap
    mosaic = np.empty((rows * (height + 1) - 1, cols * (width + 1) - 1, 3))
    mosaic[:] = GAP_COLOR
    shade = 1.0 - grey / (levels - 1)  # (N, H, W): 1 = white paper, 0 = black ink
    for i in range(count):
        r, c = divmod(i, cols)
        mosaic[r * (height + 1): r * (height + 1) + height,
               c * (width + 1): c * (width + 1) + width] = shade[i, :, :, None]

    fig_h, fig_w = grid_size(count, height, width, columns=columns, scale=scale, row_labels=row_labels,
                             title=title)
    top = PAD_PX + (TITLE_PX if title else 0)
    mosaic_h, mosaic_w = mosaic.shape[0] * scale, mosaic.shape[1] * scale
    left = fig_w - PAD_PX - mosaic_w
    fig = Figure(figsize=(fig_w / DPI, fig_h / DPI), dpi=DPI)
    ax = fig.add_axes((left / fig_w, (fig_h - top - mosaic_h) / fig_h, mosaic_w / fig_w, mosaic_h / fig_h))
    ax.imshow(mosaic, interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    if title:
        fig.text(0.5, 1 - (PAD_PX + TITLE_PX / 2) / fig_h, title, ha="center", va="center", fontsize=FONT_PT)
    for r, label in enumerate(row_labels or []):
        centre = top + (r * (height + 1) + height / 2) * scale
        fig.text((left - PAD_PX) / fig_w, 1 - centre / fig_h, label, ha="right", va="center",
                 fontsize=FONT_PT)
    path = Path(path)
    with atomic_write(path, "wb", encoding=None) as f:
        fig.savefig(f, format="png", dpi=DPI, metadata={"Software": None})
    return path


# ------------------------------------------------------------------------------------------ ASCII
def ascii_images(images: np.ndarray, *, columns: int | None = None, labels: Sequence[str] | None = None,
                 shades: str = SHADES, levels: int = LEVELS, pixel_width: int = 2, gap: str = "  ") -> str:
    """Images (N, H, W) side by side as text, ``columns`` per row of images (default up to 10).

    Level g is ``shades[round(g·(len(shades)−1)/(levels−1))]``, repeated ``pixel_width`` times.
    ``labels``: one short label per image, on a line above it. A row of images is H lines (plus the
    label line), rows are separated by a blank line, and there is no trailing newline.
    """
    grey = _checked(images, levels)
    if len(shades) < 2:
        raise ConfigError("give at least two shades, light to dark, e.g. ' .:-=+*#%@'")
    if labels is not None and len(labels) != len(grey):
        raise ConfigError(f"there are {len(grey)} images but {len(labels)} labels; give one label per image")
    if len(grey) == 0:
        return ""
    count, height, width = grey.shape
    _, cols = _layout(count, columns)
    top = len(shades) - 1
    index = (grey * top + (levels - 1) // 2) // (levels - 1)  # rounded to the nearest shade
    chars = np.array([ch * pixel_width for ch in shades])[index]  # (N, H, W) strings
    cell = width * pixel_width
    blocks = []
    for first in range(0, count, cols):
        group = range(first, min(first + cols, count))
        lines = [gap.join(labels[i][:cell].ljust(cell) for i in group).rstrip()] if labels is not None else []
        lines += [gap.join("".join(chars[i, y]) for i in group).rstrip() for y in range(height)]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)

"""Figures for papers and reports, drawn with matplotlib (imported only when one is drawn).

``query_points_figure`` is the figure of the SAGAN and non-local papers: query points
marked on the image, and beside it, for each point, where that point attends.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from torch import nn

from convattn.files.info import CheckpointInfo
from convattn.files.prepare import Images, as_pixels
from convattn.nn.interface import is_attention
from convattn.readout.attention import attention_maps, module_inputs
from convattn.readout.grid import Grid

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CMAP = "inferno"


def query_points_figure(model: nn.Module, image: Images, points: Sequence[tuple[int, int]],
                        module: str | None = None, info: CheckpointInfo | None = None
                        ) -> Figure:
    """A matplotlib ``Figure`` (never shown): the image with the query ``points`` marked
    and numbered, then one panel per point with that point's attention map over the image,
    all on one colour scale with one colour bar.

    ``image`` is one image in any form ``info.prepare`` takes (uint8); ``points`` are
    (row, col) input pixels; ``module`` names an attention module (by default the first
    one, see ``attention_maps``); ``info`` gives the normalisation and image size (by
    default the CIFAR-10 normalisation of convattn's own networks, at 32 x 32). The map
    of a point is the attention row of the query cell holding it, on the key grid,
    stretched over the image (nearest, so a panel's data is exactly that row).
    """
    from matplotlib.figure import Figure

    if info is None:
        info = _default_info()
    pixels = np.asarray(as_pixels(image, info.input_size))
    if pixels.shape[0] != 1:
        raise ValueError(f"give one image, not a batch of {pixels.shape[0]}.")
    height, width = info.image_size
    points = [(int(r), int(c)) for r, c in points]
    if not points:
        raise ValueError("give at least one query point (row, col).")
    for r, c in points:
        if not (0 <= r < height and 0 <= c < width):
            raise ValueError(f"the point ({r}, {c}) is outside the {height}x{width} image.")
    x = info.normalise(pixels)
    maps = attention_maps(model, x)
    if not maps:
        raise ValueError("the model has no attention module whose maps convattn can read.")
    name = next(iter(maps)) if module is None else module
    if name not in maps:
        raise ValueError(f"no attention module {name!r}; the model's are "
                         f"{', '.join(maps)}.")
    matrix = maps[name][0].float().cpu().numpy()  # (Nq, Nk)
    query = Grid(*_grid_shape(matrix.shape[0], height, width), height, width)
    keys = _key_grid(model, x, name, matrix.shape[1], query, height, width)
    rows = [matrix[query.index_of(p)].reshape(keys) for p in points]
    top = max(float(r.max()) for r in rows) or 1.0

    n = len(points)
    fig = Figure(figsize=(2.6 * (n + 1) + 0.8, 2.9), layout="constrained")
    axes = fig.subplots(1, n + 1, squeeze=False)[0]
    grey = pixels[0] if info.channels == 3 else _grey(pixels[0])
    extent = (-0.5, width - 0.5, height - 0.5, -0.5)
    axes[0].imshow(grey, cmap=None if grey.ndim == 3 else "gray", vmin=0, vmax=255)
    axes[0].set_title(f"{name}: query points", fontsize=9)
    image = None
    for i, ((r, c), row) in enumerate(zip(points, rows), start=1):
        for ax in (axes[0], axes[i]):
            ax.plot([c], [r], marker="o", markersize=7, markerfacecolor="none",
                    markeredgecolor="cyan", markeredgewidth=1.5, linestyle="none")
        axes[0].annotate(str(i), (c, r), xytext=(4, 4), textcoords="offset points",
                         color="cyan", fontsize=9, fontweight="bold")
        image = axes[i].imshow(row, cmap=CMAP, vmin=0.0, vmax=top, extent=extent,
                               interpolation="nearest")
        axes[i].set_title(f"{i}: ({r}, {c})", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlim(-0.5, width - 0.5)
        ax.set_ylim(height - 0.5, -0.5)
    fig.colorbar(image, ax=list(axes[1:]), label="attention", shrink=0.9)
    return fig


def _grey(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) grey, as a grey network sees it."""
    w = np.array([19595, 38470, 7471], dtype=np.int64)
    return ((rgb.astype(np.int64) * w).sum(-1) + 32768) >> 16


def _default_info() -> CheckpointInfo:
    from convattn.files.data import CIFAR10_MEAN, CIFAR10_STD

    return CheckpointInfo(arch="", model_config={}, classes=[], mean=CIFAR10_MEAN,
                          std=CIFAR10_STD)


def _grid_shape(n: int, height: int, width: int) -> tuple[int, int]:
    """(rows, cols) with rows * cols = n closest to the image's aspect: a square n on a
    square image is sqrt(n) a side."""
    best = None
    for rows in range(1, n + 1):
        if n % rows == 0:
            cols = n // rows
            miss = abs(math.log((rows / cols) / (height / width)))
            if best is None or miss < best[0]:
                best = (miss, rows, cols)
    assert best is not None
    return best[1], best[2]


def _key_grid(model: nn.Module, x, name: str, nk: int, query: Grid, height: int,
              width: int) -> tuple[int, int]:
    if nk == query.cells:
        return query.shape
    layer = dict(model.named_modules()).get(name)
    if layer is not None and is_attention(layer):
        return tuple(layer.key_grid(module_inputs(model, x)[name]))
    side = math.isqrt(nk)
    return (side, side) if side * side == nk else _grid_shape(nk, height, width)

"""Figures for papers and reports, drawn with matplotlib (imported only when one is drawn).

``query_points_figure`` is the figure of the SAGAN and non-local papers: query points
marked on the image, and beside it, for each point, where that point attends.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from torch import nn

from convattn.files.info import CheckpointInfo
from convattn.files.prepare import Images, as_pixels
from convattn.readout.analysis import attention_sources
from convattn.readout.grid import Grid

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CMAP = "inferno"
FORMATS = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf"}


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
    of a point is the attention row (the mean of the heads' rows) of the query cell holding
    it, on the key grid, which may be coarser than the query grid, stretched over the
    image (nearest, so a panel's data is exactly that row). Only those rows are computed:
    no (Nq, Nk) matrix is formed for a module whose queries and keys are known.
    """
    if info is None:
        info = _default_info()
    pixels = np.asarray(as_pixels(image, info.input_size))
    if pixels.shape[0] != 1:
        raise ValueError(f"give one image, not a batch of {pixels.shape[0]}.")
    height, width = info.image_size
    points = _checked(points, height, width)
    _, found = attention_sources(model, info.normalise(pixels))
    if not found:
        raise ValueError("the model has no attention module whose maps convattn can read.")
    name = next(iter(found)) if module is None else module
    if name not in found:
        raise ValueError(f"no attention module {name!r}; the model's are "
                         f"{', '.join(found)}.")
    m = found[name]
    query = Grid(*m.grid, height, width)
    rows = [m.source.row(query.index_of(p)).mean(dim=0).numpy().reshape(m.key_grid)
            for p in points]
    return points_figure(pixels[0], rows, points, name, grey=info.channels == 1)


def _checked(points: Sequence[tuple[int, int]], height: int, width: int
             ) -> list[tuple[int, int]]:
    points = [(int(r), int(c)) for r, c in points]
    if not points:
        raise ValueError("give at least one query point (row, col).")
    for r, c in points:
        if not (0 <= r < height and 0 <= c < width):
            raise ValueError(f"the point ({r}, {c}) is outside the {height}x{width} image.")
    return points


def points_figure(pixels: np.ndarray, rows: Sequence[np.ndarray],
                  points: Sequence[tuple[int, int]], title: str, grey: bool = False
                  ) -> Figure:
    """The drawing of ``query_points_figure`` from rows already computed: ``pixels`` one
    (H, W, 3) uint8 image of any size, ``rows`` each point's (Hk, Wk) attention row (any
    key grid), ``points`` (row, col) pixels, ``title`` above the image (the module's
    name); ``grey``: the image as a grey network sees it."""
    from matplotlib.figure import Figure

    height, width = pixels.shape[:2]
    points = _checked(points, height, width)
    if len(rows) != len(points):
        raise ValueError(f"{len(points)} points but {len(rows)} rows.")
    top = max(float(np.max(r)) for r in rows) or 1.0
    n = len(points)
    aspect = height / width
    fig = Figure(figsize=(2.6 * (n + 1) + 0.8, 2.6 * min(max(aspect, 0.5), 2.0) + 0.3),
                 layout="constrained")
    axes = fig.subplots(1, n + 1, squeeze=False)[0]
    shown = _grey(pixels) if grey else pixels
    extent = (-0.5, width - 0.5, height - 0.5, -0.5)
    axes[0].imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0, vmax=255)
    axes[0].set_title(f"{title}: query points".replace("$", r"\$"), fontsize=9)
    image = None
    for i, ((r, c), row) in enumerate(zip(points, rows), start=1):
        for ax in (axes[0], axes[i]):
            ax.plot([c], [r], marker="o", markersize=7, markerfacecolor="none",
                    markeredgecolor="cyan", markeredgewidth=1.5, linestyle="none")
        axes[0].annotate(str(i), (c, r), xytext=(4, 4), textcoords="offset points",
                         color="cyan", fontsize=9, fontweight="bold")
        image = axes[i].imshow(np.asarray(row), cmap=CMAP, vmin=0.0, vmax=top, extent=extent,
                               interpolation="nearest")
        axes[i].set_title(f"{i}: ({r}, {c})", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlim(-0.5, width - 0.5)
        ax.set_ylim(height - 0.5, -0.5)
    fig.colorbar(image, ax=list(axes[1:]), label="attention", shrink=0.9)
    return fig


def figure_bytes(fig: Figure, fmt: str, dpi: int = 200) -> bytes:
    """``fig`` saved as ``fmt`` ("png", "svg" or "pdf", see ``FORMATS``)."""
    if fmt not in FORMATS:
        raise ValueError(f"a figure is saved as {', '.join(FORMATS)}, not {fmt!r}.")
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def _grey(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) grey, as a grey network sees it."""
    w = np.array([19595, 38470, 7471], dtype=np.int64)
    return ((rgb.astype(np.int64) * w).sum(-1) + 32768) >> 16


def _default_info() -> CheckpointInfo:
    from convattn.files.data import CIFAR10_MEAN, CIFAR10_STD

    return CheckpointInfo(arch="", model_config={}, classes=[], mean=CIFAR10_MEAN,
                          std=CIFAR10_STD)

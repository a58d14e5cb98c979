"""Downloads: the page's figures as PNG (matplotlib) and their arrays as .npz; the query
points figure (``convattn.readout.figures``) as PNG, SVG or PDF.

The page passes these as callables to ``st.download_button`` so that nothing is drawn
until someone clicks. Images may be any size; maps lie on their own grids (the key grid
of a row and of attention received, the query grid of the spread), stretched over the
image.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
import torch

from appkit import pictures
from convattn.readout import figures
from convattn.readout.analysis import ModuleView, QueryView, query_view

MATRIX_BYTES = 64 << 20  # the largest (Nq, Nk) fp32 matrix put in the arrays' download

if TYPE_CHECKING:  # imported where a figure is drawn: 0.5 s that no first run needs
    from matplotlib.figure import Figure


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150, bbox_inches="tight")
    return buf.getvalue()


def _npz(**arrays: object) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def _plain(text: str) -> str:
    """``text`` as it is: titles hold class names, which come from files, and matplotlib
    would typeset what lies between two $ as maths."""
    return text.replace("$", r"\$")


def _tidy(ax, title: str) -> None:
    ax.set_title(_plain(title), fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def _bar(fig: Figure, image, ax, low: float, high: float) -> None:
    """A horizontal colour bar under a map, labelled at its ends and middle only; the end
    labels stay within the bar's width, so those of neighbouring bars never meet."""
    bar = fig.colorbar(image, ax=ax, location="bottom", aspect=15, pad=0.03)
    ticks = np.linspace(low, high, 3)
    bar.ax.set_xticks(ticks, labels=[f"{v:.3g}" for v in ticks], fontsize=8)
    for label, align in zip(bar.ax.get_xticklabels(), ("left", "center", "right")):
        label.set_horizontalalignment(align)


def _spacer(fig: Figure, image, ax) -> None:
    """The room of a colour bar under the input, left empty: it keeps every square of the
    row the same size."""
    fig.colorbar(image, ax=ax, location="bottom", aspect=15, pad=0.03).ax.set_visible(False)


def _extent(pixels: np.ndarray) -> tuple[float, float, float, float]:
    """Maps of any resolution are drawn over the whole input."""
    h, w = pixels.shape[:2]
    return (-0.5, w - 0.5, h - 0.5, -0.5)


def attention_png(pixels: np.ndarray, view: ModuleView, query: QueryView,
                  row_range: tuple[float, float], received_range: tuple[float, float],
                  opacity: float, title: str) -> bytes:
    return _png(attention_figure(pixels, view, query, row_range, received_range, opacity,
                                 title))


def attention_figure(pixels: np.ndarray, view: ModuleView, query: QueryView,
                     row_range: tuple[float, float], received_range: tuple[float, float],
                     opacity: float, title: str) -> Figure:
    """Input, the query's row over it, attention received, and per-query spread: four
    equal squares in a row, each map with its colour bar underneath (for slides)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.6), layout="constrained")
    fig.get_layout_engine().set(wspace=0.12)
    axes = fig.subplots(1, 4)
    extent = _extent(pixels)
    im = axes[0].imshow(pixels, interpolation="nearest")
    _tidy(axes[0], f"input\n({pixels.shape[0]}x{pixels.shape[1]} pixels)")
    _spacer(fig, im, axes[0])
    r, c = query.pixel
    axes[1].imshow(pixels, interpolation="nearest", extent=extent)
    im = axes[1].imshow(query.row, cmap=pictures.ATTENTION_CMAP, vmin=row_range[0],
                        vmax=row_range[1], alpha=opacity, interpolation="nearest",
                        extent=extent)
    axes[1].plot([c], [r], marker="s", markersize=6, markerfacecolor="none",
                 markeredgecolor="cyan", markeredgewidth=2)
    _tidy(axes[1], f"where the query\n(row {r}, column {c}) looks")
    _bar(fig, im, axes[1], *row_range)
    h, w = view.key_grid
    im = axes[2].imshow(view.received, cmap=pictures.ATTENTION_CMAP, vmin=received_range[0],
                        vmax=received_range[1], interpolation="nearest", extent=extent)
    _tidy(axes[2], f"attention received\n({h}x{w} key positions)")
    _bar(fig, im, axes[2], *received_range)
    im = axes[3].imshow(view.spread, cmap=pictures.SPREAD_CMAP, vmin=0, vmax=1,
                        interpolation="nearest", extent=extent)
    _tidy(axes[3], "spread of each query\n(0 one spot, 1 everywhere)")
    _bar(fig, im, axes[3], 0.0, 1.0)
    fig.suptitle(_plain(title), fontsize=10)
    return fig


def attention_npz(pixels: np.ndarray, view: ModuleView, query: QueryView,
                  matrix_bytes: int = MATRIX_BYTES) -> bytes:
    """Arrays behind the attention panel: the view's (Nq, Nk) matrix when it fits
    ``matrix_bytes`` in fp32 (else none: ``attention_left_out`` says why), the queries,
    keys and scale that make it when they are known; gamma and the ratio are NaN for a
    module without a gate."""
    h, nq, nk = view.num_heads, view.grid[0] * view.grid[1], view.key_grid[0] * view.key_grid[1]
    extra: dict[str, object] = {}
    if nq * nk * 4 * (h + 1) <= matrix_bytes:
        with torch.no_grad():
            a = view.source().full()  # (h, Nq, Nk)
        extra["attention"] = (a.mean(dim=0) if view.head is None else a[view.head]).numpy()
    else:
        extra["attention_left_out"] = (f"the {nq:,} x {nk:,} matrix is over "
                                       f"{matrix_bytes >> 20} MiB; recompute its rows from "
                                       "queries, keys and scale")
    if view.q is not None and view.k is not None:
        extra.update(queries=view.q, keys=view.k, scale=view.scale)
    nan = float("nan")
    return _npz(image=pixels, module=view.name, grid=np.array(view.grid),
                key_grid=np.array(view.key_grid),
                query_pixel=np.array(query.pixel), query_cell=np.array(query.cell),
                query_index=query.index, attention_row=query.row,
                attention_received=view.received, spread=view.spread,
                head=-1 if view.head is None else view.head,
                gamma=nan if view.gamma is None else view.gamma,
                residual_ratio=nan if view.ratio is None else view.ratio, **extra)


def query_points(pixels: np.ndarray, view: ModuleView, points: list[tuple[int, int]],
                 fmt: str, title: str = "", grey: bool = False) -> bytes:
    """The query points figure (``convattn.readout.figures.points_figure``) of ``view``'s
    rows at ``points``, saved as ``fmt`` (png, svg or pdf)."""
    rows = [query_view(view, p).row for p in points]
    fig = figures.points_figure(pixels, rows, points, title or view.name, grey=grey)
    return figures.figure_bytes(fig, fmt)


def attributions_png(pixels: np.ndarray, maps: dict[str, np.ndarray],
                     limits: dict[str, float], title: str) -> bytes:
    return _png(attributions_figure(pixels, maps, limits, title))


def attributions_figure(pixels: np.ndarray, maps: dict[str, np.ndarray],
                        limits: dict[str, float], title: str) -> Figure:
    """The input and each method's signed map on a symmetric colour range."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2.4 * (len(maps) + 1), 3.2), layout="constrained")
    fig.get_layout_engine().set(wspace=0.12)
    axes = fig.subplots(1, len(maps) + 1, squeeze=False)[0]
    im = axes[0].imshow(pixels, interpolation="nearest")
    _tidy(axes[0], "input")
    _spacer(fig, im, axes[0])
    for ax, (label, values) in zip(axes[1:], maps.items()):
        m = limits[label]
        im = ax.imshow(values, cmap=pictures.ATTRIBUTION_CMAP, vmin=-m, vmax=m,
                       interpolation="nearest")
        _tidy(ax, label)
        _bar(fig, im, ax, -m, m)
    fig.suptitle(_plain(title), fontsize=10)
    return fig


def attributions_npz(pixels: np.ndarray, target: int, maps: dict[str, np.ndarray]) -> bytes:
    return _npz(image=pixels, target=target, methods=np.array(list(maps)),
                maps=np.stack(list(maps.values())) if maps else np.zeros((0, 32, 32)))

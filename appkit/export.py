"""Downloads: the page's figures as PNG (matplotlib) and their arrays as .npz.

The page passes these as callables to ``st.download_button`` so that nothing is drawn
until someone clicks.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from matplotlib.figure import Figure

from convattn.layers import attention_matrix

from . import render
from .analysis import ModuleView, QueryView


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150, bbox_inches="tight")
    return buf.getvalue()


def _npz(**arrays: object) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def _tidy(ax, title: str) -> None:
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


# Maps of any resolution are drawn over the whole 32x32 input.
_EXTENT = (-0.5, 31.5, 31.5, -0.5)


def attention_png(pixels: np.ndarray, view: ModuleView, query: QueryView,
                  row_range: tuple[float, float], received_range: tuple[float, float],
                  opacity: float, title: str) -> bytes:
    """Input, the query's row over it, attention received, and per-query spread."""
    fig = Figure(figsize=(12, 3.4))
    axes = fig.subplots(1, 4)
    axes[0].imshow(pixels, interpolation="nearest")
    _tidy(axes[0], "input (32x32)")
    r, c = query.pixel
    axes[1].imshow(pixels, interpolation="nearest", extent=_EXTENT)
    im = axes[1].imshow(query.row, cmap=render.ATTENTION_CMAP, vmin=row_range[0],
                        vmax=row_range[1], alpha=opacity, interpolation="nearest",
                        extent=_EXTENT)
    axes[1].plot([c], [r], marker="s", markersize=6, markerfacecolor="none",
                 markeredgecolor="cyan", markeredgewidth=2)
    _tidy(axes[1], f"where the query at row {r}, col {c} looks")
    fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.02)
    h, w = view.grid
    im = axes[2].imshow(view.received, cmap=render.ATTENTION_CMAP, vmin=received_range[0],
                        vmax=received_range[1], interpolation="nearest", extent=_EXTENT)
    _tidy(axes[2], f"attention received ({h}x{w} positions)")
    fig.colorbar(im, ax=axes[2], fraction=0.046, pad=0.02)
    im = axes[3].imshow(view.spread, cmap=render.SPREAD_CMAP, vmin=0, vmax=1,
                        interpolation="nearest", extent=_EXTENT)
    _tidy(axes[3], "spread of each query (0 one spot, 1 all)")
    fig.colorbar(im, ax=axes[3], fraction=0.046, pad=0.02)
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def attention_npz(pixels: np.ndarray, view: ModuleView, query: QueryView) -> bytes:
    """Arrays behind the attention panel, including the full (N, N) matrix."""
    a = attention_matrix(torch.from_numpy(view.q), torch.from_numpy(view.k))  # (h, N, N)
    a = (a.mean(dim=0) if view.head is None else a[view.head]).numpy()
    return _npz(image=pixels, module=view.name, grid=np.array(view.grid),
                query_pixel=np.array(query.pixel), query_cell=np.array(query.cell),
                query_index=query.index, attention_row=query.row,
                attention_received=view.received, spread=view.spread,
                attention=a, head=-1 if view.head is None else view.head,
                queries=view.q, keys=view.k,
                gamma=view.gamma, residual_ratio=view.ratio)


def attributions_png(pixels: np.ndarray, maps: dict[str, np.ndarray],
                     limits: dict[str, float], title: str) -> bytes:
    """The input and each method's signed map on a symmetric colour range."""
    fig = Figure(figsize=(2.3 * (len(maps) + 1), 2.9))
    axes = fig.subplots(1, len(maps) + 1, squeeze=False)[0]
    axes[0].imshow(pixels, interpolation="nearest")
    _tidy(axes[0], "input")
    for ax, (label, values) in zip(axes[1:], maps.items()):
        m = limits[label]
        im = ax.imshow(values, cmap=render.ATTRIBUTION_CMAP, vmin=-m, vmax=m,
                       interpolation="nearest")
        _tidy(ax, label)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, orientation="horizontal")
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def attributions_npz(pixels: np.ndarray, target: int, maps: dict[str, np.ndarray]) -> bytes:
    return _npz(image=pixels, target=target, methods=np.array(list(maps)),
                maps=np.stack(list(maps.values())) if maps else np.zeros((0, 32, 32)))

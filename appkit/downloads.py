"""Downloads: the page's figures as PNG (matplotlib) and their arrays as .npz.

The page passes these as callables to ``st.download_button`` so that nothing is drawn
until someone clicks.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from matplotlib.figure import Figure

from appkit import pictures
from convattn.nn.self_attention import attention_matrix
from convattn.readout.analysis import ModuleView, QueryView


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


# Maps of any resolution are drawn over the whole 32x32 input.
_EXTENT = (-0.5, 31.5, 31.5, -0.5)


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
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    fig.get_layout_engine().set(wspace=0.12)
    axes = fig.subplots(1, 4)
    im = axes[0].imshow(pixels, interpolation="nearest")
    _tidy(axes[0], "input\n(32x32 pixels)")
    _spacer(fig, im, axes[0])
    r, c = query.pixel
    axes[1].imshow(pixels, interpolation="nearest", extent=_EXTENT)
    im = axes[1].imshow(query.row, cmap=pictures.ATTENTION_CMAP, vmin=row_range[0],
                        vmax=row_range[1], alpha=opacity, interpolation="nearest",
                        extent=_EXTENT)
    axes[1].plot([c], [r], marker="s", markersize=6, markerfacecolor="none",
                 markeredgecolor="cyan", markeredgewidth=2)
    _tidy(axes[1], f"where the query\n(row {r}, column {c}) looks")
    _bar(fig, im, axes[1], *row_range)
    h, w = view.grid
    im = axes[2].imshow(view.received, cmap=pictures.ATTENTION_CMAP, vmin=received_range[0],
                        vmax=received_range[1], interpolation="nearest", extent=_EXTENT)
    _tidy(axes[2], f"attention received\n({h}x{w} positions)")
    _bar(fig, im, axes[2], *received_range)
    im = axes[3].imshow(view.spread, cmap=pictures.SPREAD_CMAP, vmin=0, vmax=1,
                        interpolation="nearest", extent=_EXTENT)
    _tidy(axes[3], "spread of each query\n(0 one spot, 1 everywhere)")
    _bar(fig, im, axes[3], 0.0, 1.0)
    fig.suptitle(_plain(title), fontsize=10)
    return fig


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
    return _png(attributions_figure(pixels, maps, limits, title))


def attributions_figure(pixels: np.ndarray, maps: dict[str, np.ndarray],
                        limits: dict[str, float], title: str) -> Figure:
    """The input and each method's signed map on a symmetric colour range."""
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

"""Plotly charts for the teaching pages: vectors, histograms, curves and step lines."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .figures import PALETTE as COLOURS  # no green or red: they mean right and wrong

GREY = "#9a9a9a"


def _layout(fig: go.Figure, height: int, x: str, y: str, legend_below: bool = False
            ) -> go.Figure:
    legend = (dict(orientation="h", y=-0.25, yanchor="top", x=0, xanchor="left")
              if legend_below else
              dict(orientation="h", y=1.02, yanchor="bottom", x=0, xanchor="left"))
    fig.update_layout(height=height, margin=dict(l=0, r=10, t=30, b=40), xaxis_title=x,
                      yaxis_title=y, legend=legend)
    return fig


def vectors(series: dict[str, np.ndarray], height: int = 240, x: str = "channel",
            y: str = "value") -> go.Figure:
    """Each vector as bars over its channels, side by side."""
    fig = go.Figure()
    for i, (name, v) in enumerate(series.items()):
        fig.add_trace(go.Bar(x=np.arange(len(v)), y=v, name=name,
                             marker_color=COLOURS[i % len(COLOURS)],
                             hovertemplate=f"{name}<br>{x} %{{x}}: %{{y:.4f}}<extra></extra>"))
    fig.update_layout(barmode="group", bargap=0.15, showlegend=len(series) > 1)
    return _layout(fig, height, x, y)


def histograms(groups: dict[str, np.ndarray], x: str, lines: dict[str, float] | None = None,
               bins: int = 40, height: int = 320) -> go.Figure:
    """Overlaid histograms, each normalised to percent of its own values, with labelled
    vertical reference lines."""
    values = [np.asarray(v).ravel() for v in groups.values() if np.size(v)]
    lo = min((float(v.min()) for v in values), default=0.0)
    hi = max((float(v.max()) for v in values), default=1.0)
    for v in (lines or {}).values():
        lo, hi = min(lo, v), max(hi, v)
    size = max(hi - lo, 1e-9) / bins
    fig = go.Figure()
    for i, (name, v) in enumerate(groups.items()):
        v = np.asarray(v).ravel()
        if not v.size:
            continue
        fig.add_trace(go.Histogram(x=v, name=f"{name} ({v.size:,})", histnorm="percent",
                                   xbins=dict(start=lo, end=hi + size, size=size),
                                   marker_color=COLOURS[i % len(COLOURS)], opacity=0.6))
    for name, v in (lines or {}).items():
        fig.add_vline(x=v, line_dash="dash", line_color="#444",
                      annotation_text=name, annotation_position="top")
    fig.update_layout(barmode="overlay")
    return _layout(fig, height, x, "% of queries", legend_below=True)


def curves(fractions: np.ndarray, series: dict[str, np.ndarray], y: str,
           height: int = 320) -> go.Figure:
    """Mean curves over the fraction of pixels; the random reference dashed grey."""
    fig = go.Figure()
    for i, (name, v) in enumerate(series.items()):
        reference = name.startswith("random")
        fig.add_trace(go.Scatter(
            x=100 * fractions, y=v, name=name, mode="lines+markers",
            line=dict(color=GREY if reference else COLOURS[i % len(COLOURS)],
                      dash="dash" if reference else "solid"),
            hovertemplate=f"{name}<br>%{{x:.1f}}% of pixels: %{{y:.3f}}<extra></extra>"))
    fig.update_yaxes(range=[0, 1.02])
    return _layout(fig, height, "% of pixels", y)


def steps(labels: list[str], series: dict[str, np.ndarray], y: str, height: int = 320
          ) -> go.Figure:
    """One line per explanation over the randomisation steps, on a similarity axis from
    at most 1 down to the lowest value shown (at least -0.2)."""
    fig = go.Figure()
    for i, (name, v) in enumerate(series.items()):
        fig.add_trace(go.Scatter(x=list(range(len(labels))), y=v, name=name,
                                 mode="lines+markers",
                                 line=dict(color=COLOURS[i % len(COLOURS)])))
    fig.update_xaxes(tickmode="array", tickvals=list(range(len(labels))), ticktext=labels,
                     tickangle=-30)
    values = np.concatenate([np.asarray(v, dtype=float) for v in series.values()] or [[0.0]])
    low = float(np.nanmin(values)) if np.isfinite(values).any() else 0.0
    fig.update_yaxes(range=[min(-0.2, low - 0.05), 1.05])
    return _layout(fig, height, "layers re-initialised, from the top down (cumulative)", y)


def grouped_bars(categories: list[str], series: dict[str, np.ndarray], y: str,
                 height: int = 280, percent: bool = False) -> go.Figure:
    """Bars per category, one colour per series."""
    fig = go.Figure()
    for i, (name, v) in enumerate(series.items()):
        v = np.asarray(v, dtype=float) * (100 if percent else 1)
        fig.add_trace(go.Bar(x=categories, y=v, name=name,
                             marker_color=COLOURS[i % len(COLOURS)],
                             text=[f"{t:.1f}%" if percent else f"{t:.2f}" for t in v],
                             textposition="outside", cliponaxis=False))
    fig.update_layout(barmode="group")
    return _layout(fig, height, "", y)

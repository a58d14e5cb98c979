"""Every plotly chart of the app: the Inspect and Compare pages' probabilities and γ, the
Misclassifications, Ablation and Training pages' charts, and the teaching pages' vectors,
histograms, curves and step lines. Pictures made of pixels are ``appkit.pictures``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from appkit.bars import GREY, RIGHT, WRONG
from convattn.files.history import METRICS, mean_curve
from convattn.trust.calibration import Reliability

REFERENCE = "#9a9a9a"  # the random order's line, dashed
# Series colours; green and red are kept for right and wrong, which they mean everywhere.
PALETTE = ["#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#7f7f7f"]
_COMPACT = dict(margin=dict(l=0, r=10, t=30, b=30))


def confusion_figure(counts: np.ndarray, classes: Sequence[str],
                     selected: tuple[int, int] | None = None) -> go.Figure:
    """Heatmap of (K, K) counts, true class down, predicted class across, every count
    written in its cell. The colour scale stops at the largest off-diagonal count so that
    the confusions, not the (much larger) correct counts, stand out.

    Plotly cannot select a heatmap's cells, so an invisible marker sits on each cell:
    clicking a cell selects its marker, whose x and y are the predicted and true class.
    """
    k = len(classes)
    off = counts[~np.eye(k, dtype=bool)]
    top = max(int(off.max()) if off.size else 1, 1)
    fig = go.Figure(go.Heatmap(z=counts, x=list(classes), y=list(classes), zmin=0, zmax=top,
                               colorscale="Reds", text=counts, texttemplate="%{text}",
                               showscale=False, hoverinfo="skip", xgap=1, ygap=1))
    cols, rows = np.meshgrid(np.arange(k), np.arange(k))  # (K, K) each
    hidden = dict(marker=dict(opacity=0))
    fig.add_trace(go.Scatter(
        x=[classes[c] for c in cols.ravel()], y=[classes[r] for r in rows.ravel()],
        mode="markers", customdata=counts.ravel(), showlegend=False,
        marker=dict(symbol="square", size=28, opacity=0, color="#000"),
        selected=hidden, unselected=hidden,
        hovertemplate="true %{y}, predicted %{x}: %{customdata} images<br>click to see "
                      "them<extra></extra>"))
    if selected is not None:
        r, c = selected
        fig.add_shape(type="rect", x0=c - 0.5, x1=c + 0.5, y0=r - 0.5, y1=r + 0.5,
                      line=dict(color="#1f77b4", width=3))
    fig.update_layout(height=460, **_COMPACT, clickmode="event+select", dragmode=False,
                      xaxis=dict(title="predicted class", side="top", tickangle=-40,
                                 fixedrange=True),
                      yaxis=dict(title="true class", autorange="reversed", fixedrange=True))
    return fig


def per_class_figure(accuracy: Sequence[float], classes: Sequence[str], overall: float
                     ) -> go.Figure:
    """Horizontal bars of per-class accuracy (%), with the overall accuracy marked; green
    bars are at or above it, red ones below."""
    colours = [RIGHT if a >= overall else WRONG for a in accuracy]
    # Values at the foot of the bars, far from the dashed line of the overall accuracy.
    fig = go.Figure(go.Bar(x=list(accuracy), y=list(classes), orientation="h",
                           marker_color=colours, text=[f"{a:.1f}%" for a in accuracy],
                           textposition="inside", insidetextanchor="start",
                           textfont_color="white",
                           hovertemplate="%{y}: %{x:.1f}%<extra></extra>"))
    fig.add_vline(x=overall, line_dash="dash", line_color=GREY,
                  annotation_text=f"all classes: {overall:.1f}%", annotation_position="top")
    fig.update_layout(height=460, **_COMPACT, showlegend=False,
                      xaxis=dict(range=[0, 118], title="accuracy (%)"),
                      yaxis=dict(autorange="reversed"))
    return fig


def probability_bars(probs: dict[str, np.ndarray], classes: Sequence[str],
                     true_label: int | None, k: int = 5) -> go.Figure:
    """Grouped horizontal bars: each variant's probabilities for the k classes that any
    variant finds most likely (best first)."""
    best = np.max(np.stack(list(probs.values())), axis=0)
    order = np.argsort(-best)[:k][::-1]
    fig = go.Figure()
    # Added last to first: horizontal groups stack upwards, so the first variant is on top.
    for i, (name, p) in reversed(list(enumerate(probs.items()))):
        fig.add_trace(go.Bar(x=p[order] * 100, y=[_mark(classes[j], j == true_label)
                                                  for j in order],
                             orientation="h", name=name, marker_color=PALETTE[i],
                             hovertemplate=f"{name}<br>%{{y}}: %{{x:.1f}}%<extra></extra>"))
    fig.update_layout(barmode="group", height=80 + 60 * len(order), **_COMPACT,
                      xaxis=dict(range=[0, 100], title="probability (%)"),
                      legend=dict(orientation="h", y=-0.25, traceorder="reversed"))
    return fig


def _mark(name: str, true: bool) -> str:
    return f"<b>{name} (true)</b>" if true else name


def flips_figure(fixed: np.ndarray, broken: np.ndarray, classes: Sequence[str]
                 ) -> go.Figure:
    """Per class, images attention fixes (right) and breaks (left)."""
    fig = go.Figure()
    fig.add_trace(go.Bar(y=list(classes), x=list(fixed), orientation="h", name="fixed by "
                         "attention (wrong → right)", marker_color=RIGHT,
                         hovertemplate="%{y}: %{x} fixed<extra></extra>"))
    fig.add_trace(go.Bar(y=list(classes), x=[-b for b in broken], orientation="h",
                         name="broken by attention (right → wrong)", marker_color=WRONG,
                         customdata=list(broken),
                         hovertemplate="%{y}: %{customdata} broken<extra></extra>"))
    fig.update_layout(barmode="relative", height=380, **_COMPACT,
                      xaxis_title="images (broken ← | → fixed)",
                      yaxis=dict(autorange="reversed"), legend=dict(orientation="h", y=-0.2))
    return fig


def _hover(key: str) -> str:
    """A curve's hover text: accuracies as 78.73%, other values to 4 significant digits
    (the trace's name is read by plotly, so a file name is never taken for a template)."""
    value = "%{y:.2f}%" if key.endswith("accuracy") else "%{y:.4g}"
    return f"%{{fullData.name}}<br>epoch %{{x}}: {value}<extra></extra>"


def history_figure(histories: dict[str, dict[str, np.ndarray]], key: str) -> go.Figure:
    """One line per checkpoint of a ``convattn.files.history.curves`` key against epoch."""
    fig = go.Figure()
    for i, (name, c) in enumerate(histories.items()):
        if key in c:
            fig.add_trace(go.Scatter(x=c["epoch"], y=c[key], name=name, mode="lines",
                                     line=dict(color=PALETTE[i % len(PALETTE)]),
                                     hovertemplate=_hover(key)))
    fig.update_layout(height=300, **_COMPACT, xaxis_title="epoch",
                      yaxis_title=METRICS.get(key, key), legend=dict(orientation="h", y=-0.3))
    return fig


def gamma_figure(histories: dict[str, dict[str, np.ndarray]]) -> go.Figure:
    """Every gamma of every checkpoint against epoch."""
    fig = go.Figure()
    for i, (name, c) in enumerate(histories.items()):
        for j, key in enumerate(k for k in c if k.startswith("gamma:")):
            fig.add_trace(go.Scatter(x=c["epoch"], y=c[key], mode="lines",
                                     name=f"{name} · {key[6:]}",
                                     line=dict(color=PALETTE[i % len(PALETTE)],
                                               dash=["solid", "dash", "dot"][j % 3])))
    fig.add_hline(y=0, line_color=GREY, line_width=1)
    fig.update_layout(height=320, **_COMPACT, xaxis_title="epoch", yaxis_title="γ",
                      legend=dict(orientation="h", y=-0.3))
    return fig


def runs_figure(series: dict[str, tuple[list[dict], str]], y_title: str) -> go.Figure:
    """One line per label: the mean over runs of a ``convattn.files.history.curves`` key, with a
    ±1 std band where there are several runs. ``series`` maps label -> (runs, key)."""
    fig = go.Figure()
    for i, (label, (runs, key)) in enumerate(series.items()):
        epochs, mean, std = mean_curve(runs, key)
        if not len(epochs):
            continue
        colour = PALETTE[i % len(PALETTE)]
        if len(runs) > 1:
            band = np.concatenate([mean + std, (mean - std)[::-1]])
            fig.add_trace(go.Scatter(x=np.concatenate([epochs, epochs[::-1]]), y=band,
                                     fill="toself", fillcolor=_alpha(colour, 0.2),
                                     line=dict(width=0), hoverinfo="skip", showlegend=False))
        name = f"{label} ({len(runs)} run{'s' * (len(runs) > 1)})"
        fig.add_trace(go.Scatter(x=epochs, y=mean, mode="lines", line=dict(color=colour),
                                 name=name, hovertemplate=_hover(key)))
    fig.update_layout(height=340, **_COMPACT, xaxis_title="epoch", yaxis_title=y_title,
                      legend=dict(orientation="h", y=-0.3))
    return fig


def _alpha(hex_colour: str, a: float) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{a})"


def reliability_figure(rel: Reliability, title: str) -> go.Figure:
    """A reliability diagram: accuracy per confidence bin (blue) up to the bin's mean
    confidence (orange: the gap), against the diagonal of perfect calibration, with the
    bins' image counts beneath."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.75, 0.25],
                        vertical_spacing=0.04)
    centres = (rel.edges[:-1] + rel.edges[1:]) / 2
    width = np.diff(rel.edges)
    full = rel.count > 0
    acc, conf, count = rel.accuracy[full], rel.confidence[full], rel.count[full]
    fig.add_trace(go.Bar(x=centres[full], y=acc, width=width[full], name="accuracy",
                         marker=dict(color=PALETTE[0], line=dict(color="white", width=1)),
                         customdata=np.stack([conf, count], axis=1),
                         hovertemplate="accuracy %{y:.1%}, mean confidence "
                                       "%{customdata[0]:.1%}<br>%{customdata[1]} images"
                                       "<extra></extra>"), row=1, col=1)
    # Hatched: where the model is under-confident the gap lies over the accuracy bar,
    # which a plain translucent fill would only darken.
    fig.add_trace(go.Bar(x=centres[full], y=conf - acc, base=acc, width=width[full],
                         name="gap to confidence", opacity=0.6, hoverinfo="skip",
                         marker=dict(color=PALETTE[1], pattern=dict(
                             shape="/", fgcolor="white", fillmode="overlay"))),
                  row=1, col=1)
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                             line=dict(color="black", dash="dash", width=1),
                             hoverinfo="skip"), row=1, col=1)
    fig.add_trace(go.Bar(x=centres, y=rel.count, width=width, marker_color=GREY,
                         showlegend=False, hovertemplate="%{y} images<extra></extra>"),
                  row=2, col=1)
    fig.update_layout(height=440, margin=dict(l=0, r=10, t=40, b=30), barmode="overlay",
                      title=dict(text=f"{title}: ECE {100 * rel.ece:.2f}%", x=0, font_size=15),
                      legend=dict(orientation="h", y=-0.22))
    fig.update_yaxes(range=[0, 1], tickformat=".0%", title="accuracy", row=1, col=1)
    fig.update_yaxes(title="images", row=2, col=1)
    fig.update_xaxes(range=[0, 1], tickformat=".0%", row=1, col=1)
    fig.update_xaxes(range=[0, 1], tickformat=".0%", title="confidence (top-class probability)",
                     row=2, col=1)
    return fig


# The teaching pages' charts.
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
                             marker_color=PALETTE[i % len(PALETTE)],
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
                                   marker_color=PALETTE[i % len(PALETTE)], opacity=0.6))
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
            line=dict(color=REFERENCE if reference else PALETTE[i % len(PALETTE)],
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
                                 line=dict(color=PALETTE[i % len(PALETTE)])))
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
                             marker_color=PALETTE[i % len(PALETTE)],
                             text=[f"{t:.1f}%" if percent else f"{t:.2f}" for t in v],
                             textposition="outside", cliponaxis=False))
    fig.update_layout(barmode="group")
    return _layout(fig, height, "", y)


# One image's, on the Inspect and Compare pages.
def topk_figure(probs: np.ndarray, classes: list[str], k: int, true_label: int | None
                ) -> go.Figure:
    """Horizontal bars of the k most probable classes, best on top; the true class is
    green, a wrong top prediction red."""
    order = np.argsort(-probs)[:k][::-1]
    top = int(np.argmax(probs))
    colours = []
    for i in order:
        if true_label is not None and i == true_label:
            colours.append("#2ca02c")
        elif i == top and true_label is not None:
            colours.append("#d62728")
        else:
            colours.append("#7f7f7f" if true_label is not None else "#1f77b4")
    fig = go.Figure(go.Bar(
        x=probs[order] * 100, y=[classes[i] for i in order], orientation="h",
        marker_color=colours, text=[f"{p * 100:.1f}%" for p in probs[order]],
        textposition="outside", cliponaxis=False,
        hovertemplate="%{y}: %{x:.2f}%<extra></extra>"))
    fig.update_layout(height=40 + 34 * len(order), margin=dict(l=0, r=40, t=10, b=30),
                      xaxis=dict(range=[0, 100], title="probability (%)"), showlegend=False)
    return fig


def gamma_history_figure(history: list[dict], names: list[str]) -> go.Figure | None:
    """gamma per epoch for each module, from a checkpoint's history (None if absent)."""
    rows = [h for h in history if h.get("gammas")]
    if not rows:
        return None
    fig = go.Figure()
    for name in names:
        fig.add_trace(go.Scatter(x=[h["epoch"] for h in rows],
                                 y=[h["gammas"].get(name) for h in rows], name=name,
                                 mode="lines+markers"))
    fig.update_layout(height=220, margin=dict(l=0, r=0, t=10, b=30),
                      xaxis_title="epoch", yaxis_title="γ", legend=dict(orientation="h"))
    return fig

"""Inspect's probability bars as plain HTML (``st.html``): no chart library, so the page's
first screen costs the browser no script to load (plotly's is 4.7 MB, and the browser
draws nothing below a chart until it has loaded it)."""

from __future__ import annotations

import html

import numpy as np

# The app's colours for right and wrong, which they mean on every page (plotly charts too).
RIGHT, WRONG, GREY = "#2ca02c", "#d62728", "#7f7f7f"
NEUTRAL = "#1f77b4"  # no true class known: nothing is right or wrong


def topk_html(probs: np.ndarray, classes: list[str], k: int, true_label: int | None) -> str:
    """The k most probable classes as bars of plain HTML, best on top (``plots.topk_figure``
    draws the same as a plotly chart) for ``st.html``: Inspect's first screen
    then needs no plotly, whose 4.7 MB script the browser must load before it draws what
    comes below the chart (the lens). Class names are escaped: they come from the
    checkpoint or card. Each row carries its class and probability as data attributes."""
    rows = []
    top = int(np.argmax(probs))
    for i in np.argsort(-probs)[:k]:
        p = float(probs[i])
        if true_label is not None and i == true_label:
            colour = RIGHT
        elif i == top and true_label is not None:
            colour = WRONG
        else:
            colour = GREY if true_label is not None else NEUTRAL
        name = html.escape(str(classes[i]))
        rows.append(
            f'<div class="topk-row" data-class="{name}" data-p="{p!r}" '
            'style="display:flex;align-items:center;gap:.5em;margin:2px 0">'
            f'<span style="flex:0 0 9em;text-align:right;overflow:hidden;'
            f'text-overflow:ellipsis;white-space:nowrap" title="{name}">{name}</span>'
            '<span style="flex:1 1 auto;background:#eee;height:1.1em">'
            f'<span style="display:block;height:100%;width:{100 * p:.2f}%;'
            f'background:{colour}"></span></span>'
            f'<span style="flex:0 0 4em">{100 * p:.1f}%</span></div>')
    return '<div class="topk">' + "".join(rows) + "</div>"

"""Choosing an attention module, a head and a query position on the pages that show
attention.

The query is kept in the same plain session entries as on the Inspect page
("query_row", "query_col", see ``widgets``), so a query clicked on one page is the query
on the next; the module choice is carried over the same way.
"""

from __future__ import annotations

import numpy as np
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from . import lens, widgets
from .analysis import ModuleView, head_label

SIZE = 32
MODULE = "teaching_module"  # plain entry: the module last chosen on a teaching page


def module(grids: dict[str, tuple[int, int]], where: DeltaGenerator | None = None) -> str:
    """Which attention module to look at; ``grids`` maps names to (H', W')."""
    names = list(grids)
    chosen = st.session_state.get(MODULE, st.session_state.get("module"))  # or Inspect's
    index = names.index(chosen) if chosen in names else 0
    name = (where or st).selectbox(
        "Attention module", names, index=index, key=f"{MODULE}__widget",
        format_func=lambda n: f"{n} ({grids[n][0]}x{grids[n][1]} positions)")
    st.session_state[MODULE] = name
    return name


def lens_query(key: str, pixels: np.ndarray, view: ModuleView, display: int,
               caption: str = "") -> tuple[tuple[int, int], tuple[int, int], int]:
    """The query position through the attention lens, with row and column inputs:
    hovering paints any query's row of ``view`` in the browser, a click (or the arrow
    keys) pins the query. Returns the query pixel (row, col) in the 32x32 input, its cell
    in the module's (H', W') grid, and the cell's row-major index."""
    h, w = view.grid
    box = st.container()
    row, col = widgets.query_inputs(SIZE)
    cell = (row * h // SIZE, col * w // SIZE)
    with box:
        lens.view_lens(key, pixels, view, (row, col), 0.7, False, display)
        if caption:
            st.caption(caption)
    return (row, col), cell, cell[0] * w + cell[1]


def head(num_heads: int, key: str, where: DeltaGenerator | None = None,
         mean: bool = True) -> int | None:
    """Which head of a multi-head module to show: one of them, or (with ``mean``) the
    mean of their attention; None for the mean. Draws nothing for a one-head module."""
    if num_heads <= 1:
        return None if mean else 0
    options: list[int | None] = ([None] if mean else []) + list(range(num_heads))
    return (where or st).selectbox(
        "Head", options, key=key, format_func=lambda t: head_label(t, num_heads),
        help="Each head attends on its own, with its own share of the query, key and value "
             "channels; the mean averages their attention maps.")

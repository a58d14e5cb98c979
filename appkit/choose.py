"""Choosing what to look at on the pages that show attention: a module, a head, and the
query through the attention lens.

The query is the session's pinned query (``appkit.pinned_query``), so a query clicked on
one page is the query on the next; the module last chosen on a teaching page (or else on
Inspect) is carried over too.
"""

from __future__ import annotations

import numpy as np
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from appkit import lens, pinned_query
from convattn.readout.analysis import ModuleView, head_label

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
    keys) pins the query. Returns the query pixel (row, col) in the input image (any
    size), its cell in the module's (H', W') query grid, and the cell's row-major index."""
    box = st.container()
    row, col = pinned_query.inputs(view.image)
    cells = view.query_grid()
    cell = cells.cell_of((row, col))
    with box:
        lens.view_lens(key, pixels, view, (row, col), 0.7, False, display)
        if caption:
            st.caption(caption)
    return (row, col), cell, cells.index_of((row, col))


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

"""Choosing an attention module and a query position on the teaching pages.

The query is kept in the same plain session entries as on the Inspect page
("query_row", "query_col", see ``widgets``), so a query clicked on one page is the query
on the next; the module choice is carried over the same way.
"""

from __future__ import annotations

import numpy as np
import streamlit as st
from streamlit.delta_generator import DeltaGenerator
from streamlit_image_coordinates import streamlit_image_coordinates

from . import render, widgets

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


def _on_click() -> None:
    value = st.session_state.get("teaching_click")
    if value and value.get("width") and value.get("height"):
        widgets.set_value("query_row", int(value["y"] * SIZE / value["height"]))
        widgets.set_value("query_col", int(value["x"] * SIZE / value["width"]))


def query(picture: np.ndarray, grid: tuple[int, int], caption: str = ""
          ) -> tuple[tuple[int, int], tuple[int, int], int]:
    """A clickable enlarged ``picture`` (side x side x 3) with row and column inputs.

    Returns the query pixel (row, col) in the 32x32 input, its cell in the module's
    (H', W') grid, and the cell's row-major index.
    """
    h, w = grid
    side = picture.shape[0]
    box = st.container()
    row, col = widgets.query_inputs(SIZE)
    cell = (row * h // SIZE, col * w // SIZE)
    with box:
        streamlit_image_coordinates(render.mark_query(picture, (row, col), cell, grid),
                                    key="teaching_click", on_click=_on_click, width=side,
                                    cursor="crosshair")
        if caption:
            st.caption(caption)
    return (row, col), cell, cell[0] * w + cell[1]

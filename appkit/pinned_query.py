"""The pinned query: the one pixel (row, col) of the input image (32x32 for the registered
networks, any H x W for a model card's) that the attention pages look from, the same on
every page of a session.

A click in the attention lens (or its arrow keys, ``appkit.lens.follow``) and the row and
column inputs (``inputs``) pin it; Inspect, Compare, Learn and Sanity check show it. It is
kept in two plain session entries, as values a page can set (``appkit.widgets``), and only
this module reads or writes them.
"""

from __future__ import annotations

import streamlit as st

from appkit import widgets
from convattn.readout.grid import INPUT_SIZE

SIZE = INPUT_SIZE  # the input's side, in pixels
ROW, COL = "query_row", "query_col"  # session state (through ``widgets``)


def pin(row: int, col: int) -> None:
    """Pin the query at (row, col). Safe in callbacks: the inputs show it from the next
    run on."""
    widgets.set_value(ROW, int(row))
    widgets.set_value(COL, int(col))


def inputs(size: tuple[int, int] = (SIZE, SIZE)) -> tuple[int, int]:
    """Row and column inputs for the query pixel of an image of ``size`` (H, W), side by
    side: the keyboard way to do what a click in the lens does. Returns the pinned query
    (row, col), clamped into the image, the centre until one is pinned: the pages read it
    here, as they draw its inputs."""
    h, w = int(size[0]), int(size[1])
    a, b = st.columns(2)
    with a:
        row = widgets.settable_number("Query row", 0, h - 1, ROW, h // 2)
    with b:
        col = widgets.settable_number("Query column", 0, w - 1, COL, w // 2)
    return row, col

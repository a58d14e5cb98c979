"""The attention lens on a page: a Streamlit component (components v2) that computes and
paints attention rows in the browser as the mouse moves (see ``lens.js``).

Python sends, for the module shown, every head's queries and keys (``wire.view_payload``:
fp16, or fp32 where fp16 would move weights; a module known only as its matrix sends that,
within a byte budget, else its rows come with each click) with the image, the colour map
and where the query is pinned; hovering costs no round trip. The query grid, the key grid
(coarser when keys are pooled) and the image may have any size and shape. A click pins a
query and reports it: ``follow`` pins it for the session (``appkit.pinned_query``), so
the page's other panels and its number inputs follow. In guess mode the row stays hidden
until the click, which is reported as the guess, and the attention inside the guessed disc
is written on its circle.
Options: ``outlines`` (the fewest cells holding 50% and 90% of the row, outlined:
``convattn.readout.lens.mass_cells``'s rule, which ``lens.js`` follows on its own row) and
a log colour scale.

The JavaScript and CSS are files of this package, read once and passed inline: nothing is
fetched at run time. Under AppTest the component renders nothing and keeps its default
state (no query reported), so the pages run there as before.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import streamlit as st

from appkit import pictures, pinned_query
from appkit.lens import wire
from convattn.readout import lens as core
from convattn.readout.analysis import FAINT, ModuleView, QueryView, faint_note, query_view
from convattn.readout.grid import Grid

HERE = Path(__file__).parent
_MOUNT = st.components.v2.component(
    "convattn_lens", js=(HERE / "lens.js").read_text(), css=(HERE / "lens.css").read_text())
SPACE = 300  # px side of the query/key space
HOW = ("**Hover** to see where any position looks; **click** to pin it as the query "
       "(then the arrow keys move it)")
OUTLINES = (0.5, 0.9)  # the shares of a row the mass outlines enclose
OUTLINES_HELP = ("Outline the fewest positions that hold half (solid line) and 90% (dashed) "
                 "of the row's attention: a peaked row is a small island, a spread one a "
                 "large region, whatever the colours.")
LOG_HELP = ("Colours by the logarithm of the weight, over the three decades below the "
            "largest: weak attention that the linear scale paints black shows, and equal "
            "colour steps are equal ratios.")
SPACE_HELP = ("Beside the image: every query and every key of this image and module as one "
              "point, projected together to 2-D by PCA (after AttentionViz, with the keys "
              "shifted and both rescaled in ways that change no attention weight). A query "
              "near a key tends to attend to it. Hover a point to light its pixel; hover a "
              "pixel to light its query and key.")


def describe(query: QueryView, grid: tuple[int, int], max_weight: float, shared: bool,
             faint: float = FAINT, image: tuple[int, int] | None = None) -> dict[str, object]:
    """The pinned query's caption and note, in words. The lens shows them under the image;
    after a click ``lens.js`` writes the same sentences from its own row at once, and this
    text replaces them when Python's rerun arrives (the same words, the numbers from fp32).
    ``grid``: the query grid; the keys are those of ``query.row``; ``image``: the input's
    (H, W), by default 32x32."""
    h, w = grid
    kh, kw = query.row.shape
    n = kh * kw
    (r, c), weight = query.strongest()
    least = float(query.row.min())
    image = (32, 32) if image is None else image
    where = ("" if Grid.of(grid, image).is_input()
             else f" (cell {query.cell[0]}, {query.cell[1]} of {h}x{w})")
    cell = "pixel" if Grid.of((kh, kw), image).is_input() else "cell"
    low, high = least * n, weight * n  # in units of the uniform 1/N
    row, col = query.pixel
    if high - low < 0.01:  # no key stands out: naming a "strongest" one would mislead
        text = (f"Query at row {row}, column {col}{where} gives every {cell} the same "
                f"weight, 1/N = {1 / n:.4f}, to within 1%: its query scores all keys alike, "
                "so this row is uniform and is drawn in one colour.")
    else:
        text = (f"Query at row {row}, column {col}{where} attends most to the {cell} at row "
                f"{r}, column {c}, weight {weight:.4f} (least: {least:.4f}). Uniform "
                f"attention would give every {cell} {1 / n:.4f}: this row runs from "
                f"{low:.2f}x to {high:.2f}x that.")
    note = faint_note(weight / max_weight, "this row's weights", faint) if shared else ""
    if not shared and 0.01 <= high - low and high < 1.5 and low > 1 / 1.5:
        note = ("Nearly uniform: every weight of this row is within a factor 1.5 of 1/N, and "
                "the per-map colours stretch that small range. Choose shared to see it at "
                "its true contrast.")
    return {"text": text, "note": note, "faint": faint}


def mass_legend(row: np.ndarray, fractions: tuple[float, ...] = OUTLINES,
                image: tuple[int, int] = (32, 32)) -> str:
    """Under the lens, what the mass outlines of ``row`` (Hk, Wk) enclose; ``lens.js``
    writes the same sentence from its own row (``massLegend``)."""
    h, w = row.shape
    what = "pixels" if Grid.of((h, w), image).is_input() else "cells"
    masks = core.mass_cells(row, fractions)
    styles = ["solid", "dashed"]
    parts = [f"{round(100 * f)}% ({styles[min(i, 1)]})" for i, f in enumerate(fractions)]
    counts = [f"{int(m.sum()):,}" for m in masks]

    def join(xs: list[str]) -> str:
        return xs[0] if len(xs) < 2 else f"{', '.join(xs[:-1])} and {xs[-1]}"
    return (f"Outlined: the fewest {what} that hold {join(parts)} of this row's attention: "
            f"{join(counts)} of {h * w:,}.")


def lut(cmap: str = pictures.ATTENTION_CMAP) -> str:
    """The colour map as 256 RGB triples (768 bytes), in base64."""
    return wire.b64(pictures.lookup_table(cmap), "uint8")


def payload(pixels: np.ndarray, view: ModuleView, *, pinned: tuple[int, int],
            opacity: float = 0.65, shared: bool = False, display: int = 320,
            mode: Literal["hover", "guess"] = "hover", guess: tuple[int, int] | None = None,
            radius: float = 4.0, space: core.QKSpace | None = None,
            group: str | None = None, outlines: tuple[float, ...] = (),
            log: bool = False) -> dict[str, object]:
    """Everything the component's JavaScript reads, as JSON. ``outlines``: the shares of
    the row to outline (``OUTLINES``), none by default; ``log``: a log colour scale."""
    data: dict[str, object] = {
        **wire.view_payload(view),
        "head": -1 if view.head is None else int(view.head),
        "image": wire.image_payload(pixels), "lut": lut(), "display": int(display),
        "opacity": float(opacity), "scale": "shared" if shared else "map",
        "max_weight": float(view.max_weight), "pinned": [int(pinned[0]), int(pinned[1])],
        "mode": mode, "guess": None if guess is None else [int(guess[0]), int(guess[1])],
        "radius": float(radius), "group": group, "space": None,
        "outlines": [float(f) for f in outlines], "log": bool(log)}
    if space is not None:
        a, b = space.explained
        data["space"] = {"points": wire.b64(space.points, "float32"), "size": SPACE,
                         "caption": f"PCA of queries and keys together: the axes hold "
                                    f"{a:.0%} and {b:.0%} of their variance."}
    return data


def follow(key: str) -> None:
    """Callback: a query clicked (or moved by the keyboard) in lens ``key`` becomes the
    page's query, before the rerun, so that every panel and input shows it."""
    value = (st.session_state.get(key) or {}).get("query")
    if isinstance(value, dict):
        pinned_query.pin(int(value["row"]), int(value["col"]))


def show(key: str, data: dict[str, object], on_query: Callable[[], None] | None = None,
         on_guess: Callable[[], None] | None = None) -> dict:
    """Mount the lens with ``data`` (from ``payload``); returns its state (query, guess).

    ``on_query`` runs when a query is pinned (default: ``follow``), ``on_guess`` when a
    guess is made. The key keeps one instance across reruns, so a new image or module only
    updates it (and the canvas keeps the keyboard focus)."""
    result = _MOUNT(key=key, data=wire.pack(data), default={"query": None, "guess": None},
                    width="content", height="content",
                    on_query_change=on_query or (lambda: follow(key)),
                    on_guess_change=on_guess or (lambda: None))
    return dict(result) if result is not None else {}


HEAVY = ("grid", "keys", "input", "kind", "heads", "dim", "qk_scale", "dtype", "q", "k",
         "matrix", "head", "image", "lut", "max_weight", "space")


def _view_key(view: ModuleView) -> tuple:
    """What the heavy data depends on (its maps do not enter it)."""
    if view.q is not None and view.k is not None:
        arrays: tuple = (view.q.tobytes(), view.k.tobytes())
    else:  # a matrix may be 1 GiB: its maps (made from all of it) and a sample of its rows
        m = view.matrix if view.matrix is not None else np.zeros((1, 1, 1), np.float32)
        arrays = (m.shape, view.received.tobytes(), view.spread.tobytes(),
                  m[:, :: max(1, m.shape[1] // 64)].tobytes())
    return (view.name, view.grid, view.key_grid, view.image, view.head, view.max_weight,
            view.scale, *arrays)


@st.cache_resource(show_spinner=False, max_entries=32, hash_funcs={ModuleView: _view_key})
def heavy_data(pixels: np.ndarray, view: ModuleView, space: bool) -> dict[str, object]:
    """What the lens needs once per image and view (queries, keys, image, colour map,
    projection), with ``ref``, a digest of it that names it in the browser, and ``sent``,
    the store's bytes (``wire.pack``, made once here: up to tens of MB for a matrix). Cached
    by content and shared by sessions: callers read it and never change it."""
    qk = (core.qk_space(view.q, view.k, view.head)
          if space and view.q is not None and view.k is not None else None)
    full = payload(pixels, view, pinned=(0, 0), space=qk)
    data: dict[str, object] = {k: full.get(k) for k in HEAVY}
    data["ref"] = hashlib.blake2b(json.dumps(data, sort_keys=True).encode(),
                                  digest_size=12).hexdigest()
    data["sent"] = wire.pack({**data, "role": "store"})
    return data


def store(key: str, pixels: np.ndarray, view: ModuleView, space: bool = False) -> str:
    """Send the heavy data for ``view`` in an invisible instance of the component; returns
    its ``ref`` for ``view_lens(..., stored=True)``. Drawn outside a fragment, it is not sent
    again when a click reruns the fragment that holds the lens."""
    data = heavy_data(pixels, view, space)
    _MOUNT(key=key, data=data["sent"], width="content", height=0)
    return str(data["ref"])


def view_lens(key: str, pixels: np.ndarray, view: ModuleView, pixel: tuple[int, int],
              opacity: float, shared: bool, display: int, space: bool = False,
              group: str | None = None, stored: bool = False,
              caption: dict[str, object] | None = None, ref: str | None = None,
              outlines: tuple[float, ...] = (), log: bool = False,
              pinned_said: bool = False) -> dict:
    """The lens on one module view (a head or the heads' mean), pinned at ``pixel``; a
    click moves the page's query (``follow``). ``space`` adds the query/key space.
    ``stored``: the page called ``store`` for this view outside the lens's fragment;
    otherwise the heavy data is sent here, before the lens. ``ref``: the store's reference,
    when the page already has it (saves hashing the view again on every click).
    ``caption`` (from ``describe``): the lens shows the pinned query's caption, and writes
    it itself at once when a click or the keys move the query. ``outlines`` and ``log``: as
    in ``payload``. ``pinned_said``: the page describes the pinned query itself, so the
    lens's readout line speaks only for the position under the mouse (as it does when
    the lens has a ``caption``)."""
    if ref is None:
        ref = (heavy_data(pixels, view, space)["ref"] if stored
               else store(f"{key}_store", pixels, view, space))
    # A module whose rows the browser cannot compute gets the pinned query's row here.
    row = (wire.b64(query_view(view, pixel).row, "float32") if wire.kind(view) == "server"
           else None)
    return show(key, {"ref": ref, "pinned": [int(pixel[0]), int(pixel[1])], "row": row,
                      "opacity": float(opacity), "scale": "shared" if shared else "map",
                      "display": int(display), "mode": "hover", "guess": None,
                      "radius": 4.0, "group": group, "caption": caption,
                      "outlines": [float(f) for f in outlines], "log": bool(log),
                      "pinned_said": bool(pinned_said)})

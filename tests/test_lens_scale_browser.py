"""The lens in Chromium on foreign networks (``tests/lenspage.py``: the lens alone): rows
over a key grid coarser than the query grid, on a wide image, computed in the browser from
queries and keys (or read from the matrix) equal to the Python mirror of the JavaScript and
to the module's own rows; a module too large to send paints the server's row."""

from __future__ import annotations

import numpy as np
import pytest
from browserkit import MARKS, chromium
from lenspage import hover, open_lens
from test_foreign import make

from appkit import lens
from appkit.lens import wire
from convattn.readout import analysis

pytestmark = MARKS
IMAGE = (12, 20)
POINTS = [(0, 0), (11, 19), (5, 13), (7, 2)]


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def _view(kind: str) -> tuple[np.ndarray, analysis.ModuleView]:
    pixels = np.random.default_rng(3).integers(0, 256, (*IMAGE, 3), dtype=np.uint8)
    result = analysis.analyse(make(kind), pixels, (0.5,) * 3, (0.25,) * 3)
    return pixels, next(iter(result.modules.values()))


def _row(canvas) -> np.ndarray | None:
    got = canvas.evaluate("c => c.__lensRow && Array.from(c.__lensRow)")
    return None if got is None else np.array(got)


def test_rows_over_pooled_keys_on_a_wide_image_equal_python(browser):
    pixels, view = _view("biggan-pooled")
    assert view.key_grid == (6, 10) and view.has_qk()
    data = lens.payload(pixels, view, pinned=(0, 0), display=300)
    page, canvas = open_lens(browser, data)
    box = canvas.bounding_box()
    assert (box["width"], box["height"]) == (300, 180)  # the image's shape, not a square
    for r, c in POINTS:
        hover(page, canvas, r, c, IMAGE)
        index = view.query_grid().index_of((r, c))
        assert canvas.get_attribute("data-query") == str(index)
        got = _row(canvas)
        assert got.shape == (60,)
        np.testing.assert_allclose(got, wire.browser_row(view.q, view.k, index, None,
                                                         view.scale, data["dtype"]), rtol=1e-9)
        want = analysis.query_view(view, (r, c)).row.ravel()
        bound = wire.fp16_tolerance(view.q, view.k, index, view.scale).max()
        assert (np.abs(got - want) / want).max() <= bound + 1e-5
    # The mass legend counts key cells.
    page.close()


def test_the_payload_sent_as_bytes_paints_what_the_object_paints(browser):
    # Streamlit hands the component the JSON bytes of wire.pack; lens.js parses them.
    pixels, view = _view("biggan-pooled")
    data = lens.payload(pixels, view, pinned=(5, 13), display=300)
    assert wire.unpack(wire.pack(data)) == data
    rows = []
    for sent in (data, wire.pack(data)):
        page, canvas = open_lens(browser, sent)
        hover(page, canvas, 7, 2, IMAGE)
        rows.append(_row(canvas))
        page.close()
    assert rows[0].shape == (60,)
    np.testing.assert_array_equal(rows[0], rows[1])


def test_a_multi_head_module_known_by_its_matrix_is_read_from_it(browser):
    pixels, view = _view("mha-4-heads")
    assert not view.has_qk() and view.num_heads == 4
    data = lens.payload(pixels, view, pinned=(0, 0), display=300, outlines=(0.5, 0.9))
    assert data["kind"] == "matrix"
    page, canvas = open_lens(browser, data)
    m16 = view.matrix.astype(np.float16).astype(np.float64)
    for r, c in POINTS[:2]:
        hover(page, canvas, r, c, IMAGE)
        index = view.query_grid().index_of((r, c))
        np.testing.assert_allclose(_row(canvas), m16[:, index].mean(0), rtol=1e-6)
    mass = page.locator(".lens-mass").text_content()
    assert mass.endswith("of 240.") and "pixels" in mass  # keys on the 12x20 input
    page.close()


def test_rows_too_large_to_send_come_from_the_server_on_click(browser, monkeypatch):
    pixels, view = _view("mha-4-heads")
    monkeypatch.setattr(wire, "MATRIX_BYTES", 1000)
    data = {**lens.payload(pixels, view, pinned=(5, 13), display=300),
            **wire.view_payload(view, matrix_bytes=1000)}
    assert data["kind"] == "server"
    pinned = analysis.query_view(view, (5, 13)).row
    data["row"] = wire.b64(pinned, "float32")
    page, canvas = open_lens(browser, data)
    np.testing.assert_allclose(_row(canvas), pinned.ravel(), rtol=1e-7)
    hover(page, canvas, 0, 0, IMAGE)
    assert _row(canvas) is None and canvas.get_attribute("data-hidden") == "yes"
    assert "click to compute its row on the server" in page.locator(
        ".lens-readout").text_content()
    page.mouse.click(*__import__("lenspage").point(canvas, 2, 3, IMAGE))
    assert page.evaluate("() => window.__state.at(-1)")[1]["row"] == 2
    page.close()


def test_mass_outlines_over_the_key_grid_are_pythons_cells_ties_included(browser):
    g = np.random.default_rng(9)
    rows = g.random((3, 12)) ** 4  # three queries (a 3x1 grid) over 3x4 keys
    rows[1] = 1.0  # every weight tied
    rows[2, :6] = 0.5  # half the row tied at the top
    rows = (rows / rows.sum(-1, keepdims=True)).astype(np.float32)
    view = analysis.ModuleView(name="m", grid=(3, 1), key_grid=(3, 4), image=(6, 8),
                               received=rows.mean(0).reshape(3, 4), spread=np.zeros((3, 1)),
                               max_weight=float(rows.max()), matrix=rows[None], num_heads=1)
    pixels = np.zeros((6, 8, 3), np.uint8)
    data = lens.payload(pixels, view, pinned=(0, 0), display=240, outlines=lens.OUTLINES)
    page, canvas = open_lens(browser, data)
    for r, query in [(0, 0), (2, 1), (5, 2)]:
        hover(page, canvas, r, 3, (6, 8))
        got = canvas.evaluate("c => c.getRootNode().querySelector('.lens-outline').__lensMass")
        row = _row(canvas)
        np.testing.assert_allclose(row, rows[query].astype(np.float16), rtol=0)
        assert got == wire.browser_mass_cells(row, lens.OUTLINES)
    page.close()

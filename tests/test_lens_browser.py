"""The attention lens in real headless Chromium (``streamlit run``, Playwright): hovering
paints the row computed in the browser, which equals ``attention_row`` within fp16
rounding; a click pins the query and Python's panels follow; the arrow keys move it; the
query/key space lights up both ways; a guess is scored. The component renders in the page
(an open shadow root, no iframe), which Playwright's locators pierce."""

from __future__ import annotations

import re

import numpy as np
import pytest
from browserkit import MARKS, ROOT, SHOTS, chromium, serve_app, settle

from appkit import guess as guess_module
from appkit import lens
from appkit.lens import wire
from convattn.files.checkpoint import load_checkpoint
from convattn.files.shipped import sample_path
from convattn.readout import analysis
from convattn.readout.lens import guess_score

pytestmark = MARKS
SEED = ROOT / "checkpoints" / "seed.pt"
SAMPLE = sample_path()
SCALE = 10  # screen pixels per input pixel on Inspect


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lens")
    with serve_app(tmp, CONVATTN_CHECKPOINT=str(SEED), CONVATTN_DATA="") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def view() -> analysis.ModuleView:
    """What the app computes for the first sample image (the page's default)."""
    model, info = load_checkpoint(SEED)
    pixels = np.load(SAMPLE)["images"][0]
    return analysis.analyse(model.eval(), pixels, info.mean, info.std).modules["attention"]


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 2200})
    page.goto(url)
    canvas = page.locator("canvas.lens-main")
    canvas.wait_for(timeout=120_000)
    settle(page)
    return page, canvas


def _at(canvas, row: int, col: int, scale: float = SCALE) -> dict:
    return {"x": col * scale + scale / 2, "y": row * scale + scale / 2}


def _hover(page, canvas, row: int, col: int) -> None:
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + col * SCALE + 5, box["y"] + row * SCALE + 5)
    page.wait_for_function("([c, p]) => c.dataset.pixel === p",
                           arg=[canvas.element_handle(), f"{row},{col}"], timeout=10_000)


def test_hover_paints_the_row_of_attention_row_within_fp16(server, browser, view):
    page, canvas = _open(browser, server)
    assert page.locator("iframe").count() == 0 or not page.locator(
        "iframe[title*=lens]").count()  # in the page, not an iframe
    painted = int(canvas.get_attribute("data-painted"))
    for row, col in [(5, 7), (20, 30), (0, 0)]:
        _hover(page, canvas, row, col)
        assert canvas.get_attribute("data-source") == "hover"
        got = np.array(canvas.evaluate("c => Array.from(c.__lensRow)"))
        query = row * 32 + col
        want = wire.reference_row(view.q, view.k, query)
        bound = wire.fp16_tolerance(view.q, view.k, query).max()
        assert got.shape == (1024,) and abs(got.sum() - 1) < 1e-9
        assert (np.abs(got - want) / want).max() <= bound
        np.testing.assert_allclose(got, wire.browser_row(view.q, view.k, query), rtol=1e-9)
        # The canvas shows it: the strongest key's pixel is the colour map's top colour
        # laid over the image (per-map scale, opacity 0.65).
        r, c = divmod(int(got.argmax()), 32)
        rgba = canvas.evaluate(
            "(c, [x, y]) => Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data)",
            [c, r])
        image = np.load(SAMPLE)["images"][0][r, c].astype(float)
        from appkit.pictures import lookup_table
        top = lookup_table("inferno")[255].astype(float)
        np.testing.assert_allclose(rgba[:3], np.round(image * 0.35 + top * 0.65), atol=1)
    assert int(canvas.get_attribute("data-painted")) > painted
    # Nothing went to Python: the page's query is still the default.
    assert "Query at row 16, column 16" in page.get_by_text("attends most to").inner_text()
    # Hovering a pixel lights its query and key in the query/key space.
    assert page.locator("canvas.lens-space-canvas").get_attribute("data-lit") == "0"
    page.screenshot(path=SHOTS / "lens-hover.png", full_page=True)
    page.close()


def _inputs_show(page, row: int, col: int) -> None:
    """The number inputs are redrawn with the new values (under new keys: the old ones
    vanish when the rerun ends)."""
    for label, value in (("Query row", row), ("Query column", col)):
        page.get_by_label(label).and_(page.locator(f'[value="{value}"]')).wait_for(
            timeout=30_000)
    expect = pytest.importorskip("playwright.sync_api").expect
    expect(page.get_by_label("Query row")).to_have_count(1, timeout=30_000)


# Every state of the lens's caption, as (who wrote it, for which pixel, the text).
RECORD_CAPTIONS = """c => { const box = c.getRootNode().querySelector('.lens-caption');
  window.__captions = [];
  new MutationObserver(() => window.__captions.push(
    [box.dataset.source, box.dataset.pixel, box.textContent])).observe(
    box, {childList: true, characterData: true, subtree: true, attributes: true}); }"""
NUMBER = re.compile(r"\d+\.\d+")


def test_click_pins_python_follows_and_arrow_keys_move(server, browser, view):
    page, canvas = _open(browser, server)
    canvas.evaluate(RECORD_CAPTIONS)
    canvas.click(position=_at(canvas, 5, 27))
    page.locator('.lens-caption[data-source="python"][data-pixel="5,27"]').wait_for(
        timeout=30_000)  # Python's rerun arrived: its caption replaced the lens's own
    _inputs_show(page, 5, 27)
    seen = [c for c in page.evaluate("() => window.__captions") if c[1] == "5,27"]
    assert seen[0][0] == "browser"  # the lens wrote it at once, before Python answered
    said = lens.describe(analysis.query_view(view, (5, 27)), view.grid,
                              view.max_weight, shared=False)
    assert seen[-1][2] == said["text"]
    # The lens's own sentence is Python's, its numbers from the fp16 row within rounding.
    ours = seen[0][2]
    assert NUMBER.sub("#", ours) == NUMBER.sub("#", said["text"])
    for got, want in zip(NUMBER.findall(ours), NUMBER.findall(said["text"]), strict=True):
        places = len(want.split(".")[1])  # a last digit may differ: fp16 against fp32
        assert abs(float(got) - float(want)) <= 1.01 * 10.0 ** -places, (got, want)
    settle(page)
    # Away from the image, the lens shows the pinned query again.
    page.mouse.move(5, 5)
    assert canvas.get_attribute("data-pixel") == "5,27"
    # Keyboard: the canvas has the focus after the click; each press moves one pixel,
    # painted at once, and Python follows when the keys rest.
    canvas.focus()
    for key in ["ArrowDown", "ArrowDown", "ArrowLeft"]:
        canvas.press(key)
    assert canvas.get_attribute("data-pixel") == "7,26"
    assert canvas.get_attribute("data-source") == "key"
    page.get_by_text("Query at row 7, column 26").wait_for(timeout=30_000)
    _inputs_show(page, 7, 26)
    # Typing a row moves the lens's pinned query too.
    settle(page)
    box = page.get_by_label("Query row")
    box.fill("30")
    box.press("Enter")
    page.wait_for_function("c => c.dataset.pixel === '30,26'", arg=canvas.element_handle(),
                           timeout=30_000)
    page.close()


def test_query_key_space_lights_the_pixel_of_a_point(server, browser):
    page, canvas = _open(browser, server)
    space = page.locator("canvas.lens-space-canvas")
    box = space.bounding_box()
    light = page.locator(".lens-light")
    # Sweep across the middle of the cloud until a point is under the cursor.
    for dx in range(10, int(box["width"]) - 10, 4):
        page.mouse.move(box["x"] + dx, box["y"] + box["height"] / 2)
        if light.evaluate("e => e.style.display") == "block":
            break
    assert light.evaluate("e => e.style.display") == "block"
    assert light.get_attribute("data-role") in ("query", "key")
    cell = int(light.get_attribute("data-cell"))
    if light.get_attribute("data-role") == "query":  # a query point shows its own row
        assert canvas.get_attribute("data-query") == str(cell)
    page.get_by_role("button", name="colour by position").click()
    assert page.get_by_role("button", name="colour by position").get_attribute(
        "aria-pressed") == "true"
    page.close()


ARTIFACTS = ROOT / "artifacts"


def _inside(box: dict, image: dict) -> None:
    """``box`` lies on the image (its outer edges within the canvas's)."""
    assert box["x"] >= image["x"] - 0.01 and box["y"] >= image["y"] - 0.01, (box, image)
    assert box["x"] + box["width"] <= image["x"] + image["width"] + 0.01, (box, image)
    assert box["y"] + box["height"] <= image["y"] + image["height"] + 0.01, (box, image)


def _outlines_match(page, canvas, row: np.ndarray) -> None:
    outline = page.locator("canvas.lens-outline")
    got = outline.evaluate("c => c.__lensMass")
    assert got == wire.browser_mass_cells(row, lens.OUTLINES)  # the same cells, to the bit
    assert 1 <= len(got[0]) < len(got[1]) < row.size
    assert page.locator(".lens-mass").inner_text() == lens.mass_legend(row.reshape(32, 32))
    # Drawn: the outline canvas has white pixels.
    lit = outline.evaluate("""c => { const d = c.getContext('2d').getImageData(
        0, 0, c.width, c.height).data; let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] > 250 && d[i + 3] > 250) n++;
        return n; }""")
    assert lit > 0


def _colours_match(canvas, row: np.ndarray, pixels: np.ndarray, log: bool,
                   opacity: float = 0.65) -> None:
    """Every pixel of the canvas is the image blended with the colour map at the entry
    ``wire.browser_colour_index`` gives its weight (per-map scale)."""
    from appkit.pictures import lookup_table

    lo, hi = wire.browser_range(row, shared=False, max_weight=1.0, log=log)
    index = wire.browser_colour_index(row, lo, hi, log).reshape(32, 32)
    rgba = np.array(canvas.evaluate(
        "c => Array.from(c.getContext('2d').getImageData(0, 0, 32, 32).data)")).reshape(32, 32, 4)
    want = pixels * (1 - opacity) + lookup_table("inferno")[index] * opacity
    np.testing.assert_allclose(rgba[..., :3], np.floor(want + 0.5), atol=1)
    if log:  # the point of it: a peaked row's weak weights are not all one colour
        assert len(np.unique(index)) > len(np.unique(
            wire.browser_colour_index(row, *wire.browser_range(row, False, 1.0, False), False)))


def test_a_guess_is_scored_and_tallied(server, browser):
    page, canvas = _open(browser, server + "/Predict_then_reveal")
    assert canvas.get_attribute("data-hidden") == "yes"  # nothing shown before the guess
    page.mouse.move(*[canvas.bounding_box()[k] + 50 for k in ("x", "y")])
    assert canvas.get_attribute("data-hidden") == "yes"  # hovering reveals nothing either
    query = int(canvas.get_attribute("data-query"))
    row = np.array(0)  # filled below from the revealed row
    canvas.click(position=_at(canvas, 8, 9))
    assert canvas.get_attribute("data-hidden") == "no"  # revealed at once, in the browser
    row = np.array(canvas.evaluate("c => Array.from(c.__lensRow)")).reshape(32, 32)
    assert int(canvas.get_attribute("data-query")) == query
    score = guess_score(row, (8, 9), 4)
    page.get_by_text("of this query's attention lies within 4 pixels").wait_for(timeout=30_000)
    text = page.get_by_text("of this query's attention lies within 4 pixels").inner_text()
    assert f"{score.mass:.1%}" in text and f"{score.uniform:.1%}" in text
    page.get_by_text("1 of 5 guessed").wait_for(timeout=30_000)
    settle(page)
    page.mouse.move(2, 2)  # off the image: the lens shows the query's row
    # At a glance: the attention inside the circle is written on it ...
    label = page.locator(".lens-guess-label")
    assert label.inner_text() == f"{score.mass:.1%}"
    _inside(label.bounding_box(), canvas.bounding_box())
    # ... the fewest pixels holding 50% and 90% of the row are outlined, by the library's
    # rule on the browser's own row, and said in words under the lens ...
    _outlines_match(page, canvas, row)
    # ... and the query's square stays on the image.
    _inside(page.locator(".lens-query").bounding_box(), canvas.bounding_box())
    page.screenshot(path=SHOTS / "lens-guess.png", full_page=True)
    # The log colour scale: each pixel coloured by the log of its weight.
    page.get_by_text("Log colour scale").click()
    page.wait_for_function("c => c.getRootNode().querySelector('.lens-hi').textContent"
                           ".endsWith('(log scale)')", arg=canvas.element_handle(),
                           timeout=30_000)
    settle(page)
    pixels = np.load(SAMPLE)["images"][guess_module.Game(
        series=guess_module._series(1000, 0)).series[0]]
    _colours_match(canvas, row.ravel(), pixels, log=True)
    page.screenshot(path=ARTIFACTS / "predict-then-reveal.png", full_page=True)
    # The next image hides its row again.
    page.get_by_role("button", name="Next image").click()
    page.get_by_text("Image 2 of 5").wait_for(timeout=30_000)
    settle(page)
    assert page.locator("canvas.lens-main").get_attribute("data-hidden") == "yes"
    page.close()


def test_inspect_outlines_the_mass_and_says_each_fact_once(server, browser, view):
    page, canvas = _open(browser, server)
    readout = page.locator(".lens-readout")
    # The pinned query is described once, by the caption; the readout line stays empty.
    assert "attends most to" in page.locator(".lens-caption").inner_text()
    assert readout.inner_text() == ""
    assert page.locator(".lens-mass").count() == 0 or not page.locator(".lens-mass").inner_text()
    page.get_by_text("Outline 50% and 90% of the attention").click()
    page.wait_for_function("c => c.getRootNode().querySelector('.lens-mass').textContent",
                           arg=canvas.element_handle(), timeout=30_000)
    settle(page)
    row = np.array(canvas.evaluate("c => Array.from(c.__lensRow)"))
    _outlines_match(page, canvas, row)
    # Hovering: the readout speaks for the position under the mouse, in the caption's
    # format (four decimals, not 2.82e-3), and the outlines follow its row.
    _hover(page, canvas, 5, 7)
    said = readout.inner_text()
    assert re.fullmatch(r"Position at row 5, column 7 looks most at row \d+, column \d+: weight "
                        r"\d\.\d{4} \(\d+\.\d\dx uniform, 1/N = 0\.0010\)\.", said), said
    row = np.array(canvas.evaluate("c => Array.from(c.__lensRow)"))
    np.testing.assert_allclose(row, wire.browser_row(view.q, view.k, 5 * 32 + 7), rtol=1e-9)
    _outlines_match(page, canvas, row)
    page.screenshot(path=ARTIFACTS / "inspect-outlines.png", full_page=True)
    # A query in the last column and row: its square stays on the image.
    canvas.click(position=_at(canvas, 31, 31))
    page.locator('.lens-caption[data-pixel="31,31"]').wait_for(timeout=30_000)
    page.mouse.move(2, 2)
    _inside(page.locator(".lens-query").bounding_box(), canvas.bounding_box())
    page.close()

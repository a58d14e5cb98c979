"""End to end in real headless Chromium: the Inspect page served by ``streamlit run``.

Uses Debian's /usr/bin/chromium through Playwright (no browser download). Screenshots
land in artifacts/screenshots/.
"""

from __future__ import annotations

import pytest
from browserkit import MARKS, SHOTS, chromium, serve_app
from pagedata import checkpoint

pytestmark = MARKS


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    path = checkpoint(tmp / "tiny.pt", "seed", accuracies=(10.0,))
    with serve_app(tmp, CONVATTN_CHECKPOINT=str(path), CONVATTN_DATA="") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def _query_caption(page) -> str:
    return page.get_by_text("attends most to").inner_text()


def test_click_sets_query_and_bad_upload_says_why(server, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 2200})
    page.goto(server)
    page.get_by_text("attends most to").wait_for(timeout=90_000)
    image = page.locator("canvas.lens-main")  # the attention lens (in the page, no iframe)
    image.wait_for(timeout=30_000)
    page.wait_for_timeout(1000)
    assert "Query at row 16, column 16" in _query_caption(page)
    assert image.get_attribute("data-pixel") == "16,16"
    page.screenshot(path=SHOTS / "inspect-start.png", full_page=True)

    # 10 screen pixels per input pixel: the centre of input pixel (row 5, column 27).
    box = image.bounding_box()
    assert box is not None and abs(box["width"] - 320) < 2
    image.click(position={"x": 27 * 10 + 5, "y": 5 * 10 + 5})
    page.get_by_text("Query at row 5, column 27").wait_for(timeout=30_000)
    # The inputs are redrawn with the clicked values (the old ones vanish when the rerun ends;
    # under load a later rerun can show both for a moment, so wait for the settled page).
    page.wait_for_function("""() => ["Query row", "Query column"].every((label, i) => {
        const xs = [...document.querySelectorAll(`input[aria-label="${label}"]`)];
        return xs.length === 1 && xs[0].value === ["5", "27"][i]; })""", timeout=30_000)
    page.mouse.move(1, 1)  # off the lens: it shows the pinned query
    assert image.get_attribute("data-pixel") == "5,27"  # the overlay shows the new query
    page.screenshot(path=SHOTS / "inspect-after-click.png", full_page=True)

    # The keyboard path: typing a row moves the query too.
    row = page.get_by_label("Query row")
    row.fill("30")
    row.press("Enter")
    page.get_by_text("Query at row 30, column 27").wait_for(timeout=30_000)

    # A file that is not an image gets one sentence, not a traceback.
    page.get_by_role("radiogroup", name="Source").get_by_text("Upload").click()
    page.get_by_text("Upload an image in the sidebar").wait_for(timeout=30_000)
    page.get_by_test_id("stFileUploader").filter(has_text="Image file").get_by_test_id(
        "stFileUploaderDropzoneInput").set_input_files(
        files=[{"name": "notes.png", "mimeType": "image/png",
                "buffer": b"these are notes, not pixels"}])
    error = page.get_by_text("notes.png is not an image this app can read")
    error.wait_for(timeout=30_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    page.screenshot(path=SHOTS / "inspect-bad-upload.png", full_page=True)

    # Back to the test images: the query is kept, also after a further rerun (Streamlit
    # forgets the state of widgets that were not drawn, so the page must keep it).
    page.get_by_role("radiogroup", name="Source").get_by_text("Test images").click()
    page.get_by_text("Query at row 30, column 27").wait_for(timeout=30_000)
    number = page.get_by_label("Image number")
    number.fill("1")
    number.press("Enter")
    page.get_by_text("test/airplane/0001.jpg").wait_for(timeout=30_000)
    assert "Query at row 30, column 27" in _query_caption(page)
    page.close()


def test_a_fresh_servers_first_page_draws_the_lens_then_the_attributions(tmp_path, browser):
    # Opened as soon as the server answers, the page usually comes before the preload's
    # imports are done: it then computes its attributions only once the browser has drawn
    # it (appkit.preload.first_page_drawing). Either way they end up on the page.
    path = checkpoint(tmp_path / "tiny.pt", "seed", accuracies=(10.0,))
    with serve_app(tmp_path, CONVATTN_CHECKPOINT=str(path), CONVATTN_DATA="") as url:
        page = browser.new_page(viewport={"width": 1400, "height": 2200})
        page.goto(url)
        page.get_by_text("attends most to").wait_for(timeout=90_000)
        # Drawn under the maps, once all three are computed.
        page.get_by_text("Each map on its own colour scale").wait_for(timeout=90_000)
        assert page.locator('[data-testid="stImage"]').count() >= 6  # maps and their bars
        assert page.get_by_text("Computing the attributions once the page is drawn").count() == 0
        log = (tmp_path / "streamlit.log").read_text()
        assert "Traceback" not in log
        page.close()

"""The Learn, Attention statistics, Faithfulness and Sanity check pages in real headless
Chromium (Debian's /usr/bin/chromium through Playwright), served by ``streamlit run``.

Each page is opened, must finish without an exception and is saved as a screenshot in
artifacts/screenshots/; on the Learn page a click on the attention lens moves the query.
"""

from __future__ import annotations

import re

import pytest
from browserkit import MARKS, SHOTS, chromium, serve_app, settle
from pagedata import checkpoint

# url path, text that appears once the page has rendered, screenshot name
PAGES = [
    ("Learn", "largest difference from the network's forward pass", "learn.png"),
    ("Attention_statistics", "Row similarity", "attention-statistics.png"),
    ("Faithfulness", "Does attention agree with the attributions?", "faithfulness.png"),
    ("Sanity_check", "Attention row of attention", "sanity-check.png"),
]

pytestmark = MARKS


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("teaching")
    path = checkpoint(tmp / "tiny.pt", "seed", accuracies=(10.0,))
    with serve_app(tmp, CONVATTN_CHECKPOINT=str(path), CONVATTN_DATA="",
                   CONVATTN_CHECKPOINTS=str(tmp / "none")) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.mark.parametrize(("path", "ready", "shot"), PAGES)
def test_page_renders_without_exception(server, browser, path, ready, shot):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 4200})
    page.goto(f"{server}/{path}")
    if path == "Faithfulness":
        # No checks file: the page says how long a live run takes and waits for the button.
        page.get_by_text("images to test live").wait_for(timeout=120_000)
        settle(page)
        page.screenshot(path=SHOTS / "faithfulness-ask.png", full_page=True)
        page.get_by_role("button", name=re.compile(r"^Test 16 images \(")).click()
    if path == "Sanity_check":
        # Live work estimated over a few seconds (a busy machine) waits for its button.
        page.get_by_text(re.compile(r"Attention row of attention|Randomise the layers \(")
                         ).first.wait_for(timeout=120_000)
        button = page.get_by_role("button", name=re.compile(r"^Randomise the layers \("))
        if button.count():
            button.click()
    page.get_by_text(ready).first.wait_for(timeout=120_000)
    settle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    page.screenshot(path=SHOTS / shot, full_page=True)
    page.close()


def test_learn_click_moves_the_query(server, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 2000})
    page.goto(f"{server}/Learn")
    page.get_by_text("largest difference from the network's forward pass").wait_for(
        timeout=120_000)
    image = page.locator("canvas.lens-main")  # the attention lens (in the page, no iframe)
    image.wait_for(timeout=120_000)
    settle(page)
    box = image.bounding_box()
    assert box is not None and abs(box["width"] - 288) < 2  # 9 screen pixels per pixel
    best_before = page.get_by_text("The best match is the key at").inner_text()
    image.click(position={"x": 4 * 9 + 4, "y": 28 * 9 + 4})  # input pixel (row 28, col 4)
    expect = pytest.importorskip("playwright.sync_api").expect
    # The inputs are redrawn with the clicked values; the old ones vanish when the rerun ends.
    page.get_by_label("Query row").and_(page.locator('[value="28"]')).wait_for(timeout=30_000)
    expect(page.get_by_label("Query row")).to_have_count(1, timeout=30_000)
    expect(page.get_by_label("Query row")).to_have_value("28", timeout=30_000)
    expect(page.get_by_label("Query column")).to_have_value("4", timeout=30_000)
    settle(page)
    assert page.get_by_text("The best match is the key at").inner_text() != best_before
    assert page.locator('[data-testid="stException"]').count() == 0
    page.screenshot(path=SHOTS / "learn-after-click.png", full_page=True)
    page.close()

"""End to end in headless Chromium: the Misclassifications, Ablation, Training and Compare
pages served by ``streamlit run``. Screenshots land in artifacts/screenshots/."""

from __future__ import annotations

import pytest
from browserkit import MARKS, SHOTS, chromium, serve_app, settle
from pagedata import checkpoint, write_ablation, write_predictions, write_results

pytestmark = MARKS


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pages")
    seed = checkpoint(tmp / "seed.pt", "seed")
    checkpoint(tmp / "seed-noattn.pt", "seed-noattn", accuracies=(35.0, 45.0))
    write_predictions(seed)
    write_ablation(seed)
    write_results(tmp)
    with serve_app(tmp, CONVATTN_CHECKPOINT=str(seed), CONVATTN_CHECKPOINTS=str(tmp),
                   CONVATTN_DATA="") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def _click_cell(page, chart_index: int, row: int, col: float, rows: int = 10,
                cols: float = 10) -> None:
    """Click the middle of cell (row, col) of a plotly chart's plotting area."""
    area = page.locator('[data-testid="stPlotlyChart"]').nth(chart_index).locator(".nsewdrag")
    box = area.first.bounding_box()
    assert box is not None
    x = box["x"] + (col + 0.5) * box["width"] / cols
    y = box["y"] + (row + 0.5) * box["height"] / rows
    page.mouse.move(x - 3, y - 3)
    page.mouse.move(x, y, steps=3)
    page.mouse.click(x, y)


def test_click_a_confusion_cell_see_its_images_open_one(server, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.goto(f"{server}/Misclassifications")
    page.get_by_text("with any true class, any prediction").wait_for(timeout=90_000)
    settle(page)  # a click on a chart that is still being redrawn is lost
    page.screenshot(path=SHOTS / "misclassifications.png", full_page=True)

    _click_cell(page, 0, row=0, col=1)  # true airplane, predicted automobile
    page.get_by_text("with true class airplane, predicted automobile").wait_for(timeout=30_000)
    settle(page)
    captions = page.locator('[data-testid="stCaptionContainer"]').all_inner_texts()
    shown = [c.split()[0] for c in captions if c.startswith("#")]
    assert shown == ["#17", "#5"]  # the two images of that cell, most confident first
    # The thumbnails keep square pixels however the browser scales them to their column.
    thumbs = page.locator('[data-testid="stImage"] img')
    assert thumbs.count() == 2
    assert {thumbs.nth(i).evaluate("e => getComputedStyle(e).imageRendering")
            for i in range(2)} == {"pixelated"}
    page.wait_for_timeout(500)
    page.screenshot(path=SHOTS / "misclassifications-cell.png", full_page=True)

    # A click on the bird bar of the per-class chart shows the birds' mistakes.
    _click_cell(page, 1, row=2, col=0.3, cols=1)
    page.get_by_text("with true class bird, any prediction").wait_for(timeout=30_000)

    _click_cell(page, 0, row=0, col=1)
    page.get_by_text("with true class airplane, predicted automobile").wait_for(timeout=30_000)
    settle(page)  # until the rerun ends, the birds' gallery (and its buttons) is still shown
    captions = page.locator('[data-testid="stCaptionContainer"]').all_inner_texts()
    assert [c.split()[0] for c in captions if c.startswith("#")] == ["#17", "#5"]
    page.get_by_role("button", name="Inspect").first.click()
    page.get_by_text("test/airplane/0017.jpg (#17)").wait_for(timeout=60_000)
    page.get_by_text("attends most to").wait_for(timeout=60_000)
    assert page.get_by_label("Image number").input_value() == "17"
    assert page.locator('[data-testid="stException"]').count() == 0
    page.wait_for_timeout(1000)
    page.screenshot(path=SHOTS / "inspect-from-misclassifications.png", full_page=True)
    page.close()


@pytest.mark.parametrize(("name", "ready"), [
    ("Ablation", "attention **fixes"),
    ("Training", "Differences of the mean test accuracy"),
    ("Compare", "score of"),
])
def test_page_renders_in_the_browser(server, browser, name, ready):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    page.goto(f"{server}/{name}")
    page.get_by_text(ready.replace("**", "")).first.wait_for(timeout=90_000)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=90_000)
    page.wait_for_timeout(1000)
    assert page.locator('[data-testid="stException"]').count() == 0
    page.screenshot(path=SHOTS / f"{name.lower()}.png", full_page=True)
    page.close()

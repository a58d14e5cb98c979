"""In real headless Chromium: ``streamlit run app.py -- --model card.toml`` with
CONVATTN_DATA on a folder of 80x80 images, for a 5-class 64x64 card written here. The
prediction names the card's classes, and pages 3, 4, 5, 7 and 10 render without an
exception."""

from __future__ import annotations

import pytest
from browserkit import MARKS, SHOTS, chromium, serve_app, settle
from cardkit import CLASSES, write_card, write_folder

pytestmark = MARKS

PAGES = ["Predict_then_reveal", "Misclassifications", "Ablation", "Likely_label_errors",
         "Training"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("card_browser")
    card = write_card(tmp / "model")
    folder = write_folder(tmp / "data", size=(80, 80), per_class=2)
    env = {"CONVATTN_DATA": str(folder), "CONVATTN_CACHE": str(tmp / "cache"),
           "CONVATTN_CHECKPOINT": "", "CONVATTN_MODEL": ""}
    # the card named by the operator's flag, as ``make app MODEL=...`` names it
    with serve_app(tmp, args=["--model", str(card)], **env) as url:
        yield url


def test_card_in_the_browser(server):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.goto(server)
        page.get_by_text("Prediction", exact=True).wait_for(timeout=90_000)
        settle(page)
        sidebar = page.locator('[data-testid="stSidebar"]').inner_text()
        assert "card.toml" in sidebar and "5 classes, 64x64 RGB images" in sidebar, sidebar
        verdict = page.locator('[data-testid="stMarkdownContainer"]').filter(
            has_text="Correct:").or_(page.locator('[data-testid="stMarkdownContainer"]')
                                      .filter(has_text="Wrong:")).first.inner_text()
        assert any(f" {c} " in f" {verdict} ".replace("(", " ") for c in CLASSES), verdict
        page.screenshot(path=SHOTS / "card-inspect.png", full_page=True)
        for name in PAGES:
            page.goto(f"{server}/{name}")
            page.locator("h1").first.wait_for(timeout=90_000)
            settle(page)
            page.screenshot(path=SHOTS / f"card-{name}.png", full_page=True)
            assert page.locator('[data-testid="stException"]').count() == 0, name
        page.goto(f"{server}/Misclassifications")
        page.locator("h1").first.wait_for(timeout=90_000)
        settle(page)
        text = page.locator('[data-testid="stMain"]').inner_text()
        assert "Confusion matrix" in text and "#0 ant →" in text

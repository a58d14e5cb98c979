"""In real headless Chromium: ``streamlit run app.py -- --model card.toml`` with
CONVATTN_DATA on a folder of 80x80 images, for a 5-class 64x64 card written here. The
prediction names the card's classes, and pages 3, 4, 5, 7 and 10 render without an
exception."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from browserkit import MARKS, ROOT, SHOTS, _free_port, chromium, settle
from cardkit import CLASSES, write_card, write_folder

pytestmark = MARKS

PAGES = ["Predict_then_reveal", "Misclassifications", "Ablation", "Likely_label_errors",
         "Training"]


@contextmanager
def _serve(tmp: Path, card: Path, **env: str) -> Iterator[str]:
    """``streamlit run app.py -- --model CARD`` on a free port (the card named by the
    operator's flag, as ``make app MODEL=...`` names it)."""
    port = _free_port()
    log_path = tmp / "streamlit.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
             "--server.headless", "true", "--server.port", str(port),
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
             "--", "--model", str(card)],
            cwd=ROOT, env=dict(os.environ, **env), stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 60
            while True:
                try:
                    urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)
                    break
                except OSError:
                    if time.time() > deadline or proc.poll() is not None:
                        raise RuntimeError(f"streamlit did not start: {log_path}") from None
                    time.sleep(0.3)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=20)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("card_browser")
    card = write_card(tmp / "model")
    folder = write_folder(tmp / "data", size=(80, 80), per_class=2)
    env = {"CONVATTN_DATA": str(folder), "CONVATTN_CACHE": str(tmp / "cache"),
           "CONVATTN_CHECKPOINT": "", "CONVATTN_MODEL": ""}
    with _serve(tmp, card, **env) as url:
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

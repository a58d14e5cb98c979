"""What the browser tests (and the benchmarks in bench/) share: Debian's Chromium through
Playwright (no browser download) and the app served by ``streamlit run`` on a free local
port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "artifacts" / "screenshots"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason="Debian's chromium is not installed at /usr/bin/chromium "
                              "(apt-get install -y chromium; .ci/run does it)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_app(tmp: Path, args: Sequence[str] = (), **env: str) -> Iterator[str]:
    """Run ``streamlit run app.py -- ARGS`` with extra environment variables; yields its
    URL."""
    port = _free_port()
    log_path = tmp / "streamlit.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
             "--server.headless", "true", "--server.port", str(port),
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
             "--", *args],
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
            SHOTS.mkdir(parents=True, exist_ok=True)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=20)


@contextmanager
def chromium() -> Iterator[object]:
    """A headless Chromium browser (Playwright's Browser)."""
    from playwright.sync_api import sync_playwright  # a dev dependency, needed only here

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def settle(page) -> None:
    """Wait until Streamlit has finished running the page: during a rerun the previous
    run's elements are still on screen."""
    page.wait_for_timeout(500)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)
    page.wait_for_timeout(500)

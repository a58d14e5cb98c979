"""From ``streamlit run app.py`` to Inspect's attention panel, in headless Chromium.

    python -m bench.bench_cold_start [--repo PATH] [--repeat 2]

Starts a fresh server on the shipped checkpoint and bundled sample (no data folder) in the
checkout at ``--repo`` (this one by default: point it at a worktree of an older commit to
compare, with this venv's packages), opens the page and prints, from the process start:
when the server answers its health check, when the page has loaded, when the prediction
and then the attention panel are shown. Needs /usr/bin/chromium and playwright. The load
average is printed: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import browserkit  # noqa: E402  (tests/ holds the Chromium set-up the browser tests use)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cold_start(browser: object, repo: Path) -> dict[str, float]:
    page = browser.new_page(viewport={"width": 1400, "height": 2200})
    page.goto("about:blank")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.fileWatcherType", "none"],
        cwd=repo, env=dict(os.environ, CONVATTN_DATA=""), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("streamlit did not start") from None
                time.sleep(0.05)
        out = {"health": time.perf_counter() - t0}
        page.goto(url)
        out["page loaded"] = time.perf_counter() - t0
        page.get_by_text("Prediction").first.wait_for(timeout=120_000)
        out["prediction"] = time.perf_counter() - t0
        page.get_by_text("attends most to").wait_for(timeout=120_000)
        out["attention panel"] = time.perf_counter() - t0
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        page.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", type=Path, default=ROOT, help="the checkout to start")
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args()
    if not browserkit.CHROMIUM.exists():
        sys.exit(f"error: {browserkit.CHROMIUM} is not installed (apt-get install -y chromium).")
    with browserkit.chromium() as browser:
        for _ in range(args.repeat):
            t = cold_start(browser, args.repo.resolve())
            print(", ".join(f"{k} {v:.1f} s" for k, v in t.items())
                  + f" (load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()

"""From ``streamlit run app.py`` to Inspect's prediction and lens, in headless Chromium,
against the floor: an app that only starts Streamlit, imports torch and writes one line.

    python -m bench.bench_cold_start [--repo PATH ...] [--repeat 3]

Each round starts a fresh server for the floor app and for each checkout (this one, and
every ``--repo``: a worktree of an older commit, run with this venv's packages), one after
another in the same Chromium, so that the machine's load hits them alike; the figures are
medians over ``--repeat`` rounds. The app runs on the shipped checkpoint and bundled sample
(no data folder). For each start it prints, from the process start: the health check
answered, the page loaded, the websocket opened (the first script run starts then), and
the page done: the floor's line, or Inspect's prediction and then the lens's caption
("attends most to"). The load average is printed beside each round: the machine is shared.
Needs /usr/bin/chromium and playwright.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import browserkit  # noqa: E402  (tests/ holds the Chromium set-up the browser tests use)

# The floor: what any Streamlit app with torch pays before its first line shows.
FLOOR_APP = ('import streamlit as st\nimport torch\n\n'
             'st.write(f"floor: torch {torch.__version__}")\n')
FLOOR_DONE = "floor: torch"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cold_start(browser: object, repo: Path, app: str, waits: list[str], after: float = 0.0
               ) -> dict[str, float]:
    """One fresh server of ``app`` in ``repo``; the seconds from its start to each step
    (with ``after``: the page opened that long after the health check, times from then)."""
    page = browser.new_page(viewport={"width": 1400, "height": 2200})
    page.goto("about:blank")
    marks: dict[str, float] = {}
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    page.on("websocket", lambda _ws: marks.setdefault("websocket", time.perf_counter() - t0))
    # (t0 is read when the event comes: with --after, from the page's opening)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", app, "--server.headless", "true",
         "--server.port", str(port), "--server.fileWatcherType", "none",
         "--browser.gatherUsageStats", "false"],
        cwd=repo, env=dict(os.environ, CONVATTN_DATA="", PYTHONPATH=str(repo)),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
        if after:
            time.sleep(after)
            t0 = time.perf_counter()
        page.goto(url)
        out["page loaded"] = time.perf_counter() - t0
        for text in waits:
            page.get_by_text(text).first.wait_for(timeout=120_000)
            out[text] = time.perf_counter() - t0
        return {"health": out["health"], "page loaded": out["page loaded"],
                "websocket": marks.get("websocket", float("nan")),
                **{k: v for k, v in out.items() if k in waits}}
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        page.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", type=Path, action="append", default=[],
                   help="another checkout to start beside this one (repeatable)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-floor", action="store_true", help="skip the floor app")
    p.add_argument("--after", type=float, default=0.0, help="open the page this many "
                   "seconds after the server answers (a server started before the class "
                   "comes in); the times then count from the page's opening")
    args = p.parse_args()
    if not browserkit.CHROMIUM.exists():
        sys.exit(f"error: {browserkit.CHROMIUM} is not installed (apt-get install -y chromium).")
    floor_dir = Path(tempfile.mkdtemp(prefix="convattn-floor-"))
    (floor_dir / "floor.py").write_text(FLOOR_APP)
    runs = ([] if args.no_floor else [("floor", floor_dir, "floor.py", [FLOOR_DONE])])
    inspect = ["Prediction", "attends most to"]
    runs += [(f"app {r}", r.resolve(), "app.py", inspect) for r in [ROOT, *args.repo]]
    done: dict[str, list[float]] = {name: [] for name, *_ in runs}
    with browserkit.chromium() as browser:
        cold_start(browser, floor_dir, "floor.py", [FLOOR_DONE])  # warms the OS file cache
        for i in range(args.repeat):
            for name, repo, app, waits in runs:
                load = os.getloadavg()[0]
                t = cold_start(browser, repo, app, waits, args.after)
                done[name].append(t[waits[-1]])
                print(f"round {i + 1} {name}: " + ", ".join(f"{k} {v:.2f} s" for k, v in t.items())
                      + f" (load average {load:.1f})", flush=True)
    print(f"medians of {args.repeat} (load average now {os.getloadavg()[0]:.1f}):")
    floor = statistics.median(done["floor"]) if "floor" in done else None
    for name, values in done.items():
        m = statistics.median(values)
        print(f"  {name}: {m:.2f} s" + (f" (floor + {m - floor:.2f} s)" if floor else ""))


if __name__ == "__main__":
    main()

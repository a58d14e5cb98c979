"""Many pages of one Chromium opening Inspect at once: does every page render it?

    python -m bench.bench_tabs [--pages 16] [--limit 300] [--repo PATH] [--contexts]
                               [--real-tabs]

Starts ``streamlit run app.py`` (the checkout at ``--repo``, this one by default) on the
shipped checkpoint and bundled sample, opens it once and waits for Inspect (so the model
and caches are loaded, as on a server that has been up a while; ``--cold`` skips this),
then opens ``--pages`` pages of one headless Chromium at the same moment, each its own
Streamlit session. It polls every page until Inspect's prediction and the lens's caption
("attends most to") are shown, or ``--limit`` seconds pass, and prints when each page got
there, how many websockets each page opened (more than one: the page reconnected), and
the server's resident memory with 1, 4 and ``--pages`` pages open.

By default the pages share one browser context, as tabs of one window do: one cookie jar
and one pool of connections to the host (Chromium allows 6 at once for plain HTTP).
``--contexts`` gives each page a context of its own instead. Playwright turns off
Chromium's throttling of background pages; ``--real-tabs`` turns it back on, as in a
browser someone uses (a background tab's timers slowed, a hidden one's frames not drawn).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import browserkit  # noqa: E402  (the Chromium set-up the browser tests use)

from bench.bench_sessions import _rss_mib, _wait_healthy, start_server  # noqa: E402

DONE = ("Prediction", "attends most to")
# What Playwright adds to Chromium's flags to keep background pages running at full speed.
THROTTLING_OFF = ["--disable-background-timer-throttling",
                  "--disable-backgrounding-occluded-windows",
                  "--disable-renderer-backgrounding"]


def _shown(page) -> bool:
    try:
        return all(page.get_by_text(t).count() > 0 for t in DONE)
    except Exception:  # noqa: BLE001  (a page between two documents: not yet)
        return False


def open_all(browser, url: str, n: int, limit: float, contexts: bool, server_pid: int
             ) -> tuple[list[float], list[int], dict[int, float], list[float]]:
    """``n`` pages navigated to ``url`` at once; the seconds each took to show Inspect (nan:
    never within ``limit``), the websockets each opened, the server's memory (MiB) once
    the first 1, 4 and ``n`` pages had shown it, and when each page's last websocket
    message reached the browser (the server's part done; Playwright hears of it when it
    next polls, so up to one round of polling late)."""
    ctxs = [browser.new_context(viewport={"width": 1400, "height": 2200})
            for _ in range(n if contexts else 1)]
    pages = [ctxs[i % len(ctxs)].new_page() for i in range(n)]
    sockets = [0] * n
    last = [float("nan")] * n  # when the page's last websocket message reached the browser
    t0 = time.perf_counter()

    def opened(ws, i: int) -> None:
        sockets[i] += 1
        ws.on("framereceived", lambda _f: last.__setitem__(i, time.perf_counter() - t0))

    for i, page in enumerate(pages):
        page.on("websocket", lambda ws, i=i: opened(ws, i))
    for page in pages:
        page.goto(url, wait_until="commit")
    done = [float("nan")] * n
    memory: dict[int, float] = {}
    while time.perf_counter() - t0 < limit:
        for i, page in enumerate(pages):
            if done[i] != done[i] and _shown(page):
                done[i] = time.perf_counter() - t0
        shown = sum(d == d for d in done)
        for mark in (1, 4, n):
            if shown >= mark and mark not in memory:
                memory[mark] = _rss_mib(server_pid)
        if shown == n:
            break
        time.sleep(0.2)
    for ctx in ctxs:
        ctx.close()
    return done, sockets, memory, last


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pages", type=int, default=16)
    p.add_argument("--limit", type=float, default=300.0, help="seconds a page may take")
    p.add_argument("--repo", type=Path, default=ROOT)
    p.add_argument("--contexts", action="store_true", help="one browser context per page")
    p.add_argument("--real-tabs", action="store_true",
                   help="keep Chromium's background-page throttling on")
    p.add_argument("--cold", action="store_true", help="no first page before the others")
    args = p.parse_args()
    if not browserkit.CHROMIUM.exists():
        sys.exit(f"error: {browserkit.CHROMIUM} is not installed.")
    repo = args.repo.resolve()
    os.environ["CONVATTN_DATA"] = ""
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(repo), os.environ.get("PYTHONPATH")]))
    server, port = start_server("app.py", repo, ["--server.fileWatcherType", "none"])
    url = f"http://127.0.0.1:{port}"
    from playwright.sync_api import sync_playwright

    try:
        _wait_healthy(port, server)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=str(browserkit.CHROMIUM), args=browserkit.ARGS,
                ignore_default_args=THROTTLING_OFF if args.real_tabs else None)
            if not args.cold:
                warm, *_ = open_all(browser, url, 1, args.limit, False, server.pid)
                print(f"first page alone: {warm[0]:.1f} s; server "
                      f"{_rss_mib(server.pid):.0f} MiB with no page open")
            load = os.getloadavg()[0]
            done, sockets, memory, last = open_all(browser, url, args.pages, args.limit,
                                             args.contexts, server.pid)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    ok = [d for d in done if d == d]
    how = "one context per page" if args.contexts else "one context"
    print(f"{args.pages} pages of one Chromium ({how}"
          f"{', background throttling on' if args.real_tabs else ''}), {repo}, load average "
          f"{load:.1f} before:")
    print("  shown after (s): " + " ".join("never" if d != d else f"{d:.1f}" for d in done))
    if ok:
        print("  the server's last message reached the page (s): "
              + " ".join(f"{x:.1f}" for x in last))
        print(f"  {len(ok)} of {args.pages} shown; median {statistics.median(ok):.1f} s, last "
              f"{max(ok):.1f} s; websockets opened per page: {sockets}")
    print("  server memory: " + ", ".join(f"{v:.0f} MiB with {k} shown" for k, v in
                                           sorted(memory.items())))
    return 0 if len(ok) == args.pages else 1


if __name__ == "__main__":
    raise SystemExit(main())

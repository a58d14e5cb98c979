"""What each session costs the server in memory, and whether one session's walk levels off.

    python -m bench.bench_memory [--sessions 32] [--walk 500] [--repo PATH ...]

For this checkout and each ``--repo`` (an older worktree, run with this venv), one after
the other:

- **sessions**: starts ``streamlit run app.py`` (shipped checkpoint, bundled sample), opens
  one session on Inspect and reads the server's resident memory; then ``--sessions`` more
  clients (Streamlit's websocket protocol, as in ``bench.bench_sessions``) open Inspect at
  once, each moves to an image of its own (image 1, 2, ...: a full rerun, so each leaves
  its own cached results), pins three queries, and stays connected while the memory is
  read again. Prints MiB per extra session, and whether every session showed its image.
- **walk**: one session (Streamlit's AppTest, in a fresh process) steps through ``--walk``
  images with the attribution methods cleared (three Captum maps per image would make it
  a 15-minute walk; their cache is bounded the same way), printing the process's resident
  memory after every 100 images and what the session state holds.

The machine is shared: the load average is printed beside each figure.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import websockets

from bench.bench_sessions import (
    ROOT,
    SHOWN,
    _rerun,
    _rss_mib,
    _run,
    _wait_healthy,
    start_server,
)

IMAGE = "Image number"  # the sidebar's number input (its label goes on with the range)


async def _client(url: str, image: int, release: asyncio.Event, ready: asyncio.Queue,
                  timeout: float = 120.0) -> bool:
    """Open Inspect, move to ``image``, pin three queries, then wait for ``release``;
    whether the page showed ``image`` and answered the queries."""
    ok = False
    try:
        async with websockets.connect(url, subprotocols=["streamlit"], max_size=None) as ws:
            first = await _run(ws, _rerun(), timeout)
            wid = next((w for label, w in (first.inputs if first else {}).items()
                        if label.startswith(IMAGE)), None)
            if wid is not None:
                moved = await _run(ws, _rerun(first.page_hash, {wid: image}), timeout)
                shown = moved and any((m := SHOWN.search(t)) and int(m[1]) == image
                                      for t in moved.texts)
                ok = bool(shown)
                row, col = moved.inputs.get("Query row"), moved.inputs.get("Query column")
                fragment = moved.fragments.get(row, "")
                for q in range(3):
                    answer = await _run(ws, _rerun(first.page_hash, {row: 5 + q, col: 9},
                                                   fragment), timeout)
                    ok = ok and answer is not None
                    row = answer.inputs.get("Query row", row) if answer else row
                    col = answer.inputs.get("Query column", col) if answer else col
            ready.put_nowait(ok)
            await release.wait()
    except (OSError, websockets.WebSocketException):
        ready.put_nowait(False)
    return ok


async def _sessions(url: str, images: list[int], pid: int) -> tuple[int, float]:
    """Clients on ``images`` at once; how many showed their image, and the server's
    memory (MiB) read while all are still connected."""
    release, ready = asyncio.Event(), asyncio.Queue()
    tasks = [asyncio.create_task(_client(url, i, release, ready)) for i in images]
    for _ in images:
        await ready.get()
    await asyncio.sleep(2.0)
    rss = _rss_mib(pid)
    release.set()
    return sum(await asyncio.gather(*tasks)), rss


def per_session(repo: Path, n: int) -> str:
    env_before = dict(os.environ)
    os.environ.update(CONVATTN_DATA="", PYTHONPATH=str(repo))
    server, port = start_server("app.py", repo, ["--server.fileWatcherType", "none"])
    os.environ.clear()
    os.environ.update(env_before)
    try:
        _wait_healthy(port, server)
        url = f"ws://127.0.0.1:{port}/_stcore/stream"
        shown1, one = asyncio.run(_sessions(url, [0], server.pid))
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        shown, many = asyncio.run(_sessions(url, list(range(1, n + 1)), server.pid))
        wall = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait(timeout=30)
    return (f"{repo}: {one:.0f} MiB with one session, {many:.0f} MiB with {n} more open "
            f"({shown} of {n} showed their own image, {wall:.0f} s): "
            f"{(many - one) / n:.1f} MiB per extra session (load average {load:.1f})")


def walk(images: int, every: int = 100) -> None:
    """In this process (a child): one AppTest session through ``images`` images."""
    sys.path[:0] = [str(ROOT / "tests")]
    from apprun import open_page

    from bench.bench_sessions import _rss_mib as rss

    try:  # as the server does when it starts (older checkouts lack it)
        from appkit.allocator import return_big_blocks
    except ImportError:
        return_big_blocks = None
    fixed = bool(return_big_blocks and return_big_blocks())
    at = open_page()
    at.multiselect(key="methods").set_value([]).run()
    out = {"start": rss(os.getpid())}
    for i in range(1, images + 1):
        box = next(w for w in at.number_input if w.label.startswith(IMAGE))
        box.set_value(i % 1000).run()
        if at.exception:
            raise SystemExit(at.exception[0].message)
        if i % every == 0:
            gc.collect()
            out[str(i)] = rss(os.getpid())
    state = at.session_state._state
    arrays = sum(v.nbytes for k in state.filtered_state
                 for v in _arrays(state[k]) if v.base is None)
    out["session arrays KiB"] = arrays / 1024
    out["allocator"] = fixed
    print(json.dumps(out))


def _arrays(obj: object, depth: int = 0) -> list[np.ndarray]:
    """The numpy arrays a session-state value holds, a few levels down."""
    if isinstance(obj, np.ndarray):
        return [obj]
    if depth > 4:
        return []
    items = (obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple))
             else vars(obj).values() if hasattr(obj, "__dict__") else [])
    return [a for x in items for a in _arrays(x, depth + 1)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, default=32)
    p.add_argument("--walk", type=int, default=500)
    p.add_argument("--repo", type=Path, action="append", default=[])
    p.add_argument("--only", choices=["sessions", "walk"], default=None)
    p.add_argument("--child-walk", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child_walk:
        walk(args.child_walk)
        return 0
    repos = [ROOT, *(r.resolve() for r in args.repo)]
    if args.only != "walk":
        for repo in repos:
            print(per_session(repo, args.sessions), flush=True)
    if args.only != "sessions":
        for repo in repos:
            load = os.getloadavg()[0]
            # This file, run in ``repo`` with its packages (and its bench and tests).
            child = subprocess.run(
                [sys.executable, __file__, "--child-walk", str(args.walk)],
                cwd=repo, env={**os.environ, "CONVATTN_DATA": "", "PYTHONPATH": str(repo)},
                capture_output=True, text=True)
            if child.returncode:
                print(f"{repo}: walk failed: {child.stderr.strip().splitlines()[-1:]}")
                continue
            t = json.loads(child.stdout.strip().splitlines()[-1])
            kept, fixed = t.pop("session arrays KiB"), t.pop("allocator")
            print(f"{repo}: one session through {args.walk} images, resident MiB: "
                  + ", ".join(f"{k} {v:.0f}" for k, v in t.items())
                  + f"; arrays owned by its session state {kept:.0f} KiB; big blocks "
                  f"returned to the system: {'yes' if fixed else 'no'} "
                  f"(load average {load:.1f})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Many sessions clicking at once on one server: is every click answered, with its own result?

Starts ``streamlit run app.py`` and connects ``--sessions`` lightweight clients to it. A
client speaks Streamlit's own websocket protocol (the protobuf BackMsg/ForwardMsg a browser
sends and receives) instead of driving a browser, because one Chromium per session would
take the two cores this is measured on. Each client opens Inspect, then "clicks" queries
picked by its own random generator: it sets the query inputs and reruns the attention
panel's fragment, as the browser does after a click. A click is

- *answered* when the server reports the run finished within ``--timeout`` seconds,
- *its own* when the panel's caption names that session's query, and the strongest key
  and weight it quotes equal a reference computed here, with the library, for the image
  that session shows.

Prints the latency of answered clicks (p50, p90, max), the clicks lost or crossed, and the
server's resident memory before the sessions, with all of them open, and per session.

    python -m bench.bench_sessions --sessions 8 --clicks 10
    python -m bench.bench_sessions --floor   # Streamlit's own fragment rerun, for scale
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_FILE = ROOT / "convattn" / "resources" / "cifar10-test-sample.npz"  # this checkout's
CAPTION = re.compile(r"Query at row (\d+), column (\d+).*?attends most to the \w+ at row "
                     r"(\d+), column (\d+), weight ([0-9.]+)")
UNIFORM = re.compile(r"Query at row (\d+), column (\d+).* gives every \w+ the same weight")
SHOWN = re.compile(r"\(#(\d+)\)")
# --floor: the smallest app with the same inputs in a fragment, to time Streamlit itself.
FLOOR_APP = """import streamlit as st

@st.fragment
def panel():
    r = st.number_input("Query row", 0, 31, 16)
    c = st.number_input("Query column", 0, 31, 16)
    st.caption(f"Query at row {r}, column {c}")

st.caption("(#0)")
panel()
"""


@dataclass
class Run:
    """What one script run sent back: text, widgets, and the fragment that holds them."""

    texts: list[str] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)  # label -> widget id
    fragments: dict[str, str] = field(default_factory=dict)  # widget id -> fragment id
    page_hash: str = ""
    finished: bool = False
    status: int = -1


def _collect(msg: ForwardMsg, run: Run) -> None:
    kind = msg.WhichOneof("type")
    if kind == "new_session":
        run.page_hash = msg.new_session.page_script_hash
    elif kind == "script_finished":
        run.finished, run.status = True, msg.script_finished
    elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
        element = msg.delta.new_element
        which = element.WhichOneof("type")
        if which == "markdown":
            run.texts.append(element.markdown.body)
        elif which == "bidi_component" and element.bidi_component.json:
            # The lens carries its pinned query's caption (appkit.lens.describe).
            said = json.loads(element.bidi_component.json).get("caption") or {}
            run.texts.append(said.get("text") or "")
        elif which == "number_input":
            run.inputs[element.number_input.label] = element.number_input.id
            run.fragments[element.number_input.id] = msg.delta.fragment_id


async def _run(ws, request: BackMsg, timeout: float) -> Run | None:
    """Send one rerun request and read until the server says the run finished."""
    run = Run()
    await ws.send(request.SerializeToString())
    deadline = time.perf_counter() + timeout
    while not run.finished:
        left = deadline - time.perf_counter()
        if left <= 0:
            return None
        try:
            raw = await asyncio.wait_for(ws.recv(), left)
        except TimeoutError:
            return None
        msg = ForwardMsg()
        msg.ParseFromString(raw)
        _collect(msg, run)
    return run


def _rerun(page_hash: str = "", widgets: dict[str, int] | None = None,
           fragment: str = "") -> BackMsg:
    msg = BackMsg()
    state = msg.rerun_script
    state.page_script_hash = page_hash
    state.fragment_id = fragment
    for wid, value in (widgets or {}).items():
        w = state.widget_states.widgets.add()
        w.id, w.int_value = wid, value
    return msg


@dataclass
class Session:
    latencies: list[float] = field(default_factory=list)
    lost: int = 0
    crossed: list[str] = field(default_factory=list)
    open_s: float = float("nan")
    backend: str = ""  # a proxy's X-Convattn-Backend handshake header (bench_cluster)


class Reference:
    """The caption a correct answer quotes, computed with the library (cached per image)."""

    def __init__(self, checkpoint: Path) -> None:
        sys.path.insert(0, str(ROOT))
        from convattn import load_checkpoint
        from convattn.readout import analysis

        self.analysis = analysis
        self.model, self.info = load_checkpoint(checkpoint)
        self.images = np.load(SAMPLE_FILE)["images"]
        self.cache: dict[int, object] = {}

    def strongest(self, index: int, query: tuple[int, int]) -> tuple[tuple[int, int], float]:
        if index not in self.cache:
            self.cache[index] = self.analysis.analyse(self.model, self.images[index],
                                                      self.info.mean, self.info.std)
        result = self.cache[index]
        view = result.view(next(iter(result.modules)))
        return self.analysis.query_view(view, query).strongest()


def _check(run: Run, query: tuple[int, int], index: int, ref: Reference | None
           ) -> str | None:
    """None when the run answers ``query`` on image ``index`` correctly, else what is wrong."""
    for text in run.texts:
        if m := CAPTION.search(text):
            got = (int(m[1]), int(m[2]))
            if got != query:
                return f"asked {query}, shown {got}"
            (r, c), weight = ref.strongest(index, query)
            if (int(m[3]), int(m[4])) != (r, c) or abs(float(m[5]) - weight) > 1e-4:
                return f"query {query}: shown strongest {m[3]},{m[4]} {m[5]}, expected " \
                       f"{r},{c} {weight:.4f}"
            return None
        if (m := UNIFORM.search(text)) and (int(m[1]), int(m[2])) == query:
            return None
        if ref is None and text == f"Query at row {query[0]}, column {query[1]}":
            return None  # --floor: nothing to compute
    return f"query {query}: no attention caption in the answer"


async def session(url: str, seed: int, clicks: int, timeout: float, ref: Reference,
                  pause: float, done: asyncio.Queue, release: asyncio.Event,
                  headers: dict[str, str] | None = None) -> Session:
    """One client: open Inspect, click, then stay connected until ``release`` (so that the
    server's memory can be read with every session open). ``headers`` go with the websocket
    handshake (a proxy's sticky cookie, bench_cluster)."""
    signalled = asyncio.Event()
    try:
        return await _session(url, seed, clicks, timeout, ref, pause, release,
                              lambda: (signalled.set(), done.put_nowait(seed)), headers)
    finally:
        if not signalled.is_set():  # it failed before clicking all: count it as done
            done.put_nowait(seed)


async def _session(url: str, seed: int, clicks: int, timeout: float, ref: Reference,
                   pause: float, release: asyncio.Event, clicked,
                   headers: dict[str, str] | None = None) -> Session:
    out = Session()
    rng = np.random.default_rng(seed)
    async with websockets.connect(url, subprotocols=["streamlit"], max_size=None,
                                  additional_headers=headers) as ws:
        out.backend = ws.response.headers.get("X-Convattn-Backend", "")
        t0 = time.perf_counter()
        first = await _run(ws, _rerun(), timeout)
        if first is None:
            out.lost = clicks
            return out
        out.open_s = time.perf_counter() - t0
        shown = next((int(m[1]) for t in first.texts if (m := SHOWN.search(t))), None)
        row, col = first.inputs.get("Query row"), first.inputs.get("Query column")
        if shown is None or row is None or col is None:
            raise SystemExit("Inspect did not show a test image with query inputs: has the "
                             "page changed? (looked for '(#index)' and 'Query row/column').")
        fragment = first.fragments.get(row, "")
        for _ in range(clicks):
            await asyncio.sleep(pause * rng.random())
            query = (int(rng.integers(32)), int(rng.integers(32)))
            t0 = time.perf_counter()
            run = await _run(ws, _rerun(first.page_hash, {row: query[0], col: query[1]},
                                        fragment), timeout)
            if run is None:
                out.lost += 1
                continue
            out.latencies.append(time.perf_counter() - t0)
            if (problem := _check(run, query, shown, ref)) is not None:
                out.crossed.append(problem)
            # The inputs carry a version in their id once a value is set from code.
            row = run.inputs.get("Query row", row)
            col = run.inputs.get("Query column", col)
        clicked()
        await release.wait()
    return out


def _rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and its children, MiB (Linux /proc)."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total / 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(app: str = "app.py", cwd: Path = ROOT, flags: list[str] | None = None
                 ) -> tuple[subprocess.Popen, int]:
    """``streamlit run app`` headless on a free port (not waited for); ``flags`` go before
    this function's own (bench_cluster adds ``--server.address 127.0.0.1``)."""
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", app, *(flags or []), "--server.headless",
         "true", "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return server, port


def _wait_healthy(port: int, server: subprocess.Popen, limit: float = 120) -> None:
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        if server.poll() is not None:
            raise SystemExit("The Streamlit server exited before it was ready.")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"The Streamlit server was not ready within {limit:.0f} s.")


async def _all(url: str, sessions: int, clicks: int, args: argparse.Namespace, ref: Reference,
               pid: int | Callable[[], object],
               headers: Callable[[int], dict[str, str]] | None = None
               ) -> tuple[list[Session], object]:
    """Run ``sessions`` clients; returns them and the server's memory (MiB) read once every
    one of them has finished its clicks and is still connected. ``pid`` may instead be a
    function that reads it (several servers, bench_cluster); ``headers(i)`` the i-th client's
    handshake headers."""
    done: asyncio.Queue = asyncio.Queue()
    release = asyncio.Event()
    tasks = [asyncio.create_task(session(url, 1000 + i, clicks, args.timeout, ref,
                                         args.pause, done, release,
                                         headers(i) if headers else None))
             for i in range(sessions)]
    for _ in range(sessions):
        await done.get()
    # Every client has clicked (or failed); the open ones wait on ``release``.
    await asyncio.sleep(1.0)
    rss = pid() if callable(pid) else _rss_mib(pid)
    release.set()
    return await asyncio.gather(*tasks), rss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--clicks", type=int, default=10, help="per session")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before a click "
                        "counts as lost")
    parser.add_argument("--pause", type=float, default=0.5, help="a client waits up to this "
                        "many seconds (uniformly) between its clicks")
    parser.add_argument("--floor", action="store_true", help="time a seven-line app with the "
                        "same inputs in a fragment instead: Streamlit's own round trip")
    args = parser.parse_args(argv)
    if args.sessions < 1 or args.clicks < 1:
        parser.error("--sessions and --clicks must be at least 1.")

    app, cwd, ref = "app.py", ROOT, None
    if args.floor:
        cwd = Path(tempfile.mkdtemp(prefix="convattn-floor-"))
        (cwd / "app.py").write_text(FLOOR_APP)
        gc_off = ["--runner.postScriptGC", "false"]  # as this repo's .streamlit/config.toml
    else:
        ref = Reference(ROOT / "checkpoints" / "seed.pt")  # the app's default checkpoint
        gc_off = []
    server, port = start_server(app, cwd, gc_off)
    try:
        _wait_healthy(port, server)
        url = f"ws://127.0.0.1:{port}/_stcore/stream"
        # One session first, so the model and caches are loaded before memory is read.
        _, base = asyncio.run(_all(url, 1, 1, args, ref, server.pid))
        t0 = time.perf_counter()
        sessions, loaded = asyncio.run(_all(url, args.sessions, args.clicks, args, ref,
                                            server.pid))
        wall = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait(timeout=30)

    lat = np.array([x for s in sessions for x in s.latencies]) * 1000
    lost = sum(s.lost for s in sessions)
    crossed = [p for s in sessions for p in s.crossed]
    total = args.sessions * args.clicks
    print(f"{args.sessions} sessions x {args.clicks} clicks on one server, {wall:.1f} s "
          f"(load average {os.getloadavg()[0]:.1f})")
    print(f"  Inspect opened in {np.nanmedian([s.open_s for s in sessions]):.2f} s median "
          "per session")
    if len(lat):
        print(f"  click -> answer: p50 {np.percentile(lat, 50):.0f} ms, p90 "
              f"{np.percentile(lat, 90):.0f} ms, max {lat.max():.0f} ms "
              f"({len(lat)} answered of {total})")
    print(f"  lost (no answer within {args.timeout:.0f} s): {lost}; crossed or wrong: "
          f"{len(crossed)}")
    for problem in crossed[:5]:
        print(f"    {problem}")
    print(f"  server memory (resident): {base:.0f} MiB with one session open, {loaded:.0f} "
          f"MiB with {args.sessions}: {(loaded - base) / max(args.sessions - 1, 1):.1f} MiB per "
          "further session")
    return 1 if lost or crossed else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Several app servers behind nginx, sticky by browser: is every click still answered, with
its own result, and does the proxy spread the sessions?

Starts ``--servers`` (2) ``streamlit run app.py`` servers on free ports of 127.0.0.1, writes
``bench/nginx.conf.template`` filled in with them into a temporary folder and runs Debian's
nginx on it (foreground, its own prefix, another free port). Each client of
``bench.bench_sessions`` first does what a browser does: it loads the page through the proxy
and keeps the route cookie nginx sets, then opens the websocket with it and clicks queries,
checked as there against a reference computed with the library. Before that, the same load
runs against one server directly (the baseline, same flags), so the two read side by side.

Prints, for the direct server and for each backend behind the proxy: the sessions it got,
click latency (p50, p90, max), lost and crossed clicks, resident memory with one session
open and with all of them; then whether each session's plain HTTP requests (images,
uploads) reach the backend that holds its websocket.

On one machine the servers share its cores, so this measures that the spread is correct
(no click lost or crossed, each session on one backend), not a speed-up.

    python -m bench.bench_cluster --sessions 16 --clicks 10 [--servers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from bench.bench_sessions import (
    ROOT,
    Reference,
    Session,
    _all,
    _free_port,
    _rss_mib,
    _wait_healthy,
    start_server,
)

NGINX = Path("/usr/sbin/nginx")
TEMPLATE = Path(__file__).with_name("nginx.conf.template")
COOKIE = "convattn_route"
BACKEND_HEADER = "X-Convattn-Backend"
LOCAL = ["--server.address", "127.0.0.1"]  # the backends are reached through the proxy only


def nginx_conf(backends: list[int], port: int) -> str:
    """The template with one ``server`` line per backend port and the proxy's port."""
    servers = "\n".join(f"        server 127.0.0.1:{p};" for p in backends)
    return TEMPLATE.read_text().replace("@SERVERS@", servers).replace(
        "@LISTEN@", f"127.0.0.1:{port}")


def start_nginx(folder: Path, backends: list[int]) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    (folder / "nginx.conf").write_text(nginx_conf(backends, port))
    (folder / "tmp").mkdir()
    folder.chmod(0o755)  # run as root, nginx's workers are another user: let them in
    proxy = subprocess.Popen(
        [str(NGINX), "-c", str(folder / "nginx.conf"), "-p", str(folder),
         "-e", str(folder / "error.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.perf_counter() + 30
    while time.perf_counter() < deadline:
        if proxy.poll() is not None:
            log = (folder / "error.log").read_text() if (folder / "error.log").exists() else ""
            raise SystemExit(f"nginx exited ({proxy.returncode}):\n{log.strip()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return proxy, port
        except OSError:
            time.sleep(0.2)
    raise SystemExit("nginx did not answer within 30 s.")


def _get(url: str, cookie: str = "") -> tuple[str, str]:
    """GET ``url`` (with the route cookie when given): the cookie the proxy set, if any, and
    the backend that answered."""
    request = urllib.request.Request(url, headers={"Cookie": f"{COOKIE}={cookie}"}
                                     if cookie else {})
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
        set_cookie = next((c.split(";")[0].split("=", 1)[1]
                           for c in response.headers.get_all("Set-Cookie") or []
                           if c.startswith(f"{COOKIE}=")), "")
        return set_cookie, response.headers.get(BACKEND_HEADER, "")


def browser_cookies(base: str, sessions: int) -> list[str]:
    """What each browser does first: load the page through the proxy, keep its cookie."""
    cookies = [_get(base + "/")[0] for _ in range(sessions)]
    if not all(cookies) or len(set(cookies)) != sessions:
        raise SystemExit(f"The proxy did not set a distinct {COOKIE} cookie per browser.")
    return cookies


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _servers(count: int, procs: list[subprocess.Popen]) -> list[tuple[subprocess.Popen, int]]:
    """Start ``count`` backends (recorded in ``procs`` at once, for the cleanup) and wait."""
    started = []
    for _ in range(count):
        server, port = start_server(flags=LOCAL)
        procs.append(server)
        started.append((server, port))
    for server, port in started:
        _wait_healthy(port, server)
    return started


def _warm(port: int, pid: int, args: argparse.Namespace, ref: Reference) -> float:
    """One session, one click, straight to a backend: the model and caches load before the
    load runs. Returns the backend's memory (MiB) with that session open."""
    _, rss = asyncio.run(_all(f"ws://127.0.0.1:{port}/_stcore/stream", 1, 1, args, ref, pid))
    return rss


def _row(label: str, sessions: list[Session], clicks: int, rss_one: float,
         rss_all: float) -> str:
    lat = np.array([x for s in sessions for x in s.latencies]) * 1000
    p50, p90, top = (np.percentile(lat, 50), np.percentile(lat, 90), lat.max()) if len(lat) \
        else (float("nan"),) * 3
    lost = sum(s.lost for s in sessions)
    crossed = sum(len(s.crossed) for s in sessions)
    return (f"  {label:<28} {len(sessions):>8} {len(lat):>4}/{len(sessions) * clicks:<5} "
            f"{p50:>5.0f} {p90:>5.0f} {top:>6.0f} {lost:>5} {crossed:>7} {rss_one:>7.0f} "
            f"{rss_all:>7.0f}")


HEAD = (f"  {'':<28} {'sessions':>8} {'answered':>10} {'p50':>5} {'p90':>5} {'max':>6} "
        f"{'lost':>5} {'crossed':>7} {'MiB one':>7} {'MiB all':>7}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--clicks", type=int, default=10, help="per session")
    parser.add_argument("--servers", type=int, default=2, help="backends behind the proxy")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before a click "
                        "counts as lost")
    parser.add_argument("--pause", type=float, default=0.5, help="a client waits up to this "
                        "many seconds (uniformly) between its clicks")
    args = parser.parse_args(argv)
    if args.sessions < 1 or args.clicks < 1 or args.servers < 1:
        parser.error("--sessions, --clicks and --servers must be at least 1.")
    if not NGINX.exists():
        print(f"{NGINX} is not installed: run `apt-get install -y nginx` (Debian) first.")
        return 2

    # SIGTERM (and Ctrl-C) unwind through the finally below, which stops every child.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ref = Reference(ROOT / "checkpoints" / "seed.pt")  # the app's default checkpoint
    procs: list[subprocess.Popen] = []
    folder = Path(tempfile.mkdtemp(prefix="convattn-cluster-"))
    lines = [f"{args.sessions} sessions x {args.clicks} clicks; click -> answer in ms; "
             f"resident memory in MiB with one session open and with all; {os.cpu_count()} "
             "cores", HEAD]
    try:
        # The baseline: the same load on one server, directly.
        [(server, port)] = _servers(1, procs)
        one = _warm(port, server.pid, args, ref)
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        direct, loaded = asyncio.run(_all(f"ws://127.0.0.1:{port}/_stcore/stream",
                                          args.sessions, args.clicks, args, ref, server.pid))
        wall_direct = time.perf_counter() - t0
        lines.append(_row("one server, direct", direct, args.clicks, one, loaded))
        _stop(procs)
        procs.clear()

        # K servers behind nginx.
        backends = _servers(args.servers, procs)
        names = {f"127.0.0.1:{port}": (server, port) for server, port in backends}
        ones = {name: _warm(port, server.pid, args, ref)
                for name, (server, port) in names.items()}
        proxy, proxy_port = start_nginx(folder, [port for _, port in backends])
        procs.append(proxy)
        base = f"http://127.0.0.1:{proxy_port}"
        cookies = browser_cookies(base, args.sessions)
        load1 = os.getloadavg()[0]
        t0 = time.perf_counter()
        spread, alls = asyncio.run(_all(
            f"ws://127.0.0.1:{proxy_port}/_stcore/stream", args.sessions, args.clicks, args,
            ref, lambda: {name: _rss_mib(s.pid) for name, (s, _) in names.items()},
            lambda i: {"Cookie": f"{COOKIE}={cookies[i]}"}))
        wall_spread = time.perf_counter() - t0
        # Plain HTTP with the same cookie (what /media/ images and uploads use) must reach
        # the backend that holds the session's websocket.
        http = [_get(base + "/_stcore/health", c)[1] for c in cookies]
    finally:
        _stop(procs)
        shutil.rmtree(folder, ignore_errors=True)

    for name in names:
        got = [s for s in spread if s.backend == name]
        lines.append(_row(f"proxy -> {name}", got, args.clicks, ones[name], alls[name]))
    stray = [s for s in spread if s.backend not in names]
    if stray:
        lines.append(_row("proxy -> (no backend header)", stray, args.clicks, 0, 0))
    lines.append(_row(f"proxy, all {args.servers} servers", spread, args.clicks,
                      sum(ones.values()), sum(alls.values())))
    same = sum(h == s.backend for h, s in zip(http, spread, strict=True))
    lines.append(f"  HTTP requests with the session's cookie on its websocket's backend: "
                 f"{same} of {args.sessions}")
    lines.append(f"  wall: {wall_direct:.1f} s direct (load average {load0:.1f} before), "
                 f"{wall_spread:.1f} s through the proxy ({load1:.1f} before)")
    problems = [p for s in direct + spread for p in s.crossed]
    lines += [f"    {p}" for p in problems[:5]]
    print("\n".join(lines))
    lost = sum(s.lost for s in direct + spread)
    return 1 if lost or problems or stray or same != args.sessions else 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:  # the servers and nginx were stopped on the way out
        print("Interrupted: the servers and nginx are stopped.", file=sys.stderr)
        raise SystemExit(130) from None

"""Inspect at scale (issue 22, item 5): attention over 64x64 = 4,096 and 128x128 = 16,384
positions.

    python -m bench.bench_scale [--sides 64,128] [--repeats 3] [--hovers 300] [--gap 30]
                                [--baseline /tmp/convattn-base] [--threads N] [--app]
                                [--no-server] [--no-browser]

Two networks, each with one attention block at the input's full resolution (a 3x3 stem
of 16 channels, the block, global pooling, a linear head), random weights, one random
image:
- ``sdpa``: a block calling ``F.scaled_dot_product_attention`` (timm's Attention: 2 heads
  of d = 8) on the flattened feature map: a foreign network, read by
  ``convattn.readout.foreign``;
- ``own``: convattn's ``ConvAttentionModule`` (C' = C = 16, one head) on its fused
  path. (The CPU's fused kernel needs queries, keys and values of one head size; with
  C' != C torch takes its math path, which forms the (N, N) matrix inside the model's own
  forward: 2.9 GiB at 16,384 positions before convattn reads anything.)

For each, in a fresh Python process per run (so that nothing is cached and the peak
memory is its own):
- analysis: ``convattn.readout.analysis.analyse`` of the image (wall time);
- first render: what Inspect computes before its first paint of that image: the analysis,
  the lens's payload (queries and keys for the browser, the query/key space, its digest:
  ``appkit.lens.heavy_data``'s work) and the pictures of attention received and spread;
  Streamlit's own overhead is not in it;
- peak extra RSS: the process's peak resident memory during the first render (VmHWM,
  reset through /proc/self/clear_refs just before) minus its resident memory before.
Runs alternate network by network with ``--baseline`` (a checkout of the code before
issue 22, run with that checkout's own code): it analyses only convattn's own modules, and
forms the (N, N) matrix.

With ``--app``, Inspect itself (Streamlit's AppTest) on a model card of each network: a
new session opened on a new image once the app has run (the model open), its wall time and
peak extra RSS; on an image over 64x64 no attribution method runs by default.

Hover: the lens alone in headless Chromium (``tests/lenspage.py``) with the 16,384-position
payload of ``sdpa`` (and 4,096): the mouse moved to a new pixel every ``--gap`` ms; the
lens records from its mousemove handler to the requestAnimationFrame after the paint
(``bench_lens``'s measure), p50 / p95. The load average is printed with each figure:
other processes share the machine's two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter whose current folder is the checkout measured.
CHILD = textwrap.dedent('''
    import json, math, sys, time
    import numpy as np, torch
    import torch.nn.functional as F
    from torch import nn

    kind, side, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)

    class Attention(nn.Module):  # timm's vision-transformer Attention, on a feature map
        def __init__(self, dim, heads):
            super().__init__()
            self.heads, self.qkv, self.proj = heads, nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

        def forward(self, x):
            b, c, h, w = x.shape
            t = x.flatten(2).transpose(1, 2)
            q, k, v = self.qkv(t).reshape(b, h * w, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            o = F.scaled_dot_product_attention(q, k, v)
            o = self.proj(o.transpose(1, 2).reshape(b, h * w, c))
            return x + o.transpose(1, 2).reshape(b, c, h, w)

    if kind == "own":
        from convattn.nn.self_attention import ConvAttentionModule
        block = ConvAttentionModule(16, 16)
        with torch.no_grad():
            block.gamma.fill_(0.5)
    else:
        block = Attention(16, 2)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), block,
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)).eval()
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)

    from appkit import lens, pictures
    from convattn.readout import analysis
    from convattn.readout.lens import qk_space
    # A running server has paid every first-call cost (torch's kernels, the dispatch mode
    # that finds foreign attention): one analysis of an 8x8 corner pays them here.
    analysis.analyse(model, pixels[:8, :8], mean, std)

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024

    try:
        open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM)
    except OSError:
        pass
    before = status("VmRSS:")
    c0 = time.process_time()
    t0 = time.perf_counter()
    try:
        result = analysis.analyse(model, pixels, mean, std)
    except Exception as e:  # the baseline refuses foreign networks
        print(json.dumps({"error": str(e).split(". ")[0][:120]}))
        sys.exit(0)
    if not result.modules:
        print(json.dumps({"error": "its analysis finds no attention module"}))
        sys.exit(0)
    t1 = time.perf_counter()
    view = next(iter(result.modules.values()))
    space = qk_space(view.q, view.k, view.head)
    data = lens.payload(pixels, view, pinned=(side // 2, side // 2), space=space)
    digest = __import__("hashlib").blake2b(json.dumps(data, sort_keys=True).encode()).hexdigest()
    lo, hi = analysis.attention_range(view.received, view.max_weight, False, 1 / view.received.size)
    pictures.overlay(pixels, view.received, lo, hi, pictures.ATTENTION_CMAP, 0.65, 224)
    pictures.overlay(pixels, view.spread, 0.0, 1.0, pictures.SPREAD_CMAP, 0.65, 224)
    t2 = time.perf_counter()
    peak = status("VmHWM:")
    print(json.dumps({"analysis_s": t1 - t0, "render_s": t2 - t0,
                      "cpu_s": time.process_time() - c0, "threads": torch.get_num_threads(),
                      "extra_mib": (peak - before) / 2**20,
                      "payload_bytes": len(json.dumps(data)), "digest": digest[:8]}))
''')


# Inspect itself, through Streamlit's AppTest, on a model card of the same network: the
# first run opens the app (model, images, caches); the measured run is a new session on
# another image (class "cat"), so that its analysis, lens and pictures are computed anew.
APP = textwrap.dedent('''
    import json, os, sys, tempfile, time
    from pathlib import Path
    import torch
    kind, side, root = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    net = sys.argv[4].split("from appkit import")[0].replace(
        "kind, side, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])",
        f"kind, side, threads = {kind!r}, {side}, 0")
    folder = Path(tempfile.mkdtemp())
    (folder / "net.py").write_text(net + "\\n\\ndef build():\\n    return model\\n")
    ns = {}
    exec(net, ns)
    torch.save(ns["model"].state_dict(), folder / "net.pt")
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
               "ship", "truck"]
    (folder / "card.toml").write_text(
        f'factory = "net.py:build"\\nweights = "net.pt"\\nclasses = {json.dumps(classes)}\\n'
        f'image_size = {side}\\nmean = [0.5, 0.5, 0.5]\\nstd = [0.25, 0.25, 0.25]\\n')
    os.environ.update(CONVATTN_MODEL=str(folder / "card.toml"), CONVATTN_DATA="",
                      CONVATTN_CHECKPOINTS=str(folder / "none"))
    sys.path.insert(0, str(root / "tests"))
    from apprun import open_page
    at = open_page()
    assert not at.exception, [e.message for e in at.exception]

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024

    try:
        open("/proc/self/clear_refs", "w").write("5")
    except OSError:
        pass
    before = status("VmRSS:")
    t0 = time.perf_counter()
    at = open_page(class_filter="cat")
    took = time.perf_counter() - t0
    assert not at.exception, [e.message for e in at.exception]
    print(json.dumps({"render_s": took, "extra_mib": (status("VmHWM:") - before) / 2**20}))
''')


def app_render(kind: str, side: int) -> dict:
    out = subprocess.run([sys.executable, "-c", APP, kind, str(side), str(ROOT), CHILD],
                         cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                         capture_output=True, text=True, timeout=900)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode or not lines:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    return json.loads(lines[-1])


def child(checkout: Path, kind: str, side: int, threads: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(checkout))
    out = subprocess.run([sys.executable, "-c", CHILD, kind, str(side), str(threads)],
                         cwd=checkout, env=env, capture_output=True, text=True, timeout=900)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode or not lines:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1][:160]}
    return json.loads(lines[-1])


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def server(sides: list[int], repeats: int, baseline: Path | None, threads: int) -> None:
    for side in sides:
        for kind in ("sdpa", "own"):
            for checkout, label in [(ROOT, "new"), (baseline, "baseline")]:
                if checkout is None:
                    continue
                runs = []
                for _ in range(repeats):  # new and baseline alternate, network by network
                    runs.append((child(checkout, kind, side, threads), load()))
                    if "error" in runs[-1][0]:
                        break
                if "error" in runs[0][0]:
                    print(f"{side}x{side} = {side * side:,} positions, {kind}, {label}: "
                          f"{runs[0][0]['error']} ({runs[0][1]})")
                    continue
                a = sorted(r["analysis_s"] for r, _ in runs)
                f = sorted(r["render_s"] for r, _ in runs)
                m = max(r["extra_mib"] for r, _ in runs)
                cpu = sorted(r["cpu_s"] for r, _ in runs)
                print(f"{side}x{side} = {side * side:,} positions, {kind}, {label}: analysis "
                      f"median {a[len(a) // 2]:.2f} s (min {a[0]:.2f}), first render median "
                      f"{f[len(f) // 2]:.2f} s (max {f[-1]:.2f}; CPU time median "
                      f"{cpu[len(cpu) // 2]:.2f} s, {runs[0][0]['threads']} threads), peak "
                      "extra RSS "
                      f"{m:.0f} MiB, lens payload {runs[0][0]['payload_bytes'] / 2**20:.2f} MiB;"
                      f" {', '.join(x for _, x in runs)}")


def app(sides: list[int], repeats: int) -> None:
    for side in sides:
        for kind in ("sdpa", "own"):
            runs = [(app_render(kind, side), load()) for _ in range(repeats)]
            if "error" in runs[0][0]:
                print(f"Inspect (AppTest) {side}x{side}, {kind}: {runs[0][0]['error']}")
                continue
            t = sorted(r["render_s"] for r, _ in runs)
            m = max(r["extra_mib"] for r, _ in runs)
            print(f"Inspect (AppTest) {side}x{side} = {side * side:,} positions, {kind}: a new "
                  f"image's first render median {t[len(t) // 2]:.2f} s (min {t[0]:.2f}, max "
                  f"{t[-1]:.2f}), peak extra RSS {m:.0f} MiB; "
                  f"{', '.join(x for _, x in runs)}")


def hover(sides: list[int], hovers: int, gap: int) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    import torch
    import torch.nn.functional as F  # noqa: F401  (the child's network, built here too)
    from browserkit import chromium
    from lenspage import open_lens, point

    from appkit import lens
    from convattn.readout import analysis

    ns: dict = {}
    exec(CHILD.split("from appkit import")[0].replace(
        "kind, side, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])",
        "kind, side, threads = 'sdpa', 8, 0"), ns)
    model = ns["model"]
    with chromium() as browser:
        for side in sides:
            pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
            with torch.no_grad():
                view = next(iter(analysis.analyse(model, pixels, (0.5,) * 3, (0.25,) * 3)
                                 .modules.values()))
            data = lens.payload(pixels, view, pinned=(side // 2, side // 2), display=320,
                                outlines=(0.5, 0.9))
            for outlines in ((), (0.5, 0.9)):
                page, canvas = open_lens(browser, {**data, "outlines": list(outlines)})
                canvas.evaluate("c => c.__lensTimings.splice(0)")
                rng, last = random.Random(0), None
                for _ in range(hovers):
                    p = last
                    while p == last:
                        p = (rng.randrange(side), rng.randrange(side))
                    last = p
                    page.mouse.move(*point(canvas, *p, (side, side)))
                    page.wait_for_timeout(gap)
                page.wait_for_timeout(300)
                raf = [t[0] for t in canvas.evaluate("c => c.__lensTimings.slice()")]
                page.close()
                print(f"hover {side}x{side} = {side * side:,} positions (sdpa, 2 heads of "
                      f"d = 8{', outlines on' if outlines else ''}), mousemove -> frame after "
                      f"the paint: p50 {np.percentile(raf, 50):.1f} / p95 "
                      f"{np.percentile(raf, 95):.1f} / max {max(raf):.1f} ms over "
                      f"{len(raf)} hovers ({load()})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sides", default="64,128")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hovers", type=int, default=300)
    parser.add_argument("--gap", type=int, default=30, help="ms between mouse moves")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="a checkout of the code before issue 22, run side by side")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch's intra-op threads in the measured process (0: torch's "
                             "default, as the app runs)")
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--no-server", action="store_true")
    parser.add_argument("--app", action="store_true",
                        help="also time Inspect itself (AppTest) on a model card of each "
                             "network")
    args = parser.parse_args(argv)
    sides = [int(s) for s in args.sides.split(",")]
    print(f"{os.cpu_count()} CPUs; {load()}")
    if not args.no_server:
        server(sides, args.repeats, args.baseline, args.threads)
    if args.app:
        app(sides, args.repeats)
    if not args.no_browser:
        hover(sides, args.hovers, args.gap)
    return 0


if __name__ == "__main__":
    sys.exit(main())

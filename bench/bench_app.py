"""Speed of the Inspect page (app_pages/0_Inspect.py, opened by app.py), driven through
the functions the page calls.

    python -m bench.bench_app [--checkpoint checkpoints/seed.pt] [--device cpu|cuda]

Prints, for the issue's targets (CPU):
- click -> new overlay, server side (<= 30 ms): the attention fragment's work for one
  click: one attention row from the cached q/K, the overlay, the query marks, the colour
  bar and the PNG the click component sends; and the same click as an AppTest rerun;
- a rerun without attributions (<= 300 ms), as AppTest reruns of the whole page, on an
  image already seen (cached) and on a new image (one forward pass);
- Integrated Gradients, 50 steps (<= 1 s), and the other Captum methods;
- cold start to first render (<= 10 s): ``streamlit run`` started, until headless
  Chromium shows the attention panel (needs /usr/bin/chromium and playwright); then
  real clicks on the image, timed until the page shows the new query.
Medians; the load average is printed because other processes share the machine.
Streamlit parts are skipped when streamlit is not installed (e.g. on a bare GPU box).
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from convattn.cli.flags import add_config_flags, config_from_args
from convattn.explain.attribution import METHODS, AttributionConfig
from convattn.files.checkpoint import load_checkpoint
from convattn.files.shipped import sample_path
from convattn.readout import analysis

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = sample_path()


@dataclass
class BenchConfig:
    checkpoint: str = field(default="checkpoints/seed.pt", metadata={"help": "checkpoint"})
    device: str = field(default="cpu", metadata={"help": "cpu or cuda"})
    clicks: int = field(default=200, metadata={"help": "clicks to time"})
    repeats: int = field(default=5, metadata={"help": "runs per attribution method"})
    app: bool = field(default=True, metadata={"help": "time AppTest reruns and cold start"})


def median_ms(fn: Callable[[], object], repeats: int, sync: bool = False) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def bench_clicks(model, info, pixels: np.ndarray, clicks: int) -> None:
    from PIL import Image

    from appkit import pictures

    result = analysis.analyse(model, pixels, info["mean"], info["std"])
    rng = np.random.default_rng(0)
    for name, view in result.modules.items():
        points = rng.integers(0, 32, (clicks, 2))
        state = {"i": 0}

        def click(view=view, points=points, state=state) -> None:
            r, c = points[state["i"] % len(points)]
            state["i"] += 1
            query = analysis.query_view(view, (int(r), int(c)))
            image = pictures.overlay(pixels, query.row, 0.0, float(query.row.max()),
                                     pictures.ATTENTION_CMAP, 0.65, 320)
            marked = pictures.mark_query(image, query.pixel, query.cell, view.grid)
            buf = io.BytesIO()  # what streamlit_image_coordinates sends to the browser
            marked.save(buf, format="PNG", compress_level=1)
            base64.b64encode(buf.getvalue())
            bar = pictures.colorbar(0.0, float(query.row.max()), pictures.ATTENTION_CMAP, 320)
            Image.Image.tobytes(bar)

        def row_only(view=view) -> None:
            analysis.query_view(view, (5, 7))

        h, w = view.grid
        print(f"  click -> overlay, module {name} ({h}x{w}, N = {h * w}): "
              f"{median_ms(click, clicks):6.2f} ms "
              f"(of which the attention row {median_ms(row_only, clicks):.3f} ms)")
    once = median_ms(lambda: analysis.analyse(model, pixels, info["mean"], info["std"]), 10)
    print(f"  per-image analysis (once per image, cached): {once:.1f} ms")


def bench_attributions(model, info, pixels: np.ndarray, repeats: int, sync: bool) -> None:
    cfg = AttributionConfig()
    for method, label in METHODS.items():
        ms = median_ms(lambda m=method: analysis.attribution_map(
            model, pixels, info["mean"], info["std"], 3, m, cfg), repeats, sync)
        note = f" ({cfg.ig_steps} steps)" if method == "integrated_gradients" else ""
        print(f"  {label + note:28s} {ms:8.1f} ms")


def bench_apptest(checkpoint: str) -> None:
    from streamlit.testing.v1 import AppTest

    os.environ["CONVATTN_CHECKPOINT"] = checkpoint
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.session_state["methods"] = []
    at.run()
    if at.exception:
        print("  AppTest failed:", at.exception[0].message)
        return

    def timed(action: Callable[[], object], n: int) -> float:
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            action(i)
            at.run()
            times.append(time.perf_counter() - t0)
        return 1e3 * statistics.median(times)

    def number(label: str):
        return next(n for n in at.number_input if n.label.startswith(label))

    click = timed(lambda i: (number("Query row").set_value(i % 32),
                             number("Query column").set_value((7 * i) % 32)), 30)
    print(f"  click as an AppTest rerun (query inputs changed): {click:6.1f} ms")
    cached = timed(lambda i: at.slider(key="topk").set_value(3 + i % 2), 20)
    print(f"  rerun without attributions, image cached:  {cached:6.1f} ms")
    fresh = timed(lambda i: number("Image number").set_value(100 + i), 20)
    print(f"  rerun without attributions, new image:     {fresh:6.1f} ms")


def bench_cold_start(checkpoint: str) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    import browserkit

    if not browserkit.CHROMIUM.exists():
        print(f"  skipped: {browserkit.CHROMIUM} is not installed")
        return
    with tempfile.TemporaryDirectory() as tmp, browserkit.chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 2200})
        t0 = time.perf_counter()
        with browserkit.serve_app(Path(tmp), CONVATTN_CHECKPOINT=checkpoint) as url:
            page.goto(url)
            page.get_by_text("attends most to").wait_for(timeout=120_000)
            first = time.perf_counter() - t0
            page.get_by_text("Red pixels raise the score").wait_for(timeout=120_000)
            full = time.perf_counter() - t0
            page.wait_for_timeout(2000)
            image = page.locator("canvas.lens-main")  # the attention lens (bench_lens)
            clicks = []
            for r, c in [(3, 4), (20, 11), (9, 30), (28, 2), (14, 17), (5, 25)]:
                t1 = time.perf_counter()
                image.click(position={"x": 10 * c + 5, "y": 10 * r + 5})
                page.get_by_text(f"Query at row {r}, column {c} ").wait_for(timeout=30_000)
                clicks.append(time.perf_counter() - t1)
                # Let the rerun finish (the old query inputs are removed) before the next.
                while page.get_by_label("Query row").count() != 1:
                    page.wait_for_timeout(20)
                page.wait_for_timeout(500)
    print(f"  process start -> attention panel shown: {first:5.1f} s")
    print(f"  process start -> default attributions shown too: {full:5.1f} s")
    print(f"  click -> new query caption in Chromium, end to end (browser, websocket and "
          f"polling included): median {1e3 * statistics.median(clicks):.0f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_app", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(parser, BenchConfig)
    cfg = config_from_args(BenchConfig(), parser.parse_args(argv))
    warnings.simplefilter("ignore")  # Captum announces its hooks on every call
    model, info = load_checkpoint(cfg.checkpoint, cfg.device)
    pixels = np.load(SAMPLE)["images"][3]
    where = torch.cuda.get_device_name() if cfg.device == "cuda" else (
        f"CPU, {torch.get_num_threads()} threads")
    print(f"{cfg.checkpoint} ({info['arch']}) on {where}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; torch {torch.__version__}")
    print("click (target <= 30 ms on CPU):")
    try:
        bench_clicks(model, info, pixels, cfg.clicks)
    except ImportError as e:
        print(f"  overlay skipped ({e}); attention row only:")
        result = analysis.analyse(model, pixels, info["mean"], info["std"])
        for name, view in result.modules.items():
            ms = median_ms(lambda v=view: analysis.query_view(v, (5, 7)), cfg.clicks)
            print(f"  attention row, module {name}: {ms:.3f} ms")
    print("attributions for one image (Integrated Gradients target <= 1 s on CPU):")
    bench_attributions(model, info, pixels, cfg.repeats, cfg.device == "cuda")
    if cfg.app and cfg.device == "cpu":
        try:
            print("page reruns through AppTest (target <= 300 ms on CPU without attributions):")
            bench_apptest(str(Path(cfg.checkpoint).resolve()))
            print("cold start (target <= 10 s):")
            bench_cold_start(str(Path(cfg.checkpoint).resolve()))
        except ImportError as e:
            print(f"  skipped: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

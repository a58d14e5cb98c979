"""Render time of the Misclassifications, Ablation, Training and Compare pages on CPU.

    python -m bench.bench_pages [--data ../shared/data/cifar10-jpeg] [--repeat 3]

Each page runs through Streamlit's AppTest on the shipped checkpoints (the default,
seed.pt; Compare against seed-noattn.pt), opened through app.py as in a browser (the
router draws the shared sidebar, then the page runs), in one process, after Python, torch and
Streamlit are imported (a warm-up script), so the figures are the page's own work:

- first render: the page's first run in a fresh process (one per page and image set):
  models, predictions and ablation files, and the per-image work are not cached yet
  (what the first visitor waits for after ``streamlit run``);
- new session: a fresh AppTest (a new browser session) once those caches are filled;
- rerun: the same session run again (what a widget change costs at most).

Rows are given for the bundled sample and, with --data, for the full test set (read
once beforehand; its reading time is printed separately). The target is <= 2 s per
render. Medians of --repeat; the load average is printed as the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["4_Misclassifications.py", "5_Ablation.py", "10_Training.py", "1_Compare.py"]
TARGET_S = 2.0


def _session(page: str) -> AppTest:
    """A new session opened on ``page``, a file in app_pages/."""
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=600).switch_page(
        f"app_pages/{page}")


def _timed_run(at: AppTest) -> float:
    t0 = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - t0
    if at.exception:
        raise RuntimeError(f"the page raised: {at.exception[0].message}")
    return seconds


def _warm_up() -> None:
    """Import what every page imports, and run AppTest once, outside the timings."""
    import appkit.set_results  # noqa: F401  (torch, numpy, plotly, convattn)
    import convattn.explain.attribution  # noqa: F401  (captum)

    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "warm.py"
        script.write_text("import streamlit as st\nst.write('warm')\n")
        AppTest.from_file(str(script)).run()


def bench_page(page: str, repeat: int, data: str = "") -> dict[str, float]:
    """Timings of one page, in this process (call it once per fresh process)."""
    _warm_up()
    if data:  # read once per process for every page and session, timed apart
        from appkit.sources import load_test_set

        load_test_set(data)
    out = {"first render": _timed_run(_session(page))}
    sessions, reruns = [], []
    for _ in range(repeat):
        at = _session(page)
        sessions.append(_timed_run(at))
        reruns.append(_timed_run(at))
    out["new session"] = statistics.median(sessions)
    out["rerun"] = statistics.median(reruns)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="", help="the full test set, for a second set of rows")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--page", default="", help=argparse.SUPPRESS)  # one page, in a child
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("streamlit").setLevel(logging.ERROR)
    if args.page:
        print(json.dumps(bench_page(args.page, args.repeat, args.data)))
        return
    env = {k: v for k, v in os.environ.items()
           if k not in ("CONVATTN_CHECKPOINT", "CONVATTN_CHECKPOINTS")}
    import torch

    print(f"CPU, {torch.get_num_threads()} torch threads, load average "
          f"{os.getloadavg()[0]:.1f}; checkpoints/seed.pt; target <= {TARGET_S:.0f} s")
    sets = [("bundled sample", "")]
    if args.data:
        from appkit.sources import load_test_set

        t0 = time.perf_counter()
        load_test_set(args.data)
        print(f"reading the full test set (once per process, before the pages): "
              f"{time.perf_counter() - t0:.1f} s")
        sets.append(("full test set", args.data))
    print(f"{'page':<22} {'images':<15} {'first render':>12} {'new session':>12} "
          f"{'rerun':>8}")
    for label, data in sets:
        for page in PAGES:
            child = subprocess.run(
                [sys.executable, "-m", "bench.bench_pages", "--page", page,
                 "--repeat", str(args.repeat)] + (["--data", data] if data else []),
                cwd=ROOT, env=env | {"CONVATTN_DATA": data}, capture_output=True,
                text=True, check=True)
            t = json.loads(child.stdout.strip().splitlines()[-1])
            worst = max(t.values())
            print(f"{page[2:-3]:<22} {label:<15} {t['first render']:>11.2f}s "
                  f"{t['new session']:>11.2f}s {t['rerun']:>7.2f}s"
                  + ("" if worst <= TARGET_S else "  (over target)"))
    print(f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

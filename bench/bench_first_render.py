"""First render of the Attention statistics and Sanity check pages, this checkout against
another (the code before a change), side by side in one run.

    python -m bench.bench_first_render --before /tmp/convattn-base [--repeats 2]
        [--data /work/shared/data/cifar10-jpeg] [--pages Attention_statistics,Sanity_check]
        [--image 0]

Each measurement is a fresh process: AppTest opens Inspect (imports, the model and the
data folder loaded, as a browser's first page does), then switches to the page, timed to
the end of its run with its caches cold. The Sanity check runs on ``--data`` (test image
``--image`` of the folder; #0 of the CIFAR-10 test set is the shipped checks' example, #1
is not); if
the page asks before starting live work, the click and the run after it are timed too
("until the maps"). Attention statistics runs on the bundled sample at its default size.
Sides alternate; the load average is printed with every figure (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = {"Attention_statistics": "6_Attention_statistics.py",
         "Sanity_check": "9_Sanity_check.py"}
BUTTONS = ("sanity_go_example", "stats_go")  # live work that waits for a click


def child(repo: Path, page: str, image: int) -> dict:
    import warnings

    from streamlit.testing.v1 import AppTest

    warnings.filterwarnings("ignore")
    at = AppTest.from_file(str(repo / "app.py"), default_timeout=900)
    at.session_state["picked_image"] = image  # appkit.sidebar.test_image.PICK
    at.run()
    t0, c0 = time.perf_counter(), time.process_time()
    at.switch_page(f"app_pages/{page}").run()
    first, cpu = time.perf_counter() - t0, time.process_time() - c0
    if at.exception:
        raise RuntimeError(at.exception[0].message)
    until, asked = first, False
    for key in BUTTONS:
        found = [b for b in at.button if b.key == key]
        if found:
            asked = True
            t1 = time.perf_counter()
            found[0].click().run()
            until += time.perf_counter() - t1
    return {"first": first, "cpu": cpu, "until": until, "asked": asked,
            "load": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", required=True, help="the checkout to compare with")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--data", default="/work/shared/data/cifar10-jpeg",
                        help="the data folder of the Sanity check")
    parser.add_argument("--pages", default=",".join(PAGES))
    parser.add_argument("--image", type=int, default=0,
                        help="the test image shown (its number in the data folder)")
    parser.add_argument("--sides", default="before,now", help="now alone for a quick look")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        repo, page = args.child.split("::")
        print(json.dumps(child(Path(repo), page, args.image)))
        return 0
    from bench.sides import checkouts, run_child  # the parent only: children run as files

    try:
        sides = checkouts(args.before, args.sides, "app.py")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"first render, fresh process each; before = {sides.get('before', '-')}, now = {ROOT}; "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for label in args.pages.split(","):
        page = PAGES[label]
        data = args.data if label == "Sanity_check" else ""
        for _ in range(args.repeats):
            for side, repo in sides.items():
                env = dict(os.environ, PYTHONPATH=str(repo), CONVATTN_DATA=data,
                           CONVATTN_CHECKPOINT=str(ROOT / "checkpoints" / "seed.pt"))
                try:
                    t = run_child([sys.executable, str(Path(__file__).resolve()),
                                   "--before", args.before, "--image", str(args.image),
                                   "--child", f"{repo}::{page}"], repo, env, 1800)
                except RuntimeError as e:
                    print(f"  {label} {side}: failed: {e}")
                    continue
                more = (f", asks first; until the maps {t['until']:6.2f} s" if t["asked"]
                        else "")
                print(f"  {label:21s} {side:6s} first render {t['first']:6.2f} s "
                      f"({t['cpu']:6.2f} s CPU){more}; load {t['load']:.2f}", flush=True)
    print(f"load average at the end {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

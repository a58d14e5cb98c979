"""Speed of the Learn, Attention statistics, Faithfulness and Sanity check pages.

    python -m bench.bench_teaching_pages [--checkpoint checkpoints/seed.pt] [--threads 0]
                                         [--browser | --no-browser]

Prints, for the issue's target (each page's first render <= 5 s on CPU at its default
sample size, later renders cached):
- each page through AppTest (opened through app.py, as in a browser) in a fresh process
  (cold caches, model loaded by the shared sidebar):
  the first run, a rerun in the same session, and a new session (shared caches);
- each page in headless Chromium served by ``streamlit run`` (needs /usr/bin/chromium and
  playwright): opened in turn on a fresh server until its last section is shown, then
  opened again (cached);
- the library work behind them: attention statistics per image, deletion/insertion per
  image and ranking, the randomisation check, one step-through and one what-if rerun.
The load average is printed because other processes share the machine; ``--threads``
sets torch's intra-op threads (0: torch's default).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from convattn.cli.flags import add_config_flags, config_from_args
from convattn.files.shipped import sample_path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = sample_path()
# page file, url path, text shown once the page has run to its end
PAGES = [
    ("2_Learn.py", "Learn", "largest difference from the network's forward pass"),
    ("6_Attention_statistics.py", "Attention_statistics", "Row similarity: mean cosine"),
    ("8_Faithfulness.py", "Faithfulness", "Rank correlation (Spearman)"),
    ("9_Sanity_check.py", "Sanity_check", "The layers above a module"),
]


@dataclass
class BenchConfig:
    checkpoint: str = field(default="checkpoints/seed.pt", metadata={"help": "checkpoint"})
    threads: int = field(default=0, metadata={"help": "torch threads, 0 = torch's default"})
    browser: bool = field(default=True, metadata={"help": "also time the pages in Chromium"})
    library: bool = field(default=True, metadata={"help": "also time the library work"})
    pages: str = field(default="", metadata={
        "help": "only these pages, comma-separated url paths (e.g. Faithfulness,Sanity_check)"})
    page: str = field(default="", metadata={"help": "internal: time one page (child process)"})


def _apptest_child(page: str) -> dict[str, float]:
    """Runs in a fresh process: times one page through AppTest."""
    import warnings

    from streamlit.testing.v1 import AppTest

    warnings.filterwarnings("ignore")

    def session() -> AppTest:
        return AppTest.from_file(str(ROOT / "app.py"), default_timeout=600).switch_page(
            f"app_pages/{page}")

    def run(at: AppTest) -> float:
        t0 = time.perf_counter()
        at.run()
        if at.exception:
            raise RuntimeError(at.exception[0].message)
        return time.perf_counter() - t0

    at = session()
    first = run(at)
    again = statistics.median(run(at) for _ in range(3))
    other = run(session())
    return {"first": first, "rerun": again, "new_session": other}


def _pages(cfg: BenchConfig) -> list[tuple[str, str, str]]:
    wanted = {p.strip() for p in cfg.pages.split(",") if p.strip()}
    return [p for p in PAGES if not wanted or p[1] in wanted]


def bench_apptest(cfg: BenchConfig) -> None:
    env = dict(os.environ, CONVATTN_CHECKPOINT=str(Path(cfg.checkpoint).resolve()),
               CONVATTN_DATA="", PYTHONPATH=str(ROOT))
    for page, _, _ in _pages(cfg):
        out = subprocess.run(
            [sys.executable, "-m", "bench.bench_teaching_pages", "--page", page,
             "--threads", str(cfg.threads), "--checkpoint", cfg.checkpoint],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        lines = [x for x in out.stdout.splitlines() if x.startswith("{")]
        if out.returncode or not lines:
            print(f"  {page}: failed: {(out.stderr or out.stdout).strip()[-300:]}")
            continue
        t = json.loads(lines[-1])
        print(f"  {page:28s} first run {t['first']:5.2f} s · rerun {1e3 * t['rerun']:6.0f} ms"
              f" · new session {1e3 * t['new_session']:6.0f} ms")


def bench_browser(cfg: BenchConfig) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    import browserkit

    if not browserkit.CHROMIUM.exists():
        print(f"  skipped: {browserkit.CHROMIUM} is not installed")
        return
    env = {"CONVATTN_CHECKPOINT": str(Path(cfg.checkpoint).resolve()), "CONVATTN_DATA": ""}
    if cfg.threads:
        env["OMP_NUM_THREADS"] = str(cfg.threads)
    with tempfile.TemporaryDirectory() as tmp, browserkit.chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 3000})
        t0 = time.perf_counter()
        with browserkit.serve_app(Path(tmp), **env) as url:
            page.goto(url)
            page.get_by_text("attends most to").wait_for(timeout=120_000)
            print(f"  server start -> Inspect page shown (models and torch loaded): "
                  f"{time.perf_counter() - t0:5.1f} s")
            nav = page.locator('[data-testid="stSidebarNavLink"]')
            for label in ("first visit (cold caches)", "second visit (cached)"):
                for _, path, ready in _pages(cfg):
                    page.wait_for_timeout(1000)
                    t1 = time.perf_counter()
                    # As a user does: the sidebar link, no reload of the web app.
                    nav.filter(has_text=path.replace("_", " ")).click()
                    page.get_by_text(ready).first.wait_for(timeout=300_000)
                    print(f"  {path:22s} {label}: {time.perf_counter() - t1:5.2f} s")


def _median_s(fn, repeats: int = 3) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_library(cfg: BenchConfig) -> None:
    from convattn.explain import faithfulness, sanity
    from convattn.files.checkpoint import load_checkpoint
    from convattn.readout import stats, stepthrough
    from convattn.readout.attention import attention_modules, module_inputs

    model, info = load_checkpoint(cfg.checkpoint)
    with np.load(SAMPLE) as f:
        images, labels = f["images"], f["labels"]
    idx = stats.balanced_order(labels)[:100]
    x = torch.from_numpy(images[idx]).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(info["mean"]).view(1, 3, 1, 1)) / torch.tensor(info["std"]).view(
        1, 3, 1, 1)
    y = torch.from_numpy(labels[idx])
    t = _median_s(lambda: stats.attention_statistics(model, x[:25], y[:25]), 2)
    print(f"  attention statistics: {1e3 * t / 25:6.1f} ms per image (batches of 25)")
    fc = faithfulness.FaithfulnessConfig()
    t = _median_s(lambda: faithfulness.evaluate(model, x[:8], y[:8], ["saliency", "gradcam"],
                                                cfg=fc), 2)
    print(f"  faithfulness, defaults (8 images, saliency + Grad-CAM + attention + random, "
          f"{fc.steps} steps): {t:5.2f} s")
    for method in ("integrated_gradients", "occlusion"):
        t = _median_s(lambda m=method: faithfulness.evaluate(model, x[:4], y[:4], [m], cfg=fc),
                      1)
        print(f"    with {method} instead (4 images): {t:5.2f} s")
    t = _median_s(lambda: sanity.cascading_randomisation(
        model, x[:1], ["saliency", "guided_backprop", "gradcam"],
        {n: 0 for n in attention_modules(model)}), 2)
    steps = len(sanity.randomisation_steps(model))
    print(f"  sanity check, defaults ({steps} steps, 3 methods + attention rows): {t:5.2f} s")
    named = attention_modules(model)
    if named:
        name, module = next(iter(named.items()))
        inputs = module_inputs(model, x[:1])[name]
        t = _median_s(lambda: stepthrough.step_through(module, inputs, 5), 20)
        print(f"  step-through of one query ({name}): {1e3 * t:6.2f} ms")
        t = _median_s(lambda: stepthrough.predict_with_gamma(model, x[:1], {name: 0.0}), 10)
        print(f"  what-if gamma rerun on a deep copy: {1e3 * t:6.1f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_config_flags(parser, BenchConfig)
    cfg = config_from_args(BenchConfig(), parser.parse_args(argv))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.page:
        print(json.dumps(_apptest_child(cfg.page)))
        return 0
    print(f"checkpoint {cfg.checkpoint} · torch {torch.__version__} · "
          f"{torch.get_num_threads()} threads · load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("AppTest, fresh process per page (default sample sizes):")
    bench_apptest(cfg)
    if cfg.browser:
        print("Headless Chromium, fresh `streamlit run` server:")
        bench_browser(cfg)
    if cfg.library:
        print("Library (CPU):")
        bench_library(cfg)
    print(f"load average at the end {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

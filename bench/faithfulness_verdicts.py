"""Do the fast live Faithfulness runs reach the shipped checks files' verdicts?

    python -m bench.faithfulness_verdicts [--checkpoints seed,seed-noattn,...] [--replay]

For each checkpoint: the file's verdicts against the random order (all its images, at
5 %), then the live runner (``faithfulness_batched.run`` with ``sequential.Plan``, the
channels_last copy) recomputed on the same images with the file's settings: where it
stopped, its verdicts, whether they are the file's, and the largest difference between
its curves and the file's on the images it tested. ``--replay`` only replays the plan on
the file's own curves (seconds, no model run).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from convattn.explain import faithfulness_batched as faithrun
from convattn.explain.checks import checks_path, load_checks
from convattn.explain.sequential import Plan, stop_at, subset
from convattn.explain.verdict import against_random
from convattn.files.checkpoint import load_checkpoint
from convattn.files.shipped import load_sample
from convattn.jobs.checks import attribution_config, faithfulness_config
from convattn.readout.stats import balanced_order

ROOT = Path(__file__).resolve().parents[1]


def verdicts(result, level: float) -> dict[str, str]:
    return {f"{r['ranking']}/{t}": r[t]["verdict"]
            for r in against_random(result, alpha=level) for t in ("deletion", "insertion")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    names = sorted(p.name.removesuffix(".checks.npz")
                   for p in (ROOT / "checkpoints").glob("*.checks.npz"))
    parser.add_argument("--checkpoints", default=",".join(names))
    parser.add_argument("--replay", action="store_true")
    args = parser.parse_args(argv)
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    sample = load_sample()
    for name in args.checkpoints.split(","):
        path = ROOT / "checkpoints" / f"{name}.pt"
        checks = load_checks(checks_path(path))
        stored = checks.faithfulness
        plan = Plan(len(stored))
        want = verdicts(stored, 0.05)
        n = stop_at(plan, stored)
        replay = verdicts(subset(stored, n), plan.level(n))
        print(f"{name}: the file, {len(stored)} images; the plan on its curves stops at "
              f"{n}, verdicts {'the same' if replay == want else 'DIFFERENT'}", flush=True)
        if args.replay:
            continue
        model, info = load_checkpoint(path)
        idx = balanced_order(sample.labels)[:len(stored)]
        assert [sample.names[i] for i in idx] == checks.faith_names, "other images"
        x = info.normalise(sample.images[idx])
        t0 = time.perf_counter()
        got = faithrun.run(model, x, torch.from_numpy(sample.labels[idx]),
                           list(checks.settings.methods), idx,
                           faithfulness_config(checks.settings),
                           attribution_config(checks.settings), chunk=8, plan=plan)
        seconds = time.perf_counter() - t0
        live = verdicts(got, plan.level(len(got)))
        diff = max(float(np.abs(c.deletion - stored.curves[k].deletion[:len(got)]).max())
                   for k, c in got.curves.items())
        print(f"  live: {seconds:.1f} s, stopped at {len(got)} images, verdicts "
              f"{'the same as the file' if live == want else 'DIFFERENT: ' + str(live)}; "
              f"curves within {diff:.1e} of the file's (stored in fp32); load "
              f"{os.getloadavg()[0]:.2f}", flush=True)
        for k in want:
            print(f"    {k:45s} file {want[k]:9s} live {live.get(k, '-')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

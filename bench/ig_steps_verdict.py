"""Does Integrated Gradients with 16 steps (the checks' setting) reach the same verdict
as with 50 (the app's default elsewhere)?

    python -m bench.ig_steps_verdict [--checkpoint checkpoints/seed.pt] [--images 64]

Runs deletion and insertion for IG at both step counts and the random order on the first
``--images`` images of the bundled sample's balanced order, and prints each one's mean
AUCs, its verdict against the random order and the rank correlation of the two maps.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

from convattn.explain.attribution import AttributionConfig
from convattn.explain.faithfulness import (
    Curves,
    FaithfulnessConfig,
    FaithfulnessResult,
    rank_correlation,
)
from convattn.explain.faithfulness_batched import run
from convattn.explain.verdict import RANDOM, against_random
from convattn.files.checkpoint import load_checkpoint
from convattn.files.shipped import sample_path
from convattn.readout.stats import balanced_order


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="checkpoints/seed.pt")
    parser.add_argument("--images", type=int, default=64)
    args = parser.parse_args(argv)
    model, info = load_checkpoint(args.checkpoint)
    with np.load(sample_path()) as f:
        images, labels = f["images"], f["labels"]
    idx = balanced_order(labels)[:args.images]
    x, y = info.normalise(images[idx]), torch.from_numpy(labels[idx])
    print(f"{args.checkpoint}, {len(idx)} images, load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    got = {}
    for steps in (16, 50):
        t0 = time.perf_counter()
        got[steps] = run(model, x, y, ["integrated_gradients"], idx, FaithfulnessConfig(),
                         AttributionConfig(ig_steps=steps), attention=False,
                         random=steps == 16)
        print(f"  IG {steps} steps: {time.perf_counter() - t0:.1f} s")
    rand = got[16].curves[RANDOM]
    curves: dict[str, Curves] = {RANDOM: rand}
    for steps, r in got.items():
        curves[f"IG {steps} steps"] = r.curves["integrated_gradients"]
    both = FaithfulnessResult(idx, y.numpy(), got[16].predicted, {}, curves, {})
    for row in against_random(both):
        c = curves[row["ranking"]]
        print(f"  {row['ranking']}: deletion AUC {c.deletion_auc.mean():.3f} "
              f"({row['deletion']['verdict']}, {row['deletion']['margin']:+.3f} ± "
              f"{row['deletion']['half_width']:.3f}), insertion AUC "
              f"{c.insertion_auc.mean():.3f} ({row['insertion']['verdict']}, "
              f"{row['insertion']['margin']:+.3f} ± {row['insertion']['half_width']:.3f})")
    rho = rank_correlation(got[16].maps["integrated_gradients"],
                           got[50].maps["integrated_gradients"])
    print(f"  rank correlation of the 16- and 50-step maps: median {np.median(rho):.3f}, "
          f"min {rho.min():.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Calibration of each shipped model on the test split, before and after temperature scaling.

    python bench/bench_calibration.py [PREDICTIONS.npz ...] [--seed 0]

For each predictions file (default: checkpoints/*.predictions.npz): expected calibration
error (15 equal-width bins) and mean NLL of the probabilities as they are, and after
temperature scaling with two-fold cross-fitting (each half calibrated with the T fitted on
the other half; both Ts printed). T < 1 means the model was under-confident.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from convattn.files.predictions import load_predictions
from convattn.trust.calibration import (
    cross_fit_temperature,
    expected_calibration_error,
    logits_from_probs,
    nll,
)

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("predictions", nargs="*", type=Path)
    p.add_argument("--seed", type=int, default=0, help="seed of the random two-fold split")
    args = p.parse_args()
    files = args.predictions or sorted(CHECKPOINTS.glob("*.predictions.npz"))
    print(f"{'predictions':34s} {'images':>6s} {'ECE before':>10s} {'ECE after':>10s} "
          f"{'NLL before':>10s} {'NLL after':>10s}  T (fold 0, fold 1)")
    for path in files:
        pred = load_predictions(path)
        labels, probs = pred["labels"], pred["probs"]
        calibrated, temps = cross_fit_temperature(labels, probs, seed=args.seed)
        print(f"{path.name:34s} {len(labels):6d} "
              f"{100 * expected_calibration_error(labels, probs):9.2f}% "
              f"{100 * expected_calibration_error(labels, calibrated):9.2f}% "
              f"{nll(labels, logits_from_probs(probs)):10.4f} "
              f"{nll(labels, logits_from_probs(calibrated)):10.4f}  "
              f"{temps[0]:.3f}, {temps[1]:.3f}")


if __name__ == "__main__":
    main()

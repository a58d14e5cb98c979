"""How well each shipped model's test predictions find the known CIFAR-10 label errors.

    python bench/bench_label_issues.py [PREDICTIONS.npz ...] [--method self_confidence]

For each predictions file (default: checkpoints/*.predictions.npz) and each of cleanlab's
label-quality methods (or only ``--method``): how many of the 54 validated label errors
(convattn.trust.label_errors) land in the top 100 and top 300 of the ranking
(convattn.trust.label_issues), and how many images confident learning flags (the flagged set
does not depend on the method). For scale: cleanlab on the paper's cross-validated
probabilities puts 24 of the 54 in its top 100.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from convattn.files.predictions import load_predictions
from convattn.trust.label_errors import known_label_errors
from convattn.trust.label_issues import METHODS, rank_label_issues

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("predictions", nargs="*", type=Path)
    p.add_argument("--method", choices=METHODS, help="only this method (default: all)")
    args = p.parse_args()
    files = args.predictions or sorted(CHECKPOINTS.glob("*.predictions.npz"))
    validated = {e["name"] for e in known_label_errors() if e["validated"]}
    print(f"{'predictions':34s} {'method':28s} {'top100':>7s} {'top300':>7s} "
          f"{'flagged':>8s} {'of 54 flagged':>14s} {'seconds':>8s}")
    for path in files:
        pred = load_predictions(path)
        is_error = np.isin(pred["names"], list(validated))
        for method in [args.method] if args.method else METHODS:
            t0 = time.perf_counter()
            issues = rank_label_issues(pred["labels"], pred["probs"], method)
            seconds = time.perf_counter() - t0
            print(f"{path.name:34s} {method:28s} {is_error[issues.top(100)].sum():4d}/"
                  f"{is_error.sum()} {is_error[issues.top(300)].sum():4d}/{is_error.sum()} "
                  f"{issues.flagged.sum():8d} {(issues.flagged & is_error).sum():11d}/"
                  f"{is_error.sum()} {seconds:8.2f}")


if __name__ == "__main__":
    main()

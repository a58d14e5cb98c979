"""The multi-seed table of docs/results.md, recomputed from the zoo's results file.

    python bench/zoo_table.py [checkpoints/zoo-results.json]

Prints, per architecture, final and last-10-epoch test accuracy as mean ± std over the
training runs (the same convattn.files.history functions the Training page uses), and the
difference of each attention network from its control with its standard error.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from convattn.files import history

ROOT = Path(__file__).resolve().parents[1]


def _pm(mean: float, std: float) -> str:
    return f"{mean:.2f}" if math.isnan(std) else f"{mean:.2f} ± {std:.2f}"  # one run: no std


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else ROOT / "checkpoints" / "zoo-results.json"
    try:
        runs = history.load_runs(path)
    except history.HistoryError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{'architecture':14s} {'runs':>4s} {'final %':>15s} {'last 10 epochs %':>17s}  device")
    for r in history.summary_table(runs):
        print(f"{r['arch']:14s} {r['runs']:4d} {_pm(r['final_mean'], r['final_std']):>15s} "
              f"{_pm(r['last_mean'], r['last_std']):>17s}  {r['device']}")
    groups = history.by_arch(runs)
    for a, b in history.COMPARISONS:
        if a in groups and b in groups and len(groups[a]) > 1 and len(groups[b]) > 1:
            mean, se = history.difference([r["test_accuracy"] for r in groups[a]],
                                          [r["test_accuracy"] for r in groups[b]])
            print(f"{a} - {b}: {mean:+.2f} ± {se:.2f} points (final epoch, ± standard error)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

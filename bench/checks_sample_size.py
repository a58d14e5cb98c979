"""How many images does the faithfulness verdict need? Read from the shipped checks files.

    python -m bench.checks_sample_size [checkpoints/*.checks.npz ...]

For each file and ranking: the verdict against the random order on the first n images
of the balanced order (n = 8, 16, 32, 64, 100, all) and, from all the images, about how
many the margin needs to clear the bar (``needed``). Nothing is recomputed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from convattn.explain.checks import load_checks
from convattn.explain.verdict import against_random

SIZES = (8, 16, 32, 64, 100)
SHORT = {"better": "+", "worse": "-", "undecided": "?"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    paths = argv if argv else sorted(str(p) for p in Path("checkpoints").glob("*.checks.npz"))
    for path in paths:
        result = load_checks(path).faithfulness
        sizes = [n for n in SIZES if n < len(result)] + [len(result)]
        print(f"{Path(path).name}: verdict per n ({', '.join(map(str, sizes))}); "
              "+ better than random, - worse, ? undecided")
        by_n = {n: {r["ranking"]: r for r in against_random(result, np.arange(len(result)) < n)}
                for n in sizes}
        for name in by_n[sizes[-1]]:
            parts = []
            for test in ("deletion", "insertion"):
                marks = "".join(SHORT[by_n[n][name][test]["verdict"]] for n in sizes)
                full = by_n[sizes[-1]][name][test]
                parts.append(f"{test} {marks} (margin {full['margin']:+.3f} ± "
                             f"{full['half_width']:.3f}, needs ~{full['needed']:.0f})")
            print(f"  {name:34s} " + "; ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())

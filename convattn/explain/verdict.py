"""Does a ranking beat the random order, or another ranking, beyond noise? The verdicts
of the Faithfulness page and of ``python -m convattn.checks``.

Areas under deletion and insertion curves are compared image by image (paired); the bar
is Student's t, Bonferroni-corrected for every verdict read together, so a table of
verdicts holds at once at 95 %. Student's t quantile is computed here (no scipy import,
which costs a second on the page's first run).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from convattn.explain.faithfulness import FaithfulnessResult

RANDOM = "random order"  # the ranking name of the random order


def _t_two_sided(t: float, df: int) -> float:
    """P(|T| < t) for Student's t with integer ``df`` (Abramowitz and Stegun 26.7.3-4)."""
    theta = math.atan(t / math.sqrt(df))
    c2, term, total = math.cos(theta) ** 2, 1.0, 1.0
    if df % 2:  # odd: (2/pi)(theta + sin cos (1 + 2/3 cos^2 + ...))
        for k in range(1, (df - 1) // 2):
            term *= c2 * (2 * k) / (2 * k + 1)
            total += term
        return 2 / math.pi * (theta + (math.sin(theta) * math.cos(theta) * total
                                       if df > 1 else 0.0))
    for k in range(1, df // 2):  # even: sin (1 + 1/2 cos^2 + 1.3/2.4 cos^4 + ...)
        term *= c2 * (2 * k - 1) / (2 * k)
        total += term
    return math.sin(theta) * total


def t_quantile(p: float, df: int) -> float:
    """Student's t quantile for p in (0.5, 1): bisection on the exact distribution for
    fewer than 30 degrees of freedom, the Cornish-Fisher expansion (A&S 26.7.5) above."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf(p)
    if df >= 30:
        g = [(z**3 + z) / 4, (5 * z**5 + 16 * z**3 + 3 * z) / 96,
             (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384,
             (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160]
        return z + sum(gi / df ** (i + 1) for i, gi in enumerate(g))
    lo, hi = 0.0, 1.0
    while _t_two_sided(hi, df) < 2 * p - 1:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_two_sided(mid, df) < 2 * p - 1 else (lo, mid)
    return (lo + hi) / 2


def critical_value(images: int, tests: int, alpha: float = 0.05) -> float:
    """How many standard errors a mean difference over ``images`` paired images must
    clear to count at level ``alpha`` when ``tests`` such tests are read together:
    Student's t with images - 1 degrees of freedom (small samples need more than 2),
    two-sided, Bonferroni-corrected. Infinite below two images."""
    if images < 2:
        return float("inf")
    return t_quantile(1 - alpha / (2 * max(tests, 1)), images - 1)


def against_random(result: FaithfulnessResult, mask: np.ndarray | None = None,
                   alpha: float = 0.05) -> list[dict]:
    """Per ranking and per test: does it beat the random order beyond noise on the images
    in ``mask``?

    For deletion the margin is the random order's AUC minus the ranking's, for insertion
    the ranking's minus the random order's, image by image (paired), so a positive margin
    is better on both. The bar is ``critical_value`` standard errors: Student's t,
    corrected for every ranking and test read together (2 per ranking), so that all the
    verdicts of a table hold at once at level ``alpha``. Each row holds ``ranking``,
    ``images`` and, for "deletion" and "insertion", a dict of ``margin`` (mean),
    ``stderr`` (its standard error), ``half_width`` (critical value x stderr),
    ``verdict`` ("better" or "worse" beyond the bar, else "undecided") and ``needed``:
    about how many images make this margin clear the bar, given the spread seen
    (inf for a zero margin).
    """
    return paired(result, RANDOM, [n for n in result.curves if n != RANDOM], mask, alpha)


def paired(result: FaithfulnessResult, reference: str, names: list[str],
           mask: np.ndarray | None = None, alpha: float = 0.05, tests: int | None = None
           ) -> list[dict]:
    """``against_random`` against any ``reference`` ranking: each of ``names`` compared
    image by image with it; ``tests`` (default 2 per name) is how many tests the
    correction counts."""
    mask = np.ones(len(result), dtype=bool) if mask is None else np.asarray(mask)
    ref = result.curves.get(reference)
    if ref is None or not mask.any():
        return []
    images = int(mask.sum())
    tests = 2 * len(names) if tests is None else tests
    crit = critical_value(images, tests, alpha)
    large = critical_value(10**6, tests, alpha)
    rows = []
    for name in names:
        c = result.curves[name]
        row: dict = {"ranking": name, "reference": reference, "images": images}
        for test, diff in (("deletion", ref.deletion_auc[mask] - c.deletion_auc[mask]),
                           ("insertion", c.insertion_auc[mask] - ref.insertion_auc[mask])):
            margin = float(diff.mean())
            sd = float(diff.std(ddof=1)) if diff.size > 1 else float("inf")
            stderr = sd / np.sqrt(diff.size)
            half = crit * stderr
            verdict = ("better" if margin > half else
                       "worse" if margin < -half else "undecided")
            needed = (float(np.ceil((large * sd / abs(margin)) ** 2))
                      if margin != 0 and np.isfinite(sd) else float("inf"))
            row[test] = {"margin": margin, "stderr": stderr, "half_width": half,
                         "verdict": verdict, "needed": needed}
        rows.append(row)
    return rows

"""Stop testing images as soon as every verdict is settled: a group-sequential plan for
the verdicts of ``convattn.explain.verdict``.

Asked for n images, a run looks at its verdicts after ``first``, 2 x ``first``,
4 x ``first``... images and after all n (the *looks*). At an interim look every verdict
against the random order is read at a strict level, ``interim / (looks - 1)``; if none is
undecided the run stops there. At the last look the level is ``alpha - interim``. Each
look is ``verdict.paired``'s Student's t, Bonferroni-corrected for the tests it reads, so
by the union bound over looks and tests:

    P(some verdict says "better" or "worse" where the truth is a tie or the opposite)
        <= sum of the looks' levels = ``alpha``,

the same error rate as one test of all n images at ``alpha`` (Haybittle and Peto's
design: strict early looks, nearly the whole level kept for the last one). A run that
stops early has settled every verdict at the strict bar; one that runs to the end reads
its verdicts at ``alpha - interim`` (0.045 for the defaults, a bar about 1% higher than
0.05's).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convattn.explain.faithfulness import FaithfulnessResult
from convattn.explain.verdict import against_random

ALPHA = 0.05
INTERIM = 0.005  # the level all interim looks share
FIRST = 32  # images at the first look: the page's cached chunk


@dataclass(frozen=True)
class Plan:
    """When to look and at which level, for a run of ``images`` images."""

    images: int
    first: int = FIRST
    alpha: float = ALPHA
    interim: float = INTERIM

    def __post_init__(self) -> None:
        if not 0 < self.interim < self.alpha < 1:
            raise ValueError("need 0 < interim < alpha < 1")
        if self.first < 2:
            raise ValueError("the first look needs at least 2 images")

    @property
    def looks(self) -> list[int]:
        """Images tested at each look: ``first`` doubling while below ``images``, then
        ``images``."""
        out, n = [], self.first
        while n < self.images:
            out.append(n)
            n *= 2
        return [*out, self.images]

    def level(self, n: int) -> float:
        """The level the verdicts are read at after ``n`` images: the interim level at an
        interim look, ``alpha - interim`` at the last (and ``alpha`` with no interim look,
        where nothing was spent)."""
        looks = self.looks
        if len(looks) == 1:
            return self.alpha
        if n >= self.images:
            return self.alpha - self.interim
        if n not in looks:
            raise ValueError(f"{n} images is not a look of this plan ({looks})")
        return self.interim / (len(looks) - 1)


def settled(result: FaithfulnessResult, level: float) -> bool:
    """Whether every verdict against the random order (both tests of every ranking) is
    "better" or "worse" at ``level``. Nothing to decide (no random order, or nothing but
    it) counts as settled."""
    rows = against_random(result, alpha=level)
    return all(r[t]["verdict"] != "undecided" for r in rows for t in ("deletion", "insertion"))


def stop_at(plan: Plan, result: FaithfulnessResult) -> int:
    """Where ``plan`` stops on ``result``'s images in order (the first look at which every
    verdict is settled, else all of them): what a run under the plan would have tested."""
    for n in plan.looks:
        if n >= len(result):
            return len(result)
        part = subset(result, n)
        if settled(part, plan.level(n)):
            return n
    return len(result)


def subset(result: FaithfulnessResult, n: int) -> FaithfulnessResult:
    """The first ``n`` images of ``result``."""
    from convattn.explain.faithfulness import Curves

    return FaithfulnessResult(
        indices=result.indices[:n], labels=result.labels[:n],
        predicted=result.predicted[:n], maps={k: v[:n] for k, v in result.maps.items()},
        curves={k: Curves(c.fractions, c.deletion[:n], c.insertion[:n])
                for k, c in result.curves.items()},
        agreement={k: {s: np.asarray(v)[:n] for s, v in d.items()}
                   for k, d in result.agreement.items()})

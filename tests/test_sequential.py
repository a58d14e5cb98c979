"""The sequential stop of the faithfulness verdicts: its looks and levels, its error rate
under the null, the same verdicts as the full run where the answer is known, and on the
shipped checks files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from convattn.explain.faithfulness import Curves, FaithfulnessConfig, FaithfulnessResult
from convattn.explain.sequential import Plan, settled, stop_at, subset
from convattn.explain.verdict import RANDOM, against_random

ROOT = Path(__file__).resolve().parents[1]


def _result(deletion: dict[str, np.ndarray], insertion: dict[str, np.ndarray]
            ) -> FaithfulnessResult:
    """Curves of one step whose AUC per image is the given value (both points equal)."""
    n = len(next(iter(deletion.values())))
    curves = {k: Curves(np.array([0.0, 1.0]), np.repeat(np.asarray(deletion[k])[:, None], 2, 1),
                        np.repeat(np.asarray(insertion[k])[:, None], 2, 1))
              for k in deletion}
    return FaithfulnessResult(np.arange(n), np.zeros(n, int), np.zeros(n, int), {}, curves, {})


def _verdicts(result: FaithfulnessResult, level: float) -> dict[tuple[str, str], str]:
    return {(r["ranking"], t): r[t]["verdict"] for r in against_random(result, alpha=level)
            for t in ("deletion", "insertion")}


def test_looks_double_from_the_first_and_the_levels_add_up_to_alpha():
    plan = Plan(200)
    assert plan.looks == [32, 64, 128, 200]
    levels = [plan.level(n) for n in plan.looks]
    assert levels[:3] == pytest.approx([0.005 / 3] * 3)
    assert levels[-1] == pytest.approx(0.045)
    assert sum(levels) == pytest.approx(0.05)
    assert Plan(1000).looks == [32, 64, 128, 256, 512, 1000]
    assert sum(Plan(1000).level(n) for n in Plan(1000).looks) == pytest.approx(0.05)
    assert Plan(20).looks == [20] and Plan(20).level(20) == 0.05  # no interim look
    with pytest.raises(ValueError, match="not a look"):
        plan.level(50)


def _simulate(rng: np.random.Generator, n: int, shift: float) -> FaithfulnessResult:
    """One ranking against the random order: per-image AUC differences with mean
    ``shift`` (positive: better on both tests) and spread 0.1."""
    rand_d, rand_i = rng.uniform(0.3, 0.7, n), rng.uniform(0.3, 0.7, n)
    return _result({RANDOM: rand_d, "map": rand_d - shift - rng.normal(0, 0.1, n)},
                   {RANDOM: rand_i, "map": rand_i + shift + rng.normal(0, 0.1, n)})


def _sequential_verdicts(plan: Plan, result: FaithfulnessResult) -> dict:
    n = stop_at(plan, result)
    return _verdicts(subset(result, n), plan.level(n)), n


def test_under_the_null_the_sequential_verdicts_err_at_most_alpha():
    # No ranking differs from random: any "better" or "worse" is an error. The plan keeps
    # the family's error within alpha; reading every look at alpha (peeking) does not.
    rng = np.random.default_rng(0)
    plan = Plan(128, first=16)  # looks 16, 32, 64, 128
    runs, wrong, peeking = 3000, 0, 0
    for _ in range(runs):
        result = _simulate(rng, 128, 0.0)
        verdicts, _ = _sequential_verdicts(plan, result)
        wrong += any(v != "undecided" for v in verdicts.values())
        peeking += any(any(v != "undecided" for v in
                           _verdicts(subset(result, n), 0.05).values()) for n in plan.looks)
    se = np.sqrt(0.05 * 0.95 / runs)
    assert wrong / runs <= 0.05 + 2 * se
    assert peeking / runs > 0.05 + 3 * se  # why the levels must be split


def test_a_clear_effect_stops_at_the_first_look_with_the_full_runs_verdict():
    rng = np.random.default_rng(1)
    plan = Plan(200)
    for shift, expected in ((0.2, "better"), (-0.2, "worse")):
        result = _simulate(rng, 200, shift)
        verdicts, n = _sequential_verdicts(plan, result)
        assert n == 32
        assert set(verdicts.values()) == {expected}
        assert verdicts == _verdicts(result, 0.05)  # what all 200 images say


def test_a_tie_runs_to_the_end_and_reads_the_last_look_at_what_is_left():
    rng = np.random.default_rng(2)
    plan = Plan(200)
    result = _simulate(rng, 200, 0.0)
    verdicts, n = _sequential_verdicts(plan, result)
    assert n == 200
    assert verdicts == _verdicts(result, 0.045)
    assert not settled(result, 0.045)


class Evidence(nn.Module):
    """Class 0's logit is the sum of channel 0 over the top-left 8x8 square; only those
    pixels matter, so the map that ranks them first beats random at once."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        e = 0.1 * x[:, 0, :8, :8].sum(dim=(1, 2))
        return torch.stack([e, torch.zeros_like(e)], dim=1)


def test_the_runner_stops_at_the_first_settled_look_with_the_full_runs_first_images():
    from convattn.explain import faithfulness_batched as faithrun

    torch.manual_seed(0)
    images = torch.ones(40, 3, 32, 32) + 0.1 * torch.randn(40, 3, 32, 32)
    labels = torch.zeros(40, dtype=torch.long)
    cfg = FaithfulnessConfig(steps=4)
    done = []
    got = faithrun.run(Evidence(), images, labels, ["saliency"], cfg=cfg, attention=False,
                       chunk=8, plan=Plan(40, first=16), progress=lambda d, t: done.append(d))
    full = faithrun.run(Evidence(), images, labels, ["saliency"], cfg=cfg, attention=False,
                        chunk=8)
    assert len(got) == 16 and done == [8, 16]
    for name, c in got.curves.items():
        np.testing.assert_allclose(c.deletion, full.curves[name].deletion[:16], atol=1e-6)
        np.testing.assert_allclose(c.insertion, full.curves[name].insertion[:16], atol=1e-6)
    assert _verdicts(got, Plan(40, first=16).level(16)) == _verdicts(full, 0.05)
    assert set(_verdicts(full, 0.05).values()) == {"better"}


@pytest.mark.parametrize("path", sorted((ROOT / "checkpoints").glob("*.checks.npz")),
                         ids=lambda p: p.name)
def test_the_plan_gives_the_shipped_files_verdicts(path):
    # The shipped curves are the full runs: where the plan stops on them, its verdicts
    # are the ones all the file's images give.
    from convattn.explain.checks import load_checks

    result = load_checks(path).faithfulness
    plan = Plan(len(result))
    verdicts, n = _sequential_verdicts(plan, result)
    assert verdicts == _verdicts(result, 0.05)
    assert n in plan.looks

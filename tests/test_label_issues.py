"""Label-issue ranking with cleanlab, on synthetic predictions with deliberately flipped labels."""

from __future__ import annotations

import numpy as np
import pytest
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores

from convattn.trust.label_issues import DEFAULT_METHOD, METHODS, rank_label_issues


def noisy_dataset(n: int = 600, k: int = 4, flips: int = 24, seed: int = 0):
    """A model that is fairly sure of every image's true class, and labels of which
    ``flips`` were changed to another class. Returns (labels, probs fp32, flipped idx)."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n)
    alpha = np.ones((n, k))
    alpha[np.arange(n), truth] = 12.0
    g = rng.gamma(alpha)  # a Dirichlet(alpha) draw per row
    probs = (g / g.sum(1, keepdims=True)).astype(np.float32)
    flipped = rng.choice(n, flips, replace=False)
    labels = truth.copy()
    labels[flipped] = (truth[flipped] + rng.integers(1, k, flips)) % k
    return labels, probs, flipped


@pytest.mark.parametrize("method", ["self_confidence", "normalized_margin"])
def test_flipped_labels_rank_first_and_scores_are_cleanlabs(method):
    labels, probs, flipped = noisy_dataset()
    issues = rank_label_issues(labels, probs, method)
    assert set(issues.top(len(flipped))) == set(flipped)
    reference = probs.astype(np.float64) / probs.astype(np.float64).sum(1, keepdims=True)
    np.testing.assert_allclose(
        issues.scores, get_label_quality_scores(labels, reference, method=method), atol=1e-12)
    np.testing.assert_array_equal(issues.flagged, find_label_issues(labels, reference,
                                                                    n_jobs=1))
    assert issues.flagged[flipped].all()
    assert np.all(np.diff(issues.scores[issues.order]) >= 0)  # worst first
    assert issues.rank[issues.order[0]] == 0 and issues.rank[issues.order[-1]] == len(labels) - 1
    assert issues.method == method


def test_self_confidence_is_the_probability_of_the_given_label():
    labels, probs, _ = noisy_dataset(n=50, k=3, flips=5, seed=1)
    issues = rank_label_issues(labels, probs)
    assert DEFAULT_METHOD == "self_confidence"
    expected = probs[np.arange(50), labels].astype(np.float64)
    np.testing.assert_allclose(issues.scores, expected, rtol=1e-6)
    np.testing.assert_array_equal(issues.order, np.argsort(expected, kind="stable"))


def test_bad_input_is_one_sentence():
    labels, probs, _ = noisy_dataset(n=20, k=3, flips=2)
    with pytest.raises(ValueError, match="same N"):
        rank_label_issues(labels[:-1], probs)
    with pytest.raises(ValueError, match="lie in 0..2"):
        rank_label_issues(labels + 3, probs)
    with pytest.raises(ValueError, match="sum to 1"):
        rank_label_issues(labels, probs * 5)
    with pytest.raises(ValueError, match="integers"):
        rank_label_issues(labels.astype(float), probs)
    with pytest.raises(ValueError, match="unknown method"):
        rank_label_issues(labels, probs, "entropy")
    assert "confidence_weighted_entropy" in METHODS

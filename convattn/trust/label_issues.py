"""Which images look mislabelled, from a model's predicted probabilities, for any dataset.

Confident learning (Northcutt, Jiang and Chuang 2021) as cleanlab implements it: each
image gets cleanlab's label-quality score (``cleanlab.rank.get_label_quality_scores``; low
means the given label is doubtful), the images are ranked worst first, and
``cleanlab.filter.find_label_issues`` flags the set it estimates to be mislabelled (by
default, per pair of classes, as many images as the estimated noise rate implies).

The probabilities should come from a model that did not train on those images (a test
split, or cross-validation), or the model will have learnt the wrong labels.

Default method: "self_confidence" (the probability of the given label), chosen over
"normalized_margin" by ``bench/bench_label_issues.py``: over the six shipped checkpoints'
test predictions it puts 34 of their 6 x 54 validated CIFAR-10 label errors in the top 100
(normalized_margin 30) and 79 in the top 300 (71). Differences of a few images: only
cleanlab's documented methods were compared, and nothing was tuned on the known errors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores

METHODS = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")
DEFAULT_METHOD = "self_confidence"


@dataclass(frozen=True)
class LabelIssues:
    """The ranking of a dataset's labels, worst first."""

    scores: np.ndarray  # (N,) label quality in [0, 1]; low = the label is doubtful
    order: np.ndarray  # (N,) image indices, lowest score first (ties by index)
    flagged: np.ndarray  # (N,) bool: confident learning's estimated label issues
    method: str

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def rank(self) -> np.ndarray:
        """(N,) each image's place in ``order`` (0 = most doubtful label)."""
        rank = np.empty(len(self.order), dtype=np.int64)
        rank[self.order] = np.arange(len(self.order))
        return rank

    def top(self, n: int) -> np.ndarray:
        """The indices of the ``n`` most doubtful labels."""
        return self.order[:n]


def _check(labels: np.ndarray, probs: np.ndarray) -> None:
    if probs.ndim != 2 or labels.ndim != 1 or len(labels) != len(probs):
        raise ValueError(f"expected labels (N,) and probabilities (N, K) for the same N "
                         f"images; got shapes {labels.shape} and {probs.shape}.")
    if len(labels) == 0 or probs.shape[1] < 2:
        raise ValueError("label issues need at least one image and two classes.")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be class indices (integers), not {labels.dtype}.")
    if labels.min() < 0 or labels.max() >= probs.shape[1]:
        raise ValueError(f"labels must lie in 0..{probs.shape[1] - 1} (one per column of "
                         f"the probabilities); got {labels.min()}..{labels.max()}.")
    if not np.isfinite(probs).all() or probs.min() < 0 or \
            not np.allclose(probs.sum(1), 1, atol=1e-3):
        raise ValueError("probabilities must be finite, non-negative, and sum to 1 in "
                         "every row (softmax outputs, not logits).")


def rank_label_issues(labels: np.ndarray, probs: np.ndarray,
                      method: str = DEFAULT_METHOD) -> LabelIssues:
    """Score, rank and flag the labels of N images from (N, K) predicted probabilities.

    ``method`` is one of cleanlab's label-quality scores: "self_confidence" (default),
    "normalized_margin" or "confidence_weighted_entropy".
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}.")
    labels, probs = np.asarray(labels), np.asarray(probs)
    _check(labels, probs)
    probs = probs.astype(np.float64)
    probs /= probs.sum(1, keepdims=True)  # fp32 rows are off 1 by ~1e-7; cleanlab wants 1
    scores = get_label_quality_scores(labels, probs, method=method)
    # n_jobs=1: no worker processes inside an app's threads, and the same answer each run.
    flagged = find_label_issues(labels, probs, n_jobs=1)
    return LabelIssues(scores=scores, order=np.argsort(scores, kind="stable"),
                       flagged=np.asarray(flagged, dtype=bool), method=method)

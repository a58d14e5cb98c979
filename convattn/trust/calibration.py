"""Calibration: does a model's confidence match how often it is right?

Expected calibration error (Guo et al. 2017, "On Calibration of Modern Neural Networks"):
the confidences (top-class probabilities) fall into 15 equal-width bins (lo, hi] of [0, 1],
and ECE = sum over bins of |bin| / N * |accuracy(bin) - mean confidence(bin)|.

Temperature scaling divides the logits by one number T fitted to minimise the negative
log-likelihood: T > 1 softens an over-confident model, and the top class never changes.
Log-probabilities serve as logits, since softmax ignores a constant added to a row, so a
predictions file is enough. Fitting T on the images it is then judged on flatters it, so
``cross_fit_temperature`` fits on one half and calibrates the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BINS = 15
T_BOUNDS = (0.05, 20.0)
_TINY = 1e-30  # fp32 softmax underflows to 0; log(0) would make the NLL infinite


def _check(labels: np.ndarray, scores: np.ndarray) -> None:
    if scores.ndim != 2 or labels.ndim != 1 or len(labels) != len(scores):
        raise ValueError(f"expected labels (N,) and scores (N, K) for the same N images; "
                         f"got shapes {labels.shape} and {scores.shape}.")
    if len(labels) == 0:
        raise ValueError("there are no images to measure calibration on.")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 \
            or labels.max() >= scores.shape[1]:
        raise ValueError(f"labels must be class indices from 0 to {scores.shape[1] - 1}.")


@dataclass(frozen=True)
class Reliability:
    """Per-bin figures of a reliability diagram; empty bins hold NaN."""

    edges: np.ndarray  # (B + 1,) from 0 to 1
    count: np.ndarray  # (B,) images whose confidence falls in the bin
    accuracy: np.ndarray  # (B,) fraction of them the model got right
    confidence: np.ndarray  # (B,) their mean confidence
    ece: float  # expected calibration error, in [0, 1]


def reliability(labels: np.ndarray, probs: np.ndarray, bins: int = BINS) -> Reliability:
    """Bin the images by confidence (the top probability) into ``bins`` equal-width bins."""
    labels, probs = np.asarray(labels), np.asarray(probs, dtype=np.float64)
    _check(labels, probs)
    confidence = probs.max(1)
    right = probs.argmax(1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.searchsorted(edges[1:-1], confidence, side="left")  # bins are (lo, hi]
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(which, weights=right, minlength=bins) / count
        conf = np.bincount(which, weights=confidence, minlength=bins) / count
    gaps = np.where(count > 0, np.abs(acc - conf), 0.0)
    ece = float((count / len(labels) * gaps).sum())
    return Reliability(edges, count, acc, conf, ece)


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray,
                               bins: int = BINS) -> float:
    """ECE in [0, 1] with ``bins`` equal-width confidence bins (15 is the usual choice)."""
    return reliability(labels, probs, bins).ece


def reliability_figure(rel: Reliability, title: str = "") -> Figure:
    """A reliability diagram (accuracy per confidence bin against the diagonal of perfect
    calibration) over a histogram of the bin counts; the Figure is returned, not shown."""
    from matplotlib.figure import Figure  # here: the numbers need no plotting library

    fig = Figure(figsize=(4.5, 5.0), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    centres = (rel.edges[:-1] + rel.edges[1:]) / 2
    width = np.diff(rel.edges)
    full = rel.count > 0
    top.bar(centres[full], rel.accuracy[full], width=width[full], color="#4C72B0",
            edgecolor="white", label="accuracy")
    top.bar(centres[full], (rel.confidence - rel.accuracy)[full], width=width[full],
            bottom=rel.accuracy[full], color="#DD8452", alpha=0.45, label="gap to confidence")
    top.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy",
            title=f"{title}  ECE {100 * rel.ece:.2f} %".strip())
    top.legend(loc="upper left", fontsize="small")
    bottom.bar(centres, rel.count, width=width, color="grey", edgecolor="white")
    bottom.set(xlabel="confidence (top-class probability)", ylabel="images")
    return fig


def logits_from_probs(probs: np.ndarray) -> np.ndarray:
    """Log-probabilities: logits up to a per-row constant, which softmax ignores."""
    return np.log(np.maximum(np.asarray(probs, dtype=np.float64), _TINY))


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / T), in float64."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max(1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(1, keepdims=True)


def nll(labels: np.ndarray, logits: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the labels under softmax(logits / T)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    top = z.max(1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(z - top).sum(1))
    return float((log_norm - z[np.arange(len(z)), labels]).mean())


def fit_temperature(labels: np.ndarray, logits: np.ndarray,
                    bounds: tuple[float, float] = T_BOUNDS) -> float:
    """The T in ``bounds`` minimising the NLL, by golden-section search over log T.

    The NLL is convex in 1/T, hence has one minimum along log T, which is what a
    golden-section search needs.
    """
    labels, logits = np.asarray(labels), np.asarray(logits, dtype=np.float64)
    _check(labels, logits)
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    ratio = (math.sqrt(5) - 1) / 2

    def f(log_t: float) -> float:
        return nll(labels, logits, math.exp(log_t))

    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = f(a), f(b)
    while hi - lo > 1e-6:
        if fa <= fb:  # the minimum lies in [lo, b]
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = f(a)
        else:  # in [a, hi]
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = f(b)
    return math.exp((lo + hi) / 2)


def two_folds(n: int, seed: int = 0) -> np.ndarray:
    """(n,) fold of each image, 0 or 1: a random half each (sizes differ by at most 1)."""
    fold = np.ones(n, dtype=np.int64)
    fold[np.random.default_rng(seed).permutation(n)[: n // 2]] = 0
    return fold


def cross_fit_temperature(labels: np.ndarray, probs: np.ndarray, seed: int = 0
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Temperature-scaled probabilities with two-fold cross-fitting.

    The images are split at random (``two_folds(N, seed)``); T is fitted on each half, and
    each half is calibrated with the T fitted on the other, so no image's own label
    touches its calibrated probabilities. Returns (calibrated probs (N, K) float64,
    temperatures (2,)), where temperatures[f] was fitted on fold f and applied to the
    other fold.
    """
    labels, probs = np.asarray(labels), np.asarray(probs)
    _check(labels, probs)
    if len(labels) < 2:
        raise ValueError("cross-fitting needs at least two images, one per fold.")
    logits = logits_from_probs(probs)
    fold = two_folds(len(labels), seed)
    temperatures = np.array([fit_temperature(labels[fold == f], logits[fold == f])
                             for f in (0, 1)])
    calibrated = np.empty_like(logits)
    for f in (0, 1):
        calibrated[fold == f] = apply_temperature(logits[fold == f], temperatures[1 - f])
    return calibrated, temperatures


def calibrated(probs: np.ndarray, stored: dict[str, np.ndarray],
               rows: np.ndarray | None = None) -> np.ndarray:
    """Temperature-scaled ``probs`` (M, K) with what a predictions file stored (see
    ``convattn.files.predictions.calibration_arrays``).

    ``rows``: each image's row in that file. An image of fold f gets the T fitted on the
    other fold, so its own label never touched it; an image outside the file (row -1, or
    ``rows`` None) gets the T fitted on every image of the file.
    """
    logits = logits_from_probs(np.atleast_2d(probs))
    rows = np.full(len(logits), -1) if rows is None else np.asarray(rows)
    inside = rows >= 0
    t = np.full(len(logits), float(stored["temperature"]))
    # temperatures[f] was fitted on fold f: it calibrates the images of the other fold.
    t[inside] = np.asarray(stored["temperatures"])[1 - np.asarray(stored["fold"])[rows[inside]]]
    return apply_temperature(logits / t[:, None], 1.0)

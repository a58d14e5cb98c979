"""Is an image unlike the training data? Out-of-distribution scores and the flag.

A classifier answers with one of its classes whatever it is shown: a flat red square
comes out "airplane 99.9 %". ``out_of_distribution(model, info, images)`` scores each
image (higher: more unlike the training data; images as ``CheckpointInfo.prepare`` takes
them, e.g. uint8 (B, H, W, 3)) with the method and statistics stored in the checkpoint
under ``ood`` and flags those above the stored threshold, which ``python -m
convattn.evaluate --fit-ood`` sets so that 95 % of the test images are not flagged.

Methods (``REGISTRY``; a new one is one entry):
- ``msp``: minus the maximum softmax probability (Hendrycks & Gimpel 2017).
- ``energy``: minus logsumexp of the logits (Liu et al. 2020).
- ``mahalanobis``: distance of the penultimate features to the nearest class mean under
  the shared covariance (Lee et al. 2018), fitted on training images.
- ``knn``: cosine distance of the L2-normalised penultimate features to their k-th nearest
  neighbour in a bank of training features (Sun et al. 2022).
- ``pixels``: Mahalanobis distance of a dozen image statistics (colour, contrast, edges at
  two scales, histogram entropy) to the training images'; it sees nothing of the model.
- ``combined``: z-scored components summed (see ``combination``); the z-scores' means and
  deviations come from training images held out of the components' fit.

Statistics are plain tensors in nested dicts, so a checkpoint carrying them still loads
with ``torch.load(weights_only=True)``. A checkpoint without them makes
``out_of_distribution`` raise ``OODError`` with one sentence: no default could know what
the training data looked like.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from convattn.device import model_device
from convattn.explain.faithfulness import average_ranks
from convattn.files.info import CheckpointInfo
from convattn.files.prepare import Images, as_pixels
from convattn.registry import Registry
from convattn.trust.neighbours import LAYER as FEATURES
from convattn.trust.neighbours import private_copy

KEY = "ood"  # the checkpoint's key
DEFAULT_METHOD = "combined"
KEEP = 0.95  # the share of test images the threshold leaves unflagged
KNN_K = 10
KNN_BANK = 1000  # training features kept for kNN (fp16); more gains <0.003 AUROC (bench_ood)
HOLD_OUT = 5  # every 5th fitting image is held out to z-score the combination's parts
Stats = dict[str, Any]


class OODError(ValueError):
    """A checkpoint without the flag's statistics, or a method it does not know."""


@dataclass(frozen=True)
class Evidence:
    """What the methods score: one row per image."""

    logits: Tensor  # (B, K)
    features: Tensor  # (B, D) the input of the final linear layer, as it is
    pixel_stats: Tensor  # (B, S) ``image_statistics`` of the images
    labels: Tensor | None = None  # (B,) true classes, needed only to fit

    def take(self, index: Tensor) -> Evidence:
        return Evidence(self.logits[index], self.features[index], self.pixel_stats[index],
                        None if self.labels is None else self.labels[index])


def image_statistics(images: Tensor) -> Tensor:
    """(B, S) statistics of images (B, 3, H, W) in [0, 1]: what noise, flat colours and
    drawings share and photographs do not. Spreads are logged so that a flat image's
    zeros land far away instead of near small values."""
    x = images.float()
    grey = x.mean(1)  # (B, H, W)
    def log(v: Tensor) -> Tensor:
        return torch.log(v + 1e-3)
    fine = (grey[:, 1:, :] - grey[:, :-1, :]).abs().mean((1, 2)) + \
        (grey[:, :, 1:] - grey[:, :, :-1]).abs().mean((1, 2))
    half = nn.functional.avg_pool2d(grey[:, None], 2)[:, 0]
    coarse = (half[:, 1:, :] - half[:, :-1, :]).abs().mean((1, 2)) + \
        (half[:, :, 1:] - half[:, :, :-1]).abs().mean((1, 2))
    saturation = x.amax(1) - x.amin(1)  # (B, H, W)
    hist = torch.stack([torch.histc(g, 16, 0, 1) for g in grey.flatten(1)]) / grey[0].numel()
    entropy = -(hist * torch.log(hist.clamp_min(1e-12))).sum(1)
    return torch.stack([
        *x.mean((2, 3)).T, *log(x.std((2, 3))).T, log(fine), log(coarse),
        log(fine) - log(coarse), saturation.mean((1, 2)), log(saturation.std((1, 2))),
        entropy, log(grey.amax((1, 2)) - grey.amin((1, 2))),
    ], dim=1)


def evidence(model: nn.Module, info: CheckpointInfo, images: Images,
             labels: Sequence[int] | np.ndarray | None = None, batch_size: int = 500,
             progress: Callable[[int, int], object] | None = None) -> Evidence:
    """Run ``model`` on ``images`` (as ``CheckpointInfo.prepare`` takes them; datasets'
    uint8 (B, H, W, 3) arrays are read batch by batch, without a copy of the whole). The
    features are read with a hook on a private copy (the model may be shared by threads
    and must not change)."""
    pixels = as_pixels(images, info.input_size)
    try:
        private, seen = private_copy(model, FEATURES)
    except ValueError as e:
        raise OODError(str(e)) from None
    device = model_device(private)
    mean = torch.tensor(info.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(info.std, device=device).view(1, 3, 1, 1)
    logits, features, stats = [], [], []
    with torch.inference_mode():
        for start in range(0, len(pixels), batch_size):
            x = _unit(pixels[start:start + batch_size], device)
            logits.append(private((x - mean) / std).float().cpu())
            features.append(seen.pop().flatten(1).float().cpu())
            stats.append(image_statistics(x).cpu())
            if progress is not None:
                progress(min(start + batch_size, len(pixels)), len(pixels))
    y = None if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.long)
    return Evidence(torch.cat(logits), torch.cat(features), torch.cat(stats), y)


def _unit(pixels: Tensor | np.ndarray, device: torch.device) -> Tensor:
    """uint8 (B, H, W, 3) from ``as_pixels`` -> float (B, 3, H, W) in [0, 1] on ``device``:
    what the image statistics see; normalised, the model's input (as ``prepare``'s)."""
    if isinstance(pixels, np.ndarray):  # a copy: the array may be read-only
        pixels = torch.from_numpy(np.array(pixels, np.uint8))
    return pixels.to(device).permute(0, 3, 1, 2).float() / 255


# -- the methods --------------------------------------------------------------------------

def _gaussian(x: Tensor, groups: Tensor | None = None) -> Stats:
    """Means (one per group) and the shared precision, shrunk a little towards a scaled
    identity so that it exists even with fewer images than dimensions."""
    x = x.double()
    if groups is None:
        groups = torch.zeros(len(x), dtype=torch.long)
    means = torch.stack([x[groups == g].mean(0) for g in groups.unique()])
    centred = x - means[torch.searchsorted(groups.unique(), groups)]
    cov = centred.T @ centred / len(x)
    cov = 0.99 * cov + 0.01 * cov.trace() / len(cov) * torch.eye(len(cov), dtype=cov.dtype)
    return {"means": means.float(), "precision": torch.linalg.inv(cov).float()}


def _min_distance(x: Tensor, stats: Stats) -> Tensor:
    """Squared Mahalanobis distance of each row of x to the nearest of the means."""
    p, mu = stats["precision"].double(), stats["means"].double()
    x = x.double()
    d = (x @ p * x).sum(1, keepdim=True) - 2 * x @ p @ mu.T + (mu @ p * mu).sum(1)
    return d.min(1).values.float()


def _fit_mahalanobis(e: Evidence) -> Stats:
    if e.labels is None:
        raise OODError("fitting Mahalanobis distance needs the training images' labels.")
    return _gaussian(e.features, e.labels)


def knn_statistics(features: Tensor, bank: int = KNN_BANK, k: int = KNN_K) -> Stats:
    """The kNN method's statistics: ``bank`` of the (N, D) training ``features`` (a fixed
    random choice), L2-normalised, in fp16, and the k whose distance is the score."""
    pick = torch.randperm(len(features), generator=torch.Generator().manual_seed(0))
    kept = nn.functional.normalize(features[pick[:bank]], dim=1)
    return {"bank": kept.half(), "k": min(k, len(kept))}


def _fit_knn(e: Evidence) -> Stats:
    return knn_statistics(e.features)


def _knn(e: Evidence, stats: Stats) -> Tensor:
    query = nn.functional.normalize(e.features, dim=1)
    sims = query @ stats["bank"].float().T  # (B, M)
    return 1 - sims.topk(int(stats["k"]), dim=1).values[:, -1]


@dataclass(frozen=True)
class Method:
    """One way of scoring images: higher means more unlike the training data."""

    name: str
    label: str
    explanation: str
    score: Callable[[Evidence, Stats], Tensor]
    fit: Callable[[Evidence], Stats] = field(default=lambda e: {})


def combination(name: str, parts: Sequence[str], label: str = "") -> Method:
    """A method summing z-scored ``parts`` (names in ``REGISTRY``): each part is fitted
    on 4/5 of the fitting images and z-scored with the other 1/5, which it has not seen
    (a kNN bank would otherwise find each image at distance 0)."""
    def fit(e: Evidence) -> Stats:
        held = torch.arange(len(e.logits)) % HOLD_OUT == HOLD_OUT - 1
        stats: Stats = {"parts": list(parts)}
        z = []
        for part in parts:
            method = get_method(part)
            stats[part] = method.fit(e.take(~held))
            z.append(method.score(e.take(held), stats[part]))
        z = torch.stack(z, 1)
        stats["mean"], stats["std"] = z.mean(0), z.std(0).clamp_min(1e-6)
        return stats

    def score(e: Evidence, stats: Stats) -> Tensor:
        z = torch.stack([get_method(p).score(e, stats[p]) for p in stats["parts"]], 1)
        return ((z - stats["mean"]) / stats["std"]).sum(1)

    return Method(name, label or " + ".join(parts),
                  f"the sum of the z-scores of {', '.join(parts)}", score, fit)


# A new method is one entry here.
REGISTRY: Registry[Method] = Registry("out-of-distribution method", [
    Method("msp", "maximum softmax probability",
           "minus the top class's probability: the model's own confidence",
           lambda e, s: -e.logits.softmax(1).amax(1)),
    Method("energy", "energy", "minus logsumexp of the logits: unlike softmax it keeps "
           "how large the logits are", lambda e, s: -torch.logsumexp(e.logits, 1)),
    Method("mahalanobis", "Mahalanobis distance",
           "distance of the penultimate features to the nearest class mean, under the "
           "training images' shared covariance",
           lambda e, s: _min_distance(e.features, s), _fit_mahalanobis),
    Method("knn", "k-nearest-neighbour distance",
           f"cosine distance of the penultimate features to the {KNN_K}th nearest of "
           f"{KNN_BANK} training images'", _knn, _fit_knn),
    Method("pixels", "image statistics",
           "how unusual the image's colour, contrast, edges and histogram are for a "
           "training image; it does not look at the model",
           lambda e, s: _min_distance(e.pixel_stats, s), lambda e: _gaussian(e.pixel_stats)),
])
REGISTRY.add(combination("combined", ["knn", "pixels"],
                            "kNN distance + image statistics"))
METHODS = {m.name: m.label for m in REGISTRY}


def get_method(name: str) -> Method:
    return REGISTRY.get(name)


# -- what a checkpoint stores -------------------------------------------------------------

@dataclass(frozen=True)
class OODFit:
    """A method, its statistics, and the threshold above which an image is flagged."""

    method: str
    statistics: Stats
    threshold: float = math.nan  # set by ``with_threshold``
    note: str = ""  # what it was fitted and thresholded on, for people reading the file

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "statistics": self.statistics,
                "threshold": float(self.threshold), "note": self.note}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OODFit:
        return cls(str(d["method"]), dict(d["statistics"]), float(d["threshold"]),
                   str(d.get("note", "")))

    def score(self, e: Evidence) -> Tensor:
        return get_method(self.method).score(e, self.statistics)


def stored_fit(info: CheckpointInfo) -> OODFit | None:
    """The flag's fit stored in a checkpoint, or None when it carries none."""
    d = info.extra.get(KEY)
    return OODFit.from_dict(d) if isinstance(d, dict) else None


def fit(train: Evidence, method: str = DEFAULT_METHOD, note: str = "") -> OODFit:
    """Fit ``method`` on training-image evidence (with labels); no threshold yet."""
    return OODFit(method, get_method(method).fit(train), math.nan, note)


def threshold_for(scores: Tensor | np.ndarray, keep: float = KEEP) -> float:
    """The score that leaves ``keep`` of ``scores`` unflagged (flagged: score > it)."""
    s = np.sort(np.asarray(scores, dtype=np.float64))
    if not len(s) or not 0 < keep <= 1:
        raise ValueError("need at least one score and 0 < keep <= 1.")
    return float(s[math.ceil(keep * len(s)) - 1])


def with_threshold(f: OODFit, scores: Tensor | np.ndarray, keep: float = KEEP,
                   note: str = "") -> OODFit:
    return OODFit(f.method, f.statistics, threshold_for(scores, keep),
                  " ".join(p for p in (f.note, note) if p))


def auroc(inside: Tensor | np.ndarray, outside: Tensor | np.ndarray) -> float:
    """Area under the ROC curve of telling ``outside`` from ``inside`` by score: the
    chance that a random outside image scores above a random inside one (ties half)."""
    a, b = np.asarray(inside, np.float64), np.asarray(outside, np.float64)
    ranks = average_ranks(np.concatenate([a, b])[None])[0] + 1  # 1-based, ties averaged
    return float((ranks[len(a):].sum() - len(b) * (len(b) + 1) / 2) / (len(a) * len(b)))


def out_of_distribution(model: nn.Module, info: CheckpointInfo, images: Images
                        ) -> tuple[Tensor, Tensor]:
    """Scores (B,) of ``images``, higher meaning more unlike the training data, and flags
    (B,) bool: score above the checkpoint's threshold. ``images`` are images as
    ``info.prepare`` takes them (uint8 (B, H, W, 3) or (B, 3, H, W), one (H, W, 3), PIL
    images, files), not the model's input: the image statistics need the pixels. Raises
    OODError when the checkpoint carries no fitted flag, ImageError for images refused."""
    f = stored_fit(info)
    if f is None or math.isnan(f.threshold):
        name = info.path or "this checkpoint"
        raise OODError(f"{name} carries no out-of-distribution statistics: run "
                       f"python -m convattn.evaluate --fit-ood on it to add them.")
    scores = f.score(evidence(model, info, images))
    return scores, scores > f.threshold

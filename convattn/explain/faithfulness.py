"""Does a map rank pixels by how much the prediction needs them? Deletion and insertion.

Deletion (Petsiuk et al. 2018, "RISE"): remove pixels in the order the map ranks them,
most important first, and watch the probability of the class: a faithful map makes it
fall fast, so the area under the curve (AUC) is small. Insertion: start from an image
with every pixel removed and put pixels back in that order: a faithful map makes the
probability rise fast, so the AUC is large. A removed pixel takes the value of a
baseline image: the dataset's mean colour (zeros in normalised space, the baseline of
the attribution methods) or a blurred copy of the image.

Any (B, H, W) map can be a ranking: an attribution, the attention each position receives
(``attention_ranking``), or a random order as the reference that a map must beat.
``rank_correlation`` and ``topk_overlap`` say how much two maps agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convattn.device import model_device
from convattn.explain.attribution import AttributionConfig, attribute, to_map
from convattn.explain.verdict import RANDOM
from convattn.readout.attention import attention_modules, run_with_records

BASELINES = ("mean", "blur")


@dataclass(frozen=True)
class FaithfulnessConfig:
    steps: int = 8  # the curves have steps + 1 points, 0% to 100% of the pixels
    baseline: str = "mean"  # "mean": the mean colour; "blur": a blurred copy of the image
    blur_sigma: float = 4.0  # pixels, for the "blur" baseline
    batch_size: int = 128  # perturbed images per forward pass


@dataclass
class Curves:
    """Deletion and insertion curves of one ranking on B images."""

    fractions: np.ndarray  # (S + 1,) fraction of pixels removed (deletion) or added
    deletion: np.ndarray  # (B, S + 1) probability of the target class
    insertion: np.ndarray  # (B, S + 1)

    @property
    def deletion_auc(self) -> np.ndarray:
        """(B,) area under each deletion curve: lower is more faithful."""
        return auc(self.fractions, self.deletion)

    @property
    def insertion_auc(self) -> np.ndarray:
        """(B,) area under each insertion curve: higher is more faithful."""
        return auc(self.fractions, self.insertion)


def auc(fractions: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """Trapezoidal area under (..., S + 1) curves over ``fractions`` in [0, 1]."""
    widths = np.diff(fractions)  # (S,)
    return ((curves[..., 1:] + curves[..., :-1]) / 2 * widths).sum(axis=-1)


def pixel_ranks(ranking: Tensor) -> Tensor:
    """(B, H, W) importance -> (B, H*W) rank of each pixel, 0 for the most important.

    Ties keep row-major order, so a map at a coarser resolution, upsampled, removes the
    pixels of one cell one after another.
    """
    flat = ranking.detach().flatten(1).float()
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices  # (B, N)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))
    return ranks


def baseline_images(images: Tensor, cfg: FaithfulnessConfig) -> Tensor:
    """What removed pixels become: zeros (the mean colour) or a Gaussian-blurred copy."""
    if cfg.baseline == "mean":
        return torch.zeros_like(images)
    if cfg.baseline != "blur":
        raise ValueError(f"unknown baseline {cfg.baseline!r}; expected one of {BASELINES}")
    radius = max(1, int(3 * cfg.blur_sigma))
    t = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-t**2 / (2 * cfg.blur_sigma**2))
    kernel = kernel / kernel.sum()
    c = images.shape[1]
    x = F.pad(images, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1).contiguous(), groups=c)
    return F.conv2d(x, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1).contiguous(), groups=c)


def _probabilities(model: nn.Module, images: Tensor, target: Tensor, batch_size: int,
                   layout: torch.memory_format = torch.contiguous_format) -> Tensor:
    """Probability of ``target`` (repeated per image) for (M, 3, H, W) images: (M,),
    each batch in ``layout`` (the model's inputs' memory format)."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            logits = model(images[start:start + batch_size].contiguous(memory_format=layout))
            p = logits.float().softmax(dim=1)
            out.append(p.gather(1, target[start:start + batch_size, None])[:, 0])
    return torch.cat(out) if out else torch.zeros(0)


def perturbation_curves(model: nn.Module, images: Tensor, target: Tensor,
                        rankings: dict[str, Tensor], cfg: FaithfulnessConfig | None = None,
                        progress: Callable[[int, int], None] | None = None,
                        full: Tensor | None = None) -> dict[str, Curves]:
    """Deletion and insertion curves of each (B, H, W) ranking on normalised ``images``
    (B, 3, H, W), for the class ``target`` (B,).

    The two ends of every curve are the same for all rankings (the image and the
    baseline), so they are computed once; every inner step of every ranking goes through
    the model in one stack of forward batches of ``cfg.batch_size``, in the images'
    memory format (channels_last stays channels_last). ``full``: the probabilities (B,)
    of ``target`` on the unperturbed images when the caller has them already.
    ``progress(done, total)`` per ranking once they are done.
    """
    cfg = cfg or FaithfulnessConfig()
    if cfg.steps < 1:
        raise ValueError("steps must be at least 1")
    device = model_device(model)
    x = images.detach().to(device, torch.float32)
    target = target.to(device).long()
    base = baseline_images(x, cfg)
    b, _, h, w = x.shape
    fractions = np.linspace(0, 1, cfg.steps + 1)
    counts = torch.tensor([round(f * h * w) for f in fractions[1:-1]], device=device)
    names = list(rankings)
    layout = (torch.channels_last if images.is_contiguous(memory_format=torch.channels_last)
              and not images.is_contiguous() else torch.contiguous_format)
    if full is None:
        ends = _probabilities(model, torch.cat([x, base]), target.repeat(2), cfg.batch_size,
                              layout)
        full, empty = ends[:b].cpu().numpy(), ends[b:].cpu().numpy()
    else:
        full = full.float().cpu().numpy()
        empty = _probabilities(model, base, target, cfg.batch_size, layout).cpu().numpy()
    k, r = len(counts), len(names)
    if k and r:
        ranks = torch.stack([pixel_ranks(rankings[n].to(device)) for n in names])  # (R, B, N)
        top = (ranks.view(r, 1, b, 1, h, w) < counts.view(1, k, 1, 1, 1, 1))  # (R, K, B, ...)
        deleted = torch.where(top, base, x)  # (R, K, B, 3, H, W)
        inserted = torch.where(top, x, base)
        batch = torch.stack([deleted, inserted], dim=1).flatten(0, 3)  # (R * 2 * K * B, ...)
        probs = _probabilities(model, batch, target.repeat(r * 2 * k), cfg.batch_size,
                               layout)
        probs = probs.view(r, 2, k, b).permute(0, 1, 3, 2).cpu().numpy()  # (R, 2, B, K)
    out = {}
    for i, name in enumerate(names):
        inner_d = probs[i, 0] if k else np.zeros((b, 0))
        inner_i = probs[i, 1] if k else np.zeros((b, 0))
        out[name] = Curves(
            fractions=fractions,
            deletion=np.column_stack([full, inner_d, empty]),
            insertion=np.column_stack([empty, inner_i, full]),
        )
        if progress is not None:
            progress(i + 1, r)
    return out


def attention_ranking(model: nn.Module, images: Tensor, size: int | None = None
                      ) -> dict[str, Tensor]:
    """Attention received by each key position (column means of the attention matrix) of
    every attention module, on the module's ``key_grid``, upsampled to the input's
    (B, H, W) by repeating cells (``size``: a square of that side instead). A network
    without convattn's modules has its softmax attentions found by
    ``convattn.readout.foreign``."""
    shape = (size, size) if size else tuple(images.shape[-2:])
    out = {}
    for name, (keys, attention) in _received(model, images).items():
        # Column means of every head's matrix, averaged over the heads: (B, 1, Hk, Wk).
        received = attention.float().mean(dim=(1, 2)).view(-1, 1, *keys)
        out[name] = F.interpolate(received, size=shape, mode="nearest")[:, 0]
    return out


def _received(model: nn.Module, images: Tensor) -> dict[str, tuple[tuple[int, int], Tensor]]:
    """Each attention module's key grid and (B, h, Nq, Nk) attention on ``images``."""
    named = attention_modules(model)
    if named:
        _, records = run_with_records(model, images, with_attention=True)
        return {n: (tuple(named[n].key_grid(r.x)), r.attention) for n, r in records.items()}
    from convattn.readout.foreign import foreign_attention, foreign_found

    _, maps = foreign_attention(model, images)
    if not maps:
        return {}
    _, found = foreign_found(model, images[:1])
    return {n: (tuple(found[n].key_grid), a) for n, a in maps.items() if n in found}


def random_ranking(shape: tuple[int, ...], seed: int = 0) -> Tensor:
    """A random order of the pixels, the reference every explanation must beat."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 0..M-1 of each row of (B, M) values, tied values sharing their mean rank."""
    values = np.asarray(values, dtype=np.float64)
    out = np.empty_like(values)
    for i, row in enumerate(values):
        _, inverse, counts = np.unique(row, return_inverse=True, return_counts=True)
        last = np.cumsum(counts) - 1
        out[i] = (last - (counts - 1) / 2)[inverse]
    return out


def rank_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each pair of maps (B, ...) -> (B,): 1 same order,
    0 unrelated, -1 reversed. NaN when a map is constant."""
    ra = average_ranks(np.reshape(a, (len(a), -1)))
    rb = average_ranks(np.reshape(b, (len(b), -1)))
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    denom = np.sqrt((ra**2).sum(axis=1) * (rb**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (ra * rb).sum(axis=1) / denom, np.nan)


def topk_overlap(a: np.ndarray, b: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Fraction of the top ``fraction`` of pixels of map a that are also in b's top,
    (B, ...) -> (B,). Two unrelated maps share ``fraction`` of them on average."""
    fa = torch.as_tensor(np.reshape(a, (len(a), -1)), dtype=torch.float64)
    fb = torch.as_tensor(np.reshape(b, (len(b), -1)), dtype=torch.float64)
    k = max(1, math.ceil(fraction * fa.shape[1]))
    top_a = pixel_ranks(fa) < k
    top_b = pixel_ranks(fb) < k
    return ((top_a & top_b).sum(dim=1).double() / k).numpy()


@dataclass
class FaithfulnessResult:
    """Curves, ranking maps and agreement for B images, one entry per ranking."""

    indices: np.ndarray  # (B,) positions of the images in their set
    labels: np.ndarray  # (B,) true class
    predicted: np.ndarray  # (B,) the class whose probability the curves follow
    maps: dict[str, np.ndarray]  # ranking name -> (B, H, W) the map that orders pixels
    curves: dict[str, Curves]
    agreement: dict[tuple[str, str], dict[str, np.ndarray]]  # (module, method) -> metric -> (B,)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def correct(self) -> np.ndarray:
        return self.labels == self.predicted


def attention_name(module: str) -> str:
    """The ranking name of a module's attention received."""
    return f"attention received ({module})"




def evaluate(model: nn.Module, images: Tensor, labels: Tensor, methods: list[str],
             indices: np.ndarray | None = None, cfg: FaithfulnessConfig | None = None,
             attribution_cfg: AttributionConfig | None = None) -> FaithfulnessResult:
    """Everything the faithfulness page shows for normalised ``images`` (B, 3, H, W):
    the rankings (each attribution method for the predicted class, the attention each
    position receives in every attention module, a random order seeded by the image's
    index), their deletion and insertion curves, and how much each module's attention
    agrees with each attribution (Spearman rank correlation, top-10% overlap)."""
    device = model_device(model)
    x = images.to(device, torch.float32)
    indices = np.arange(len(x)) if indices is None else np.asarray(indices)
    with torch.no_grad():
        predicted = model(x).argmax(dim=1)
    rankings: dict[str, Tensor] = {}
    for method in methods:
        rankings[method] = to_map(attribute(model, x, predicted, method, attribution_cfg))
    attention = attention_ranking(model, x)
    rankings.update({attention_name(n): r for n, r in attention.items()})
    rankings[RANDOM] = torch.stack([random_ranking(tuple(x.shape[2:]), seed=int(i))
                                    for i in indices])
    maps = {k: v.detach().float().cpu().numpy() for k, v in rankings.items()}
    agreement = {(n, m): {"spearman": rank_correlation(maps[attention_name(n)], maps[m]),
                          "topk": topk_overlap(maps[attention_name(n)], maps[m], 0.1)}
                 for n in attention for m in methods}
    return FaithfulnessResult(
        indices=indices, labels=labels.cpu().numpy(), predicted=predicted.cpu().numpy(),
        maps=maps, curves=perturbation_curves(model, x, predicted, rankings, cfg),
        agreement=agreement)


def merge(parts: list[FaithfulnessResult]) -> FaithfulnessResult:
    """One result from several with the same rankings, images in order."""
    if not parts:
        raise ValueError("nothing to merge")
    first = parts[0]

    def cat(get) -> np.ndarray:
        return np.concatenate([get(p) for p in parts])

    return FaithfulnessResult(
        indices=cat(lambda p: p.indices), labels=cat(lambda p: p.labels),
        predicted=cat(lambda p: p.predicted),
        maps={k: cat(lambda p, k=k: p.maps[k]) for k in first.maps},
        curves={k: Curves(c.fractions, cat(lambda p, k=k: p.curves[k].deletion),
                          cat(lambda p, k=k: p.curves[k].insertion))
                for k, c in first.curves.items()},
        agreement={k: {s: cat(lambda p, k=k, s=s: p.agreement[k][s]) for s in v}
                   for k, v in first.agreement.items()})


def auc_table(result: FaithfulnessResult, mask: np.ndarray | None = None) -> list[dict]:
    """Per ranking over the images in ``mask``: mean deletion and insertion AUC, and how
    often the ranking beats the random order on each (lower deletion, higher insertion)."""
    mask = np.ones(len(result), dtype=bool) if mask is None else np.asarray(mask)
    rows = []
    rand = result.curves.get(RANDOM)
    for name, c in result.curves.items():
        d, i = c.deletion_auc[mask], c.insertion_auc[mask]
        row = {"ranking": name, "images": int(mask.sum()),
               "deletion_auc": float(d.mean()) if d.size else float("nan"),
               "insertion_auc": float(i.mean()) if i.size else float("nan")}
        if rand is not None and name != RANDOM and d.size:
            row["beats_random_deletion"] = float((d < rand.deletion_auc[mask]).mean())
            row["beats_random_insertion"] = float((i > rand.insertion_auc[mask]).mean())
        rows.append(row)
    return rows

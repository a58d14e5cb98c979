"""Deletion and insertion over many images at once: the batched runner behind the
Faithfulness page and ``python -m convattn.checks``.

``faithfulness.evaluate`` is the reference, one call per set of images. ``run`` gives the
same result for any number of images, chunk by chunk, with progress after each chunk and
no per-image Python loop in the hot path:

- every deletion and insertion step of every ranking of a chunk goes through the model
  in one stack of forward batches (``faithfulness.perturbation_curves``), under
  ``torch.inference_mode``;
- attribution methods run on the whole chunk: Integrated Gradients sends its scaled
  images through in batches of ``ig_batch`` (not one image's steps at a time), and the
  hook-based methods (Grad-CAM...) get their private ``hookable_copy`` once per run, not
  once per call;
- the attention each position receives comes from one captured forward pass per chunk.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from convattn.device import model_device
from convattn.explain.attribution import AttributionConfig, get_method, hookable_copy, to_map
from convattn.explain.faithfulness import (
    FaithfulnessConfig,
    FaithfulnessResult,
    attention_name,
    attention_ranking,
    merge,
    perturbation_curves,
    random_ranking,
    rank_correlation,
    topk_overlap,
)
from convattn.explain.verdict import RANDOM
from convattn.readout.attention import attention_modules

CHUNK = 64  # images per chunk: memory stays small and progress moves
IG_BATCH = 64  # Integrated Gradients' scaled images per pass (compute-bound beyond ~50)

Progress = Callable[[int, int], None]  # (images done, images in all)


def random_rankings(indices: np.ndarray, size: tuple[int, int]) -> Tensor:
    """The random order of each image, seeded by its index in its set: (B, H, W)."""
    if len(indices) == 0:
        return torch.zeros((0, *size))
    return torch.stack([random_ranking(size, seed=int(i)) for i in indices])


class Rankers:
    """What ranks pixels for a run: attribution methods (hook-based ones on one private
    copy made here), attention received, and the random order."""

    def __init__(self, model: nn.Module, methods: list[str], cfg: AttributionConfig,
                 attention: bool = True, random: bool = True) -> None:
        self.model, self.cfg = model, cfg
        self.attention = attention and bool(attention_modules(model))
        self.random = random
        self.methods = {m: get_method(m) for m in methods}
        hooked = [m for m in self.methods.values() if m.hooks]
        self.private = hookable_copy(model) if hooked else None

    def __call__(self, x: Tensor, target: Tensor, indices: np.ndarray) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for name, method in self.methods.items():
            net = self.private if method.hooks else self.model
            cfg = self.cfg
            if name == "integrated_gradients" and not cfg.ig_batch:
                cfg = AttributionConfig(**{**cfg.__dict__, "ig_batch": IG_BATCH})
            xg = x.detach().clone().requires_grad_(True)
            out[name] = to_map(method.run(net, xg, target, cfg))
        if self.attention:
            with torch.inference_mode():
                found = attention_ranking(self.model, x)
            out.update({attention_name(n): r.clone() for n, r in found.items()})
        if self.random:
            out[RANDOM] = random_rankings(indices, tuple(x.shape[2:])).to(x.device)
        return out


def _agreement(maps: dict[str, np.ndarray], methods: list[str]
               ) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    modules = [k.removeprefix("attention received (").removesuffix(")") for k in maps
               if k.startswith("attention received (")]
    return {(n, m): {"spearman": rank_correlation(maps[attention_name(n)], maps[m]),
                     "topk": topk_overlap(maps[attention_name(n)], maps[m], 0.1)}
            for n in modules for m in methods}


def run_chunk(model: nn.Module, rankers: Rankers, x: Tensor, labels: Tensor,
              indices: np.ndarray, cfg: FaithfulnessConfig) -> FaithfulnessResult:
    """``faithfulness.evaluate`` for one chunk, with the run's ``rankers``."""
    with torch.inference_mode():
        predicted = model(x).argmax(dim=1)
    predicted = predicted.clone()
    rankings = rankers(x, predicted, indices)
    maps = {k: v.detach().float().cpu().numpy() for k, v in rankings.items()}
    return FaithfulnessResult(
        indices=np.asarray(indices), labels=labels.cpu().numpy(),
        predicted=predicted.cpu().numpy(), maps=maps,
        curves=perturbation_curves(model, x, predicted, rankings, cfg),
        agreement=_agreement(maps, list(rankers.methods)))


def run(model: nn.Module, images: Tensor, labels: Tensor, methods: list[str],
        indices: np.ndarray | None = None, cfg: FaithfulnessConfig | None = None,
        attribution_cfg: AttributionConfig | None = None, attention: bool = True,
        random: bool = True, chunk: int = CHUNK, progress: Progress | None = None
        ) -> FaithfulnessResult:
    """Deletion and insertion curves, maps and agreement for normalised ``images``
    (B, 3, H, W) with true ``labels`` (B,), as ``faithfulness.evaluate`` computes them:
    each of ``methods``, the attention received in every attention module (unless
    ``attention`` is False) and the random order seeded by ``indices`` (unless ``random``
    is False).

    ``progress(done, total)`` after every chunk of ``chunk`` images.
    """
    cfg = cfg or FaithfulnessConfig()
    attribution_cfg = attribution_cfg or AttributionConfig()
    device = model_device(model)
    indices = np.arange(len(images)) if indices is None else np.asarray(indices)
    if len(images) == 0:
        raise ValueError("no images to test")
    rankers = Rankers(model, methods, attribution_cfg, attention, random)
    parts = []
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk].to(device, torch.float32)
        parts.append(run_chunk(model, rankers, x, labels[start:start + chunk],
                               indices[start:start + chunk], cfg))
        if progress is not None:
            progress(min(start + chunk, len(images)), len(images))
    return merge(parts)

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
- the attention each position receives comes from one captured forward pass per chunk;
- every pass runs on one private ``inference_copy`` of the model, laid out channels_last
  on the CPU (its convolutions run about 1.3x faster there, the curves move by ~1e-6);
- with a ``sequential.Plan`` the run stops adding chunks as soon as every verdict
  against the random order is settled (``convattn.explain.sequential``).
"""

from __future__ import annotations

import copy
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
from convattn.explain.sequential import Plan, settled
from convattn.explain.verdict import RANDOM

CHUNK = 64  # images per chunk: memory stays small and progress moves
IG_BATCH = 64  # Integrated Gradients' scaled images per pass (compute-bound beyond ~50)

Progress = Callable[[int, int], None]  # (images done, images in all)


def inference_copy(model: nn.Module) -> nn.Module:
    """A private copy for a run's passes, never the caller's (possibly shared) model:
    in eval mode, and channels_last on the CPU, where oneDNN's convolutions run faster in
    that layout. Parameters keep their gradients off: every method here differentiates
    with respect to the image only."""
    private = copy.deepcopy(model).eval().requires_grad_(False)
    if model_device(private).type == "cpu":
        private = private.to(memory_format=torch.channels_last)
    return private


def _layout(model: nn.Module, x: Tensor) -> Tensor:
    """``x`` in the layout ``inference_copy`` gave ``model`` (4-D inputs only)."""
    if x.dim() == 4 and model_device(model).type == "cpu":
        return x.contiguous(memory_format=torch.channels_last)
    return x


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
        self.attention = attention  # a network without attention ranks nothing here
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
            # no_grad, not inference_mode: under inference_mode the foreign readout sees
            # no softmax attention (convattn.readout.foreign), so a card's would be lost.
            with torch.no_grad():
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
    """``faithfulness.evaluate`` for one chunk, with the run's ``rankers``. The
    prediction's forward pass also gives the curves' first point (deletion) and last
    (insertion), so the unperturbed images go through the model once."""
    x = _layout(model, x)
    with torch.inference_mode():
        probs = model(x).float().softmax(dim=1)
        predicted = probs.argmax(dim=1)
        full = probs.gather(1, predicted[:, None])[:, 0]
    predicted, full = predicted.clone(), full.clone()
    rankings = rankers(x, predicted, indices)
    maps = {k: v.detach().float().cpu().numpy() for k, v in rankings.items()}
    return FaithfulnessResult(
        indices=np.asarray(indices), labels=labels.cpu().numpy(),
        predicted=predicted.cpu().numpy(), maps=maps,
        curves=perturbation_curves(model, x, predicted, rankings, cfg, full=full),
        agreement=_agreement(maps, list(rankers.methods)))


def run(model: nn.Module, images: Tensor, labels: Tensor, methods: list[str],
        indices: np.ndarray | None = None, cfg: FaithfulnessConfig | None = None,
        attribution_cfg: AttributionConfig | None = None, attention: bool = True,
        random: bool = True, chunk: int = CHUNK, progress: Progress | None = None,
        plan: Plan | None = None) -> FaithfulnessResult:
    """Deletion and insertion curves, maps and agreement for normalised ``images``
    (B, 3, H, W) with true ``labels`` (B,), as ``faithfulness.evaluate`` computes them:
    each of ``methods``, the attention received in every attention module (unless
    ``attention`` is False) and the random order seeded by ``indices`` (unless ``random``
    is False).

    ``progress(done, total)`` after every chunk of ``chunk`` images. With ``plan``
    (for these images), the run stops at the first of its looks where every verdict is
    settled, and returns the images tested so far; the plan's looks should fall on
    chunk boundaries (a look inside a chunk is read at the chunk's end).
    """
    cfg = cfg or FaithfulnessConfig()
    attribution_cfg = attribution_cfg or AttributionConfig()
    device = model_device(model)
    indices = np.arange(len(images)) if indices is None else np.asarray(indices)
    if len(images) == 0:
        raise ValueError("no images to test")
    private = inference_copy(model)
    rankers = Rankers(private, methods, attribution_cfg, attention, random)
    parts = []
    looks = [n for n in plan.looks if n < len(images)] if plan is not None else []
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk].to(device, torch.float32)
        parts.append(run_chunk(private, rankers, x, labels[start:start + chunk],
                               indices[start:start + chunk], cfg))
        done = min(start + chunk, len(images))
        if progress is not None:
            progress(done, len(images))
        if looks and done >= looks[0]:
            while looks and looks[0] <= done:
                looks.pop(0)
            if settled(merge(parts), plan.level(_look(plan, done))):
                break
    return merge(parts)


def _look(plan: Plan, done: int) -> int:
    """The last look of ``plan`` at or before ``done`` images."""
    return max(n for n in plan.looks if n <= done)

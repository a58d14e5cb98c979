"""Does attention change the answer? Predictions with attention switched off.

Each ablation of ``REGISTRY`` changes every attention module of a private copy (the given
model, possibly cached and shared by many threads, is never touched):

- ``gamma0``: gamma = 0, so each module outputs LayerNorm(X): the network as if
  attention had never been mixed in (it keeps the LayerNorm it was trained with). Needs
  a gated module (``GatedAttention``: ``set_gate_``).
- ``uniform``: every query attends to all N positions with weight 1/N (for
  ConvAttentionModule, W_Q and W_K zeroed so every score q_i . k_j is 0). Attention is
  still mixed in with the learned gamma, but it no longer chooses where to look: this asks
  whether *where* matters. Needs ``UniformableAttention`` (``make_uniform_``).

A module lacking what an ablation needs raises ``NotSupported`` (one sentence naming it)
before anything is copied. Comparing each ablation with the real model, an image is
"fixed" by attention when the ablated model gets it wrong and the real one right,
"broken" the other way round. ``<name>.ablation.npz`` files (``python -m
convattn.ablation``) keep every test image's probabilities for the app.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from convattn.device import model_device
from convattn.files.info import normalise
from convattn.files.predictions import load_arrays, save_arrays
from convattn.nn.interface import GatedAttention, UniformableAttention, require
from convattn.readout.attention import attention_modules
from convattn.registry import Registry


@dataclass(frozen=True)
class Ablation:
    """One way of taking attention away, applied in place to a module of a private copy.

    ``apply`` gets the module as ``needs``, the capability (a protocol of
    ``convattn.nn.interface``) every ablated module must have; ``short`` names the
    ablation in the sentence a module without it raises."""

    name: str
    label: str
    explanation: str
    apply: Callable[[Any], None]
    needs: type
    short: str


# A new ablation is one entry here.
REGISTRY: Registry[Ablation] = Registry("ablation", [
    Ablation("gamma0", "γ = 0 (attention switched off)",
             "each module outputs LayerNorm(X): the network as if attention had never been "
             "mixed in", lambda m: m.set_gate_(0.0), GatedAttention, "the γ = 0 ablation"),
    Ablation("uniform", "uniform attention (every position weighted 1/N)",
             "queries and keys zeroed, so every position is weighted 1/N: attention is "
             "still mixed in with the learned γ but no longer chooses where to look",
             lambda m: m.make_uniform_(), UniformableAttention,
             "the uniform-attention ablation"),
])
ABLATIONS = {a.name: a.label for a in REGISTRY}  # name -> label, for menus and reports


def get_ablation(name: str) -> Ablation:
    return REGISTRY.get(name)


# An image's outcome when the real model is compared with an ablated one.
OUTCOMES = {
    "fixed": "attention fixes it: wrong without, right with",
    "broken": "attention breaks it: right without, wrong with",
    "both_right": "right either way",
    "same_wrong": "wrong either way, the same wrong class",
    "other_wrong": "wrong either way, a different wrong class",
}
Progress = Callable[[int, int], None]  # (images done, images in all)


def ablated_copy(model: nn.Module, kind: str, modules: Iterable[str] | None = None
                 ) -> nn.Module:
    """A private copy of ``model`` (eval mode) with attention ablated in the named
    attention modules (all of them by default); ``kind`` is a key of ``ABLATIONS``.

    A named module without the ablation's capability (``Ablation.needs``) raises
    ``NotSupported`` naming it, before the model is copied."""
    ablation = get_ablation(kind)
    found = attention_modules(model)
    names = list(found) if modules is None else list(modules)
    missing = [n for n in names if n not in found]
    if missing:
        raise ValueError(f"no attention module named {', '.join(missing)}; the model has "
                         f"{', '.join(found) or 'none'}")
    for name in names:
        require(found[name], ablation.needs, name, ablation.short)
    private = copy.deepcopy(model).eval()
    found = attention_modules(private)
    for name in names:
        ablation.apply(found[name])
    return private


def predict_images(model: nn.Module, images: np.ndarray, mean: Sequence[float],
                   std: Sequence[float], batch_size: int = 250,
                   progress: Progress | None = None) -> np.ndarray:
    """Class probabilities (N, K) float32 of (N, H, W, 3) uint8 ``images``.

    Only reads the model: it must already be in eval mode (a cached model is).
    """
    if model.training:
        raise ValueError("predictions come from a model in eval mode; call model.eval() "
                         "first (on a copy if the model is shared).")
    device = model_device(model)
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = normalise(images[start:start + batch_size], mean, std, device)
            out.append(model(x).float().softmax(dim=1).cpu().numpy())
            if progress is not None:
                progress(min(start + batch_size, len(images)), len(images))
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def ablate_images(model: nn.Module, images: np.ndarray, mean: Sequence[float],
                  std: Sequence[float], kinds: Iterable[str] = tuple(ABLATIONS),
                  modules: Iterable[str] | None = None, batch_size: int = 250,
                  progress: Progress | None = None) -> dict[str, np.ndarray]:
    """Probabilities (N, K) from the real model ("real") and from each ablation of the
    named modules (all by default).

    ``progress`` counts images over all the passes, (1 + len(kinds)) * N in all.
    """
    kinds, modules = list(kinds), None if modules is None else list(modules)
    models = {"real": model} | {k: ablated_copy(model, k, modules) for k in kinds}
    total = len(images) * len(models)
    out = {}
    for i, (name, m) in enumerate(models.items()):
        step = None
        if progress is not None:
            def step(done: int, _: int, base: int = i * len(images)) -> None:
                progress(base + done, total)
        out[name] = predict_images(m, images, mean, std, batch_size, step)
    return out


def outcomes(labels: np.ndarray, real: np.ndarray, ablated: np.ndarray) -> np.ndarray:
    """Each image's outcome (a key of ``OUTCOMES``) from true labels and the predicted
    classes of the real and the ablated model, all (N,)."""
    right, right_ablated = real == labels, ablated == labels
    names = np.array(list(OUTCOMES))
    code = np.select(
        [right & ~right_ablated, ~right & right_ablated, right & right_ablated,
         real == ablated],
        [0, 1, 2, 3], default=4)
    return names[code]


def flip_counts(labels: np.ndarray, real: np.ndarray, ablated: np.ndarray,
                num_classes: int) -> dict[str, np.ndarray]:
    """Per true class, how many images have each outcome: {outcome: (K,) int}.

    The five counts of a class add up to its number of images.
    """
    found = outcomes(labels, real, ablated)
    return {o: np.bincount(labels[found == o], minlength=num_classes) for o in OUTCOMES}


def ablation_path(checkpoint: str | Path) -> Path:
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + ".ablation.npz")


def save_ablation(path: str | Path, names: Sequence[str], labels: np.ndarray,
                  classes: Sequence[str], probs: dict[str, np.ndarray], source: str) -> Path:
    """Probabilities per variant as ``probs_<variant>`` (fp16) and, so that near-ties do
    not flip in the fp16 rounding, each variant's fp32 argmax as ``pred_<variant>``."""
    arrays = {f"probs_{k}": v.astype(np.float16) for k, v in probs.items()}
    arrays |= {f"pred_{k}": v.argmax(axis=1).astype(np.int64) for k, v in probs.items()}
    return save_arrays(path, names=np.array(list(names)), labels=np.asarray(labels),
                       classes=np.array(list(classes)), source=np.array(source), **arrays)


load_ablation = load_arrays











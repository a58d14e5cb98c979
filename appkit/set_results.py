"""Results over a whole image set (every image's probabilities; real and ablated
predictions), done once per (checkpoint, image set) for every session.

A shipped file (``<name>.predictions.npz``, ``<name>.ablation.npz``) that covers the set
is read instead of running the model. Anything computed shows a progress bar while it
runs and is kept by ``appkit.progress_cache``; a second session asking for the same result
meanwhile waits for it rather than computing it again.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from appkit import markdown, progress_cache
from appkit.loaded_model import HASH, Loaded
from appkit.sources import predictions_for_checkpoint
from convattn.explain.ablation import (
    ABLATIONS,
    ablate_images,
    ablation_path,
    get_ablation,
    load_ablation,
    predict_images,
)
from convattn.files.data import ImageSet
from convattn.nn.interface import NotSupported, require
from convattn.readout.attention import attention_modules
from convattn.readout.foreign import foreign_attention


def rows_for(names: np.ndarray, images: ImageSet) -> np.ndarray | None:
    """Row of each image of ``images`` in a file listing ``names``, or None when the file
    misses any of them."""
    row = {str(n): i for i, n in enumerate(names)}
    idx = [row.get(n) for n in images.names]
    if any(i is None for i in idx):
        return None
    return np.array(idx, dtype=np.int64)


@dataclass(frozen=True)
class SetProbs:
    probs: np.ndarray  # (N, K) float32, aligned with the image set
    source: str  # where they came from, for the page to say (Markdown)


def set_probs(loaded: Loaded, images: ImageSet) -> SetProbs:
    """Class probabilities of every image in ``images``: from the checkpoint's
    predictions file when it covers them, else computed once."""
    found = predictions_for_checkpoint(loaded.path)
    if found:
        preds, path = found
        idx = rows_for(preds["names"], images)
        if idx is not None and [str(c) for c in preds["classes"]] == images.classes:
            return SetProbs(preds["probs"][idx].astype(np.float32),
                            f"read from {markdown.literal(path.name)}")
    info, model = loaded.info, loaded.model
    probs = progress_cache.once(
        ("probs", loaded.key, images.key),
        lambda progress: predict_images(model, images.images, info.mean, info.std,
                                        progress=progress),
        f"Classifying the {len(images):,} images once with {markdown.literal(loaded.name)}…")
    return SetProbs(probs, "computed here, once")


def predicted(loaded: Loaded, images: ImageSet) -> np.ndarray:
    """Predicted class (N,) of every image in ``images`` (see ``set_probs``)."""
    return set_probs(loaded, images).probs.argmax(axis=1)


@dataclass(frozen=True)
class SetAblation:
    probs: dict[str, np.ndarray]  # "real" and each ablation: (N, K), aligned with the set
    preds: dict[str, np.ndarray]  # the same, predicted class (N,)
    source: str  # where they came from, for the page to say (Markdown)


def _read_ablation(path: Path) -> dict[str, np.ndarray] | None:
    try:
        return _cached_ablation(str(path), path.stat().st_mtime)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


@st.cache_resource(show_spinner=False, max_entries=8)
def _cached_ablation(path: str, mtime: float) -> dict[str, np.ndarray]:
    return load_ablation(path)


def ablation_support(loaded: Loaded) -> dict[str, str | None]:
    """For each ablation of ``ABLATIONS``: None when every attention module of the model
    can take it, else the sentence saying which module cannot (``NotSupported``'s)."""
    found = attention_modules(loaded.model)
    said: dict[str, str | None] = {}
    for kind in ABLATIONS:
        ablation = get_ablation(kind)
        try:
            for name, module in found.items():
                require(module, ablation.needs, name, ablation.short)
            said[kind] = None
        except NotSupported as e:
            said[kind] = str(e)
    return said


@st.cache_data(show_spinner=False, max_entries=16, hash_funcs=HASH)
def foreign_modules(loaded: Loaded, pixels: np.ndarray) -> list[str]:
    """The modules of a network without convattn's attention layers (a model card's) in
    which ``convattn.readout.foreign`` finds a softmax attention, on one image."""
    _, maps = foreign_attention(loaded.model, loaded.inputs(pixels))
    return list(maps)


def set_ablation(loaded: Loaded, images: ImageSet, kinds: tuple[str, ...] = tuple(ABLATIONS)
                 ) -> SetAblation:
    """Real and ablated predictions of every image in ``images``: from the checkpoint's
    ablation file when it covers them, else computed once (one pass per kind, and one for
    the real model); ``kinds`` are the ablations the model's modules can take."""
    variants = ["real", *kinds]
    path = ablation_path(loaded.path)
    data = _read_ablation(path) if path.is_file() else None
    if data is not None and all(f"probs_{v}" in data and f"pred_{v}" in data
                                for v in variants):
        idx = rows_for(data["names"], images)
        if idx is not None and [str(c) for c in data["classes"]] == images.classes:
            return SetAblation({v: data[f"probs_{v}"][idx].astype(np.float32)
                                for v in variants},
                               {v: data[f"pred_{v}"][idx] for v in variants},
                               f"read from {markdown.literal(path.name)}")
    info, model = loaded.info, loaded.model
    probs = progress_cache.once(
        ("ablation", loaded.key, images.key, kinds),
        lambda progress: ablate_images(model, images.images, info.mean, info.std, kinds,
                                       progress=progress),
        f"Running {markdown.literal(loaded.name)} with and without attention on the "
        f"{len(images):,} images, once…")
    return SetAblation(probs, {v: p.argmax(axis=1) for v, p in probs.items()},
                       "computed here, once")

"""Work over a whole image set, done once per (checkpoint, image set) for every session.

A shipped file (``<name>.predictions.npz``, ``<name>.ablation.npz``) that covers the set
is read instead of running the model. Anything computed shows a progress bar while it
runs and is kept in one process-wide store; a second session asking for the same result
meanwhile waits for it rather than computing it again.
"""

from __future__ import annotations

import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import streamlit as st

from convattn.ablation import (
    ABLATIONS,
    ablate_images,
    ablation_path,
    load_ablation,
    predict_images,
)
from convattn.data import ImageSet

from . import render
from .sources import predictions_for_checkpoint
from .state import Loaded

T = TypeVar("T")
KEEP = 16  # results kept, least recently used dropped first


@dataclass
class _Store:
    lock: threading.Lock = field(default_factory=threading.Lock)
    results: OrderedDict[tuple, Any] = field(default_factory=OrderedDict)
    busy: dict[tuple, threading.Lock] = field(default_factory=dict)


@st.cache_resource(show_spinner=False)
def _store() -> _Store:
    return _Store()


def once(key: tuple, compute: Callable[[Callable[[int, int], None]], T], message: str) -> T:
    """``compute(progress)`` the first time ``key`` is asked for, with a progress bar;
    the stored result afterwards."""
    store = _store()
    with store.lock:
        if key in store.results:
            store.results.move_to_end(key)
            return store.results[key]
        busy = store.busy.setdefault(key, threading.Lock())
    if busy.locked():
        with st.spinner(f"{message} Another session started this; waiting for it…"):
            busy.acquire()
    else:
        busy.acquire()
    try:
        with store.lock:
            if key in store.results:
                return store.results[key]
        bar = st.progress(0.0, text=message)

        def progress(done: int, total: int) -> None:
            bar.progress(min(done / max(total, 1), 1.0),
                         text=f"{message} {done:,} of {total:,} images.")

        value = compute(progress)
        bar.empty()
        with store.lock:
            store.results[key] = value
            while len(store.results) > KEEP:
                store.results.popitem(last=False)
        return value
    finally:
        with store.lock:
            store.busy.pop(key, None)
        busy.release()


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
                            f"read from {render.literal(path.name)}")
    info, model = loaded.info, loaded.model
    probs = once(("probs", loaded.key, images.key),
                 lambda progress: predict_images(model, images.images, info.mean, info.std,
                                                 progress=progress),
                 f"Classifying the {len(images):,} images once with "
                 f"{render.literal(loaded.name)}…")
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


def set_ablation(loaded: Loaded, images: ImageSet) -> SetAblation:
    """Real and ablated predictions of every image in ``images``: from the checkpoint's
    ablation file when it covers them, else computed once (three passes)."""
    variants = ["real", *ABLATIONS]
    path = ablation_path(loaded.path)
    data = _read_ablation(path) if path.is_file() else None
    if data is not None and all(f"probs_{v}" in data and f"pred_{v}" in data
                                for v in variants):
        idx = rows_for(data["names"], images)
        if idx is not None and [str(c) for c in data["classes"]] == images.classes:
            return SetAblation({v: data[f"probs_{v}"][idx].astype(np.float32)
                                for v in variants},
                               {v: data[f"pred_{v}"][idx] for v in variants},
                               f"read from {render.literal(path.name)}")
    info, model = loaded.info, loaded.model
    probs = once(("ablation", loaded.key, images.key),
                 lambda progress: ablate_images(model, images.images, info.mean, info.std,
                                                progress=progress),
                 f"Running {render.literal(loaded.name)} with and without attention on the "
                 f"{len(images):,} images, once…")
    return SetAblation(probs, {v: p.argmax(axis=1) for v, p in probs.items()},
                       "computed here, once")

"""Nearest training images in a model's own feature space.

An image's features are what the model's final linear layer (``fc`` in every registered
network) receives: the globally pooled activations, L2-normalised so that the cosine
distance between two images is 1 - their dot product. They are read with a forward
pre-hook on a private copy of the model, since the model given may be shared by threads
and must not change.

Features of a whole training split take minutes on a CPU, so ``cached_features`` keeps
them on disk (in ``$CONVATTN_CACHE/features``, else ``~/.cache/convattn/features``),
keyed by the checkpoint file's content and the data's identity (path, and the name, size
and mtime of every file under it), stored as float16.
"""

from __future__ import annotations

import copy
import hashlib
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from convattn.device import model_device
from convattn.errors import DataError
from convattn.files.checkpoint import (
    CheckpointError,
    OutputError,
    atomic_write,
    checkpoint_digest,
    load_checkpoint,
)
from convattn.files.data import ImageSet, load_split
from convattn.files.data import cache_dir as data_cache_dir
from convattn.files.info import CheckpointInfo
from convattn.files.prepare import Images, as_pixels

LAYER = "fc"
FORMAT = "features-v1"  # part of every cache key: bump it when features change meaning

Progress = Callable[[int, int], object]  # called with (images done, images in all)


def private_copy(model: nn.Module, layer: str) -> tuple[nn.Module, list[Tensor]]:
    """An eval-mode copy of ``model`` whose ``layer`` appends its input to the list."""
    private = copy.deepcopy(model).eval()
    module = dict(private.named_modules()).get(layer)
    if module is None:
        raise ValueError(f"the model has no module named {layer!r}, whose input would be "
                         "the features.")
    seen: list[Tensor] = []
    module.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    return private, seen


def image_features(model: nn.Module, info: CheckpointInfo, images: Images,
                   batch_size: int = 500, progress: Progress | None = None,
                   layer: str = LAYER) -> np.ndarray:
    """(N, D) float32 L2-normalised features of images (as ``CheckpointInfo.prepare`` takes
    them, e.g. uint8 (N, H, W, 3); a whole dataset's array is read batch by batch, not
    copied): the input of the model's ``layer`` (its final linear layer), on the model's
    device. ImageError (one sentence) for images that are not uint8 pixels."""
    images = as_pixels(images, info.input_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}.")
    private, seen = private_copy(model, layer)
    device = model_device(private)
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            private(info.normalise(images[start:start + batch_size], device))
            f = seen.pop().flatten(1).float()
            out.append(torch.nn.functional.normalize(f, dim=1).cpu().numpy())
            if progress is not None:
                progress(min(start + batch_size, len(images)), len(images))
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


train_features = image_features  # the same function; the name says what the app feeds it


def nearest(features: np.ndarray, query_features: np.ndarray, k: int = 8,
            chunk: int = 16384) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``features`` (N, D) nearest to each query (Q, D) or (D,), by
    cosine distance; both must be L2-normalised (as ``image_features`` makes them).

    Returns indices (Q, k) and distances (Q, k) float32, nearest first. float16 features
    are widened a ``chunk`` of rows at a time, so they are never all held as float32.
    """
    query = np.atleast_2d(np.asarray(query_features, dtype=np.float32))
    if features.ndim != 2 or query.shape[1] != features.shape[1]:
        raise ValueError(f"features (N, D) and queries (Q, D) must share D; got shapes "
                         f"{features.shape} and {query.shape}.")
    if not 1 <= k <= len(features):
        raise ValueError(f"k must be between 1 and the {len(features)} feature rows; "
                         f"got {k}.")
    sims = np.concatenate([query @ features[a:a + chunk].astype(np.float32).T
                           for a in range(0, len(features), chunk)], axis=1)  # (Q, N)
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, top, 1), axis=1, kind="stable")
    indices = np.take_along_axis(top, order, 1)
    distances = 1.0 - np.take_along_axis(sims, indices, 1)
    return indices, np.clip(distances, 0.0, 2.0).astype(np.float32)


def cache_dir() -> Path:
    """Where cached features live, one file per key: ``convattn.files.data.cache_dir()/features``
    ($CONVATTN_CACHE, else $XDG_CACHE_HOME/convattn, else ~/.cache/convattn)."""
    return data_cache_dir() / "features"


def data_identity(source: str | Path, split: str) -> str:
    """A digest of the data's resolved path and every file under the split (its name,
    size and mtime): adding, removing, renaming or rewriting a file changes it."""
    root = Path(source).resolve()
    target = root / split if (root / split).is_dir() else root
    h = hashlib.sha256(f"{root}|{split}\n".encode())
    if target.is_file():
        st = target.stat()
        h.update(f"file|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return h.hexdigest()
    count = 0
    for folder, subfolders, files in os.walk(target):
        subfolders.sort()  # os.walk's order is the file system's; the key must not be
        for name in sorted(files):
            st = os.stat(os.path.join(folder, name))
            h.update(f"{os.path.relpath(folder, target)}/{name}|{st.st_size}|"
                     f"{st.st_mtime_ns}\n".encode())
            count += 1
    h.update(f"count|{count}\n".encode())
    return h.hexdigest()


def features_key(checkpoint: str | Path, data: str | Path, split: str = "train",
                 layer: str = LAYER) -> str:
    """The cache key of a checkpoint's features of a data split."""
    if not Path(checkpoint).is_file():
        raise CheckpointError(f"{checkpoint} does not exist or is not a file.")
    if not Path(data).exists():
        raise DataError(f"{data} does not exist: expected the dataset the features are of.")
    parts = [FORMAT, layer, checkpoint_digest(checkpoint), data_identity(data, split)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def _read(path: Path) -> np.ndarray | None:
    """The cached array, or None when it is missing, unreadable or not features."""
    try:
        features = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if features.ndim != 2 or features.dtype != np.float16 or not np.isfinite(features).all():
        return None
    return features


def cached_features(checkpoint: str | Path, data: str | Path, split: str = "train", *,
                    model: nn.Module | None = None, info: CheckpointInfo | None = None,
                    images: ImageSet | None = None, batch_size: int = 500,
                    progress: Progress | None = None, directory: str | Path | None = None
                    ) -> np.ndarray:
    """(N, D) float16 features of the images of ``split`` of ``data`` under the model of
    ``checkpoint``, from the cache when they are there (~1 s to key 50,000 files).

    On a miss the model (``model`` and ``info`` if given, which must be the checkpoint's,
    else loaded on the CPU) runs on ``images`` (if given, which must be that split, else
    read), and the result is written atomically; a corrupt cache file is recomputed, and
    a cache that cannot be written only warns.
    """
    path = Path(directory or cache_dir()) / f"{features_key(checkpoint, data, split)}.npy"
    features = _read(path)
    if features is not None:
        return features
    if model is None or info is None:
        model, info = load_checkpoint(checkpoint)
    if images is None:
        images = load_split(data, split)
    features = image_features(model, info, images.images, batch_size, progress)
    features = features.astype(np.float16)
    try:
        atomic_write(path, lambda f: np.save(f, features, allow_pickle=False))
    except OutputError as e:
        warnings.warn(f"features were not cached: {e}", stacklevel=2)
    return features

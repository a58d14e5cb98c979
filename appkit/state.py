"""The model a page works on: checkpoint choice, device, and cached work.

Models are cached once per process with ``st.cache_resource`` and shared by every
session, so nothing here (or in any page) may change them: convattn's attention
functions use no hooks, and hook-based attributions run on private copies.
Per-image results are cached with ``st.cache_data``, keyed by the checkpoint's path and
modification time and by the image's pixels.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
import torch
from torch import nn

from convattn.attribution import AttributionConfig
from convattn.checkpoint import CheckpointError, atomic_write, load_checkpoint

from . import analysis
from .sources import ImageSet

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT_DIR = ROOT / "checkpoints"
DEFAULT_CHECKPOINT = "seed.pt"
ENV_CHECKPOINT = "CONVATTN_CHECKPOINT"
ENV_CHECKPOINT_DIR = "CONVATTN_CHECKPOINTS"  # a folder to list instead of checkpoints/
UPLOADS = "uploaded_checkpoints"  # session state: paths of this session's uploads
UPLOAD_DIR = Path(tempfile.gettempdir()) / "convattn-uploads"
TRAIN_HINT = ("python -m convattn.train --arch seed --epochs 10 --train-subset 10000 "
              "--out checkpoints/seed.pt")


@dataclass(frozen=True)
class Loaded:
    """A cached model with what identifies it in cache keys."""

    model: nn.Module
    info: dict[str, Any]
    key: tuple[str, float, str]  # (resolved path, mtime, device)

    @property
    def name(self) -> str:
        return Path(self.key[0]).name

    @property
    def classes(self) -> list[str]:
        return list(self.info["classes"])


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def device_label() -> str:
    if device() == "cuda":
        return f"GPU ({torch.cuda.get_device_name(0)})"
    return "CPU (no CUDA GPU found)"


def checkpoint_options() -> list[str]:
    """$CONVATTN_CHECKPOINT first when set, then checkpoints/*.pt with seed.pt first, then
    the checkpoints this session uploaded."""
    directory = Path(os.environ.get(ENV_CHECKPOINT_DIR, "") or CHECKPOINT_DIR)
    options: list[str] = []
    env = os.environ.get(ENV_CHECKPOINT, "").strip()
    if env:
        options.append(env)
    found = sorted(directory.glob("*.pt"), key=lambda p: (p.name != DEFAULT_CHECKPOINT, p.name))
    seen = {Path(o).resolve() for o in options}
    options += [str(p) for p in found if p.resolve() not in seen]
    options += [p for p in st.session_state.get(UPLOADS, []) if Path(p).is_file()]
    return options


def store_upload(name: str, data: bytes) -> str:
    """Keep an uploaded checkpoint as a file (named by its content, so the model cache
    and other sessions that upload the same bytes share it) once it is known to load.

    Returns the file's path; raises CheckpointError with one sentence naming ``name``,
    and then keeps nothing.
    """
    digest = hashlib.sha256(data).hexdigest()[:16]
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(name).stem)[:60]
    path = UPLOAD_DIR / digest / f"{stem or 'checkpoint'}.pt"
    if path.is_file():
        return str(path)
    staging = atomic_write(UPLOAD_DIR / f"{digest}.{os.getpid()}-{threading.get_ident()}.check",
                           lambda f: f.write(data))
    try:
        load_checkpoint(staging)  # rebuilds the network too, so a mismatch shows now
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, path)
    except CheckpointError as e:
        raise CheckpointError(str(e).replace(str(staging), name)) from None
    finally:
        staging.unlink(missing_ok=True)
    return str(path)


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def _load(path: str, mtime: float, dev: str) -> tuple[nn.Module, dict[str, Any]]:
    return load_checkpoint(path, dev)


def load(path: str) -> Loaded:
    """The cached model for ``path``; raises CheckpointError with one sentence."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{path} does not exist.")
    key = (str(p.resolve()), p.stat().st_mtime, device())
    model, info = _load(*key)
    return Loaded(model, info, key)


def checkpoint_label(path: str) -> str:
    p = Path(path)
    if p.parent.parent == UPLOAD_DIR:
        return f"{p.name} (uploaded)"
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


@st.cache_data(show_spinner=False, max_entries=64)
def image_analysis(_loaded: Loaded, key: tuple, pixels: np.ndarray) -> analysis.ImageAnalysis:
    info = _loaded.info
    return analysis.analyse(_loaded.model, pixels, info["mean"], info["std"])


def analyse(loaded: Loaded, pixels: np.ndarray) -> analysis.ImageAnalysis:
    return image_analysis(loaded, loaded.key, pixels)


@st.cache_data(show_spinner=False, max_entries=256)
def _attribution(_loaded: Loaded, key: tuple, pixels: np.ndarray, target: int, method: str,
                 cfg: AttributionConfig) -> np.ndarray:
    info = _loaded.info
    return analysis.attribution_map(_loaded.model, pixels, info["mean"], info["std"], target,
                                    method, cfg)


def attribution(loaded: Loaded, pixels: np.ndarray, target: int, method: str,
                cfg: AttributionConfig) -> np.ndarray:
    return _attribution(loaded, loaded.key, pixels, target, method, cfg)


@st.cache_data(show_spinner="Classifying the test images once…", max_entries=8)
def _predict_set(_loaded: Loaded, key: tuple, set_key: str, _images: ImageSet) -> np.ndarray:
    info, preds = _loaded.info, []
    dev = next(_loaded.model.parameters()).device
    mean = torch.tensor(info["mean"], device=dev).view(1, 3, 1, 1)
    std = torch.tensor(info["std"], device=dev).view(1, 3, 1, 1)
    with torch.no_grad():
        for start in range(0, len(_images), 250):
            batch = torch.from_numpy(_images.images[start:start + 250]).to(dev)
            x = (batch.permute(0, 3, 1, 2).float() / 255 - mean) / std
            preds.append(_loaded.model(x).argmax(dim=1).cpu().numpy())
    return np.concatenate(preds)


def predict_set(loaded: Loaded, images: ImageSet) -> np.ndarray:
    """Predicted class of every image in ``images``, computed with the model (cached)."""
    return _predict_set(loaded, loaded.key, images.key, images)

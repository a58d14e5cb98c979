"""The model a page works on (``Loaded``): which checkpoints there are, uploads, loading,
the device, and the model's cached answers for one image (``analyse``, ``attribution``).

A model card (``.toml``, ``convattn.files.card``) named by the operator
(``appkit.serving.model_file``) is listed first and opened with ``open_model``; it runs
the card's code, so no card ever comes from the browser (uploads are checkpoints only).

Models are cached once per process with ``st.cache_resource`` and shared by every
session, so nothing here (or in any page) may change them: convattn's attention
functions use no hooks, and hook-based attributions run on private copies.
Per-image results are cached with ``st.cache_data``, keyed by the checkpoint's identity
(``HASH``: path, modification time, device) and by the image's pixels;
``appkit.teaching_work`` and ``appkit.set_results`` key their work the same way.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st
import torch
from torch import nn

from appkit import markdown, serving
from convattn.device import model_device
from convattn.explain.attribution import AttributionConfig
from convattn.files import shipped
from convattn.files.card import CardError, card_files, open_model
from convattn.files.checkpoint import (
    CheckpointError,
    atomic_write,
    load_checkpoint,
    read_checkpoint,
)
from convattn.files.data import ImageSet
from convattn.files.info import CheckpointInfo
from convattn.nn.interface import QueryKeyAttention
from convattn.nn.models import comparisons, create_model, describe_model, twin
from convattn.readout import analysis
from convattn.readout.attention import attention_modules
from convattn.registry import UnknownName

DEFAULT_CHECKPOINT = f"{shipped.DEFAULT_CHECKPOINT}.pt"
ENV_CHECKPOINT = "CONVATTN_CHECKPOINT"
UPLOADS = "uploaded_checkpoints"  # session state: paths of this session's uploads
TRAIN_HINT = ("python -m convattn.train --arch seed --epochs 10 --train-subset 10000 "
              "--out checkpoints/seed.pt")


@dataclass(frozen=True)
class Loaded:
    """A cached model with what identifies it in cache keys."""

    model: nn.Module
    info: CheckpointInfo
    key: tuple[str, float | tuple[float, ...], str]  # (resolved path, mtime(s), device);
    # a card's mtimes are those of the card and the files it names (``card_files``)

    @property
    def name(self) -> str:
        return Path(self.key[0]).name

    @property
    def path(self) -> str:
        return self.key[0]

    @property
    def classes(self) -> list[str]:
        return list(self.info.classes)

    @property
    def is_card(self) -> bool:
        """Opened from a model card: a network convattn did not train, so it has no
        predictions, ablation or history files and no registry twin."""
        return is_card(self.path)

    def describe(self) -> str:
        """What the network is, in a sentence (Markdown-safe: no user text unescaped)."""
        if self.is_card:
            h, w = self.info.image_size
            colour = "grey" if self.info.channels == 1 else "RGB"
            return (f"your network, from the model card {markdown.literal(self.name)}: "
                    f"{len(self.classes):,} classes, {h}x{w} {colour} images")
        return describe_model(self.info.arch)

    def inputs(self, pixels: np.ndarray) -> torch.Tensor:
        """uint8 (B, H, W, 3) or (H, W, 3) images -> the model's input, on its device."""
        return self.info.normalise(pixels, model_device(self.model))


# Every cached computation takes the Loaded model and image sets as they are: the cache
# keys them by identity (checkpoint file, modification time, device; the set's key), so a
# page never passes a key beside the object, and the model itself is never hashed.
HASH = {Loaded: lambda loaded: loaded.key, ImageSet: lambda images: images.key}


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def device_label() -> str:
    if device() == "cuda":
        return f"GPU ({torch.cuda.get_device_name(0)})"
    return "CPU (no CUDA GPU found)"


def is_card(path: str | Path) -> bool:
    """Whether ``path`` names a model card (a .toml file) rather than a checkpoint."""
    return Path(path).suffix.lower() == ".toml"


def checkpoint_options() -> list[str]:
    """The operator's model (``--model`` or $CONVATTN_MODEL: a card or a checkpoint) first,
    then $CONVATTN_CHECKPOINT when set, then checkpoints/*.pt with seed.pt first, then the
    checkpoints this session uploaded."""
    directory = shipped.checkpoints_dir()
    options: list[str] = []
    operator = serving.model_file()
    if operator is not None:
        options.append(str(operator))
    env = os.environ.get(ENV_CHECKPOINT, "").strip()
    if env and (operator is None or Path(env).resolve() != operator.resolve()):
        options.append(env)
    found = sorted(directory.glob("*.pt"), key=lambda p: (p.name != DEFAULT_CHECKPOINT, p.name))
    seen = {Path(o).resolve() for o in options}
    options += [str(p) for p in found if p.resolve() not in seen]
    options += [p for p in st.session_state.get(UPLOADS, []) if Path(p).is_file()]
    return options


def store_upload(name: str, data: bytes) -> str:
    """Keep an uploaded checkpoint as a file in the server's private upload folder
    (``serving.upload_dir``), named by its content so that the model cache and sessions
    that upload the same bytes share it, once it is known to load.

    Returns the file's path; raises CheckpointError with one sentence naming ``name``,
    and then keeps nothing.
    """
    digest = hashlib.sha256(data).hexdigest()[:16]
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(name).stem)[:60]
    folder = serving.upload_dir()
    path = folder / digest / f"{stem or 'checkpoint'}.pt"
    if path.is_file():
        return str(path)
    staging = atomic_write(folder / f"{digest}.{os.getpid()}-{threading.get_ident()}.check",
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
def _load(path: str, mtime: float | tuple[float, ...], dev: str
          ) -> tuple[nn.Module, CheckpointInfo]:
    if is_card(path):
        try:
            model, info = open_model(path)
        except CardError as e:
            raise CheckpointError(str(e)) from None
        return model.to(dev), info
    return load_checkpoint(path, dev)


def load(path: str) -> Loaded:
    """The cached model for ``path``, a checkpoint or a model card; raises CheckpointError
    with one sentence (a card's ``CardError`` sentence as it is). A card is opened again
    when it, its weights or its factory file change."""
    p = Path(path)
    if p.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint (.pt) or model card "
                              "(.toml).")
    if not p.is_file():
        raise CheckpointError(f"{path} does not exist.")
    mtime: float | tuple[float, ...] = p.stat().st_mtime
    if is_card(p):
        try:
            mtime = tuple(f.stat().st_mtime_ns / 1e9 for f in card_files(p))
        except (CardError, OSError) as e:
            raise CheckpointError(str(e)) from None
    key = (str(p.resolve()), mtime, device())
    model, info = _load(*key)
    return Loaded(model, info, key)


@st.cache_data(show_spinner=False, max_entries=64)
def _arch(path: str, mtime: float) -> str | None:
    try:
        return str(read_checkpoint(path)["arch"])
    except CheckpointError:
        return None


def twin_checkpoint(path: str, options: list[str]) -> str | None:
    """The first of ``options`` whose architecture is the registry's twin of ``path``'s
    (an attention network's control, or the reverse; see ``convattn.nn.models.twin``)."""
    def arch(p: str) -> str | None:
        return _arch(p, Path(p).stat().st_mtime) if Path(p).is_file() else None

    mine = arch(path)
    wanted = twin(mine) if mine else None
    return next((o for o in options if wanted and arch(o) == wanted), None)


def checkpoint_label(path: str) -> str:
    p = Path(path)
    if is_card(p):
        return f"{p.name} (model card)"
    if p.parent.parent == serving.upload_dir():
        return f"{p.name} (uploaded)"
    try:
        return str(p.relative_to(shipped.checkpoints_dir().parent))
    except ValueError:
        return str(p)


@st.cache_data(show_spinner=False, max_entries=64, hash_funcs=HASH)
def analyse(loaded: Loaded, pixels: np.ndarray) -> analysis.ImageAnalysis:
    """Probabilities and every attention module's maps for one image of any size (cached):
    convattn's own modules or those found in a foreign network, at any grid."""
    info = loaded.info
    return analysis.analyse(loaded.model, pixels, info.mean, info.std)


@st.cache_data(show_spinner=False, max_entries=256, hash_funcs=HASH)
def attribution(loaded: Loaded, pixels: np.ndarray, target: int, method: str,
                cfg: AttributionConfig) -> np.ndarray:
    """One method's (H, W) attribution map for ``target`` on one image (cached)."""
    info = loaded.info
    return analysis.attribution_map(loaded.model, pixels, info.mean, info.std, target,
                                    method, cfg)


@st.cache_resource(show_spinner=False, max_entries=64)
def _lensable(arch: str) -> bool:
    """Whether the registry's network ``arch`` has an attention module the lens can show
    (queries and keys), from a freshly built copy: the architecture decides, not the
    weights. False for a name the registry does not know."""
    try:
        model = create_model(arch)
    except UnknownName:
        return False
    return any(isinstance(m, QueryKeyAttention) for m in attention_modules(model).values())


def partner_checkpoint(path: str, options: list[str]) -> str | None:
    """What Compare opens ``path`` beside: where ``path``'s network has attention, another
    of ``options`` with attention the lens can show too (a network the registry compares it
    with first, such as seed beside seed-mh4, else the first such), so that both lenses show
    and move together; else (or when no other has attention) its twin
    (``twin_checkpoint``). None when neither is among ``options``."""
    def arch(p: str) -> str | None:
        return _arch(p, Path(p).stat().st_mtime) if Path(p).is_file() else None

    mine = arch(path)
    others = [o for o in options if Path(o).resolve() != Path(path).resolve()]
    if mine and _lensable(mine):
        related = {b if a == mine else a for a, b in comparisons() if mine in (a, b)}
        attending = [o for o in others if (a := arch(o)) and _lensable(a)]
        found = ([o for o in attending if arch(o) in related] or attending)[:1]
        if found:
            return found[0]
    return twin_checkpoint(path, others)

"""Where the page's images come from: the bundled sample, the full test set (and where
to download CIFAR-10 to), the training split; and a checkpoint's predictions file.

Image sets and predictions files are read once per process (``st.cache_resource``) and
shared read-only by every session.
"""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import streamlit as st

from convattn.errors import DataError
from convattn.files import shipped
from convattn.files.data import ImageSet, Size, default_data, load_split, resized
from convattn.files.images import as_grey
from convattn.files.predictions import load_predictions, predictions_path

ENV_DATA = "CONVATTN_DATA"
PREDICTION_KEYS = {"names", "labels", "probs", "classes"}
TORCHVISION_FOLDER = "cifar-10-batches-py"  # what torchvision's CIFAR-10 download unpacks
DOWNLOAD_SIZE = "170 MB"


# What a set's key may carry after its folder: the image size, grey, the model's classes.
_KEY_TAIL = re.compile(r"(@\d+x\d+)?(~grey)?(>classes:[0-9a-f]+)?$")


def _at(size: Size) -> str:
    """The key's note of an image size other than CIFAR-10's 32x32."""
    h, w = (size, size) if isinstance(size, int) else size
    return "" if (h, w) == (32, 32) else f"@{h}x{w}"


def _seen_grey(images: ImageSet, grey: bool) -> ImageSet:
    """The set as a grey network sees it (``as_grey``: the same input to the model, shown
    as it is), under a key of its own; the set itself when ``grey`` is False."""
    if not grey:
        return images
    pixels = np.empty_like(images.images)
    step = max(1, (1 << 22) // max(1, int(np.prod(images.images.shape[1:]))))  # ~4M values
    for start in range(0, len(pixels), step):
        pixels[start:start + step] = as_grey(images.images[start:start + step])
    pixels.flags.writeable = False
    return replace(images, images=pixels, key=f"{images.key}~grey")


@st.cache_resource(show_spinner=False)
def load_sample(path: str | None = None, size: Size = 32, grey: bool = False) -> ImageSet:
    """The bundled test images at ``size`` (a model card's; fitted as the folders are,
    ``convattn.files.data``), in grey for a grey network, shared read-only by every
    session; DataError with one sentence if they are unusable."""
    sample = resized(shipped.load_sample(path), size)
    sample.images.flags.writeable = False
    return _seen_grey(sample, grey)


@st.cache_resource(show_spinner="Reading the test set (once for all sessions)…")
def load_test_set(folder: str, size: Size = 32, grey: bool = False) -> ImageSet:
    """The test split of an ImageFolder root (``test/<class>/*``, or ``<class>/*``), a
    .npz pack or torchvision's CIFAR-10, its images at ``size`` (in grey for a grey
    network).

    Raises DataError with one sentence.
    """
    root = Path(folder).expanduser()
    try:
        data = load_split(root, "test", size=size)
    except DataError:
        raise
    except (OSError, RuntimeError, ValueError) as e:
        raise DataError(f"Could not read {folder} ({str(e).strip()[:140]}).") from None
    data.images.flags.writeable = False  # shared by every session
    return _seen_grey(replace(data, key=f"folder:{root.resolve()}{_at(size)}",
                              title=f"test set in {folder}: {len(data):,} images"), grey)


def with_classes(images: ImageSet, classes: list[str]) -> tuple[ImageSet, str | None]:
    """``images`` labelled by the model's ``classes`` (``ImageSet.onto``), and None; or,
    when a class folder is not one of them, the set as it is and the sentence saying so
    (capitalised, plain text: show it with ``markdown.literal``)."""
    try:
        return images.onto(classes), None
    except DataError as e:
        text = str(e)
        return images, text[:1].upper() + text[1:]


def class_problem(images: ImageSet, classes: list[str]) -> str | None:
    """Why the labels of ``images`` mean nothing to a model of ``classes`` (one sentence),
    or None when they are its classes."""
    return None if images.classes == list(classes) else with_classes(images, classes)[1]


def train_folder(images: ImageSet) -> str | None:
    """The data folder of a test set that ``load_test_set`` read, when that folder holds a
    train split too (looked for cheaply: nothing is decoded)."""
    if not images.key.startswith("folder:"):
        return None
    root = Path(_KEY_TAIL.sub("", images.key.removeprefix("folder:")))
    if (root / TORCHVISION_FOLDER / "data_batch_1").is_file() or (root / "train").is_dir():
        return str(root)
    if root.suffix == ".npz" and root.is_file():
        try:
            with np.load(root, allow_pickle=False) as pack:
                return str(root) if "train_labels" in pack.files else None
        except (OSError, ValueError, zipfile.BadZipFile):
            return None
    return None


@st.cache_resource(show_spinner="Reading the training images (once for all sessions)…",
                   max_entries=2)
def load_train_set(folder: str, size: Size = 32) -> ImageSet:
    """The train split of a data folder (see ``train_folder``) at ``size``; raises
    DataError with one sentence."""
    try:
        data = load_split(Path(folder), "train", size=size)
    except DataError:
        raise
    except (OSError, RuntimeError, ValueError) as e:
        raise DataError(f"Could not read the training images of {folder} "
                        f"({str(e).strip()[:140]}).") from None
    data.images.flags.writeable = False  # shared by every session
    return replace(data, key=f"train:{folder}{_at(size)}",
                   title=f"training images in {folder}")


def default_data_folder() -> str:
    """What the sidebar's folder starts as: $CONVATTN_DATA, else the download folder once
    CIFAR-10 is there, else nothing (the bundled sample). A real path, as the allowed
    roots give it (``appkit.roots``), so that it is one of the folders the sidebar offers
    even when the operator's path goes through a symlink."""
    folder = Path(os.path.realpath(default_data()))
    if os.environ.get(ENV_DATA) or (folder / TORCHVISION_FOLDER).is_dir():
        return str(folder)
    return ""


def is_new_folder(folder: str) -> bool:
    """A folder named that does not exist yet: somewhere to download CIFAR-10 to, not an
    error (a .npz pack cannot be downloaded)."""
    root = Path(folder).expanduser()
    return bool(folder) and root.suffix != ".npz" and not root.exists()


@st.cache_resource(show_spinner=False, max_entries=8)
def _read_predictions(path: str, mtime: float) -> dict[str, np.ndarray]:
    return load_predictions(path)


def predictions_for_checkpoint(checkpoint: str | Path) -> tuple[dict[str, np.ndarray], Path] | None:
    """The checkpoint's shipped predictions file, if there is a readable one."""
    path = predictions_path(checkpoint)
    if not path.is_file():
        return None
    try:
        preds = _read_predictions(str(path), path.stat().st_mtime)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None
    if not PREDICTION_KEYS <= preds.keys() or preds["probs"].ndim != 2:
        return None
    return preds, path


def predictions_mtime(checkpoint: str | Path) -> float | None:
    """When the checkpoint's predictions file was last written (None: there is none), for
    the keys of results cached from it: a rewritten file must not be answered from them."""
    try:
        return predictions_path(checkpoint).stat().st_mtime
    except OSError:
        return None


def set_summary(preds: dict[str, np.ndarray]) -> dict[str, object]:
    """Accuracy over a whole predictions file, and per class."""
    labels, pred = preds["labels"], preds["probs"].argmax(axis=1)
    classes = [str(c) for c in preds["classes"]]
    per_class = {c: float((pred[labels == i] == i).mean() * 100) if (labels == i).any()
                 else float("nan") for i, c in enumerate(classes)}
    return {"count": len(labels), "accuracy": float((pred == labels).mean() * 100),
            "per_class": per_class, "source": str(preds.get("source", ""))}

"""Where the page's images come from: the bundled sample, the full test set, uploads.

Image sets and predictions files are read once per process (``st.cache_resource``) and
shared read-only by every session.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import streamlit as st

from convattn.data import DataError, ImageSet, load_split
from convattn.evaluate import load_predictions, predictions_path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_PATH = ROOT / "samples" / "cifar10-test-sample.npz"
ENV_DATA = "CONVATTN_DATA"
PREDICTION_KEYS = {"names", "labels", "probs", "classes"}


@st.cache_resource(show_spinner=False)
def load_sample(path: str = str(SAMPLE_PATH)) -> ImageSet:
    """The bundled test images; raises DataError with one sentence if they are unusable."""
    try:
        with np.load(path, allow_pickle=False) as f:
            images, labels = f["images"], f["labels"]
            classes, names = [str(c) for c in f["classes"]], [str(n) for n in f["names"]]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise DataError(f"The bundled sample {path} cannot be read ({type(e).__name__}): "
                        "make it with `python -m scripts.make_sample`, or name a test set "
                        "folder in the sidebar.") from None
    images.flags.writeable = False
    per_class = len(labels) // max(len(classes), 1)
    title = f"bundled sample: {len(labels):,} test images ({per_class} per class)"
    return ImageSet(images, labels.astype(np.int64), classes, names, key="sample", title=title)


@st.cache_resource(show_spinner="Reading the test set (once for all sessions)…")
def load_test_set(folder: str, download: bool = False) -> ImageSet:
    """The test split of an ImageFolder root, a .npz pack or torchvision's CIFAR-10.

    Raises DataError with one sentence; a failed download is turned into one too.
    """
    try:
        data = load_split(folder, "test", download=download)
    except DataError:
        raise
    except (OSError, RuntimeError, ValueError) as e:
        what = "download CIFAR-10 into" if download else "read"
        raise DataError(f"Could not {what} {folder} ({str(e).strip()[:140]}).") from None
    data.images.flags.writeable = False  # shared by every session
    return replace(data, key=f"folder:{Path(folder).resolve()}",
                   title=f"test set in {folder}: {len(data):,} images")


def default_data_folder() -> str:
    return os.environ.get(ENV_DATA, "")


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


def set_summary(preds: dict[str, np.ndarray]) -> dict[str, object]:
    """Accuracy over a whole predictions file, and per class."""
    labels, pred = preds["labels"], preds["probs"].argmax(axis=1)
    classes = [str(c) for c in preds["classes"]]
    per_class = {c: float((pred[labels == i] == i).mean() * 100) if (labels == i).any()
                 else float("nan") for i, c in enumerate(classes)}
    return {"count": len(labels), "accuracy": float((pred == labels).mean() * 100),
            "per_class": per_class, "source": str(preds.get("source", ""))}

"""Temperature scaling in the app: the temperatures a checkpoint's predictions file
stores (see ``convattn.files.predictions.calibration_arrays``), applied to a whole image set or to
one image; the calibration itself is ``convattn.trust.calibration``.

An image of the file is scaled with the T fitted on the other half of the file, so its own
label never touched its calibrated probabilities; anything else (an upload, an image of
another set) gets the T fitted on every image of the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from appkit import markdown
from appkit.loaded_model import HASH, Loaded
from appkit.set_results import rows_for
from appkit.sources import predictions_for_checkpoint, predictions_mtime
from convattn.files.data import ImageSet
from convattn.trust.calibration import Reliability, calibrated, cross_fit_temperature, reliability

KEYS = ("fold", "temperatures", "temperature")


@dataclass(frozen=True)
class Stored:
    """What a predictions file keeps for temperature scaling."""

    arrays: dict[str, np.ndarray]  # fold (N,), temperatures (2,), temperature ()
    names: np.ndarray  # (N,) the file's image names
    file: str  # the file's name, for people

    def row(self, name: str | None) -> int:
        """The row of the image ``name`` in the file, or -1."""
        hits = np.flatnonzero(self.names == name) if name is not None else []
        return int(hits[0]) if len(hits) else -1


def stored(loaded: Loaded) -> Stored | None:
    """The temperatures of the checkpoint's predictions file, when it has usable ones."""
    found = predictions_for_checkpoint(loaded.path)
    if not found:
        return None
    preds, path = found
    if not all(k in preds for k in KEYS):
        return None
    fold, ts, t = (np.asarray(preds[k]) for k in KEYS)
    if fold.shape != (len(preds["names"]),) or ts.shape != (2,) or t.shape != () \
            or not np.isin(fold, (0, 1)).all() \
            or not (np.isfinite([*ts, t]).all() and min(*ts, t) > 0):
        return None
    return Stored({"fold": fold, "temperatures": ts, "temperature": t},
                  np.asarray(preds["names"]).astype(str), Path(path).name)


def missing_help(loaded: Loaded) -> str:
    """One line: why the calibrated switch is off for ``loaded``, and how to fix it."""
    return (f"{markdown.literal(loaded.name)} has no predictions file with temperatures: "
            "`python -m convattn.evaluate` on the checkpoint writes one beside it.")


def image_probs(store: Stored, probs: np.ndarray, name: str | None
                ) -> tuple[np.ndarray, str]:
    """One image's probabilities (K,) temperature-scaled, and which T did it (Markdown)."""
    row = store.row(name)
    scaled = calibrated(probs[None], store.arrays, np.array([row]))[0]
    file, n = markdown.literal(store.file), len(store.names)
    if row < 0:
        t = float(store.arrays["temperature"])
        return scaled, (f"Temperature-scaled with T = {t:.3f}, fitted on all {n:,} images "
                        f"of {file} (this image is not among them).")
    t = float(store.arrays["temperatures"][1 - store.arrays["fold"][row]])
    return scaled, (f"Temperature-scaled with T = {t:.3f}, fitted on the half of the {n:,} "
                    f"images of {file} that does not hold this one, so its label played no "
                    "part.")


@dataclass(frozen=True)
class SetCalibration:
    before: Reliability
    after: Reliability
    temperatures: tuple[float, ...]  # the Ts applied, for people
    how: str  # where they came from (Markdown)


def set_calibration(loaded: Loaded, images: ImageSet, probs: np.ndarray
                    ) -> SetCalibration | None:
    """Reliability of the set's probabilities (``set_results.set_probs``) before and after
    temperature scaling: with the temperatures of the predictions file when it covers the
    set, else cross-fitted on the set itself; cached. None for a set too small to split in
    two."""
    return _set_calibration(loaded, images, predictions_mtime(loaded.path), probs)


# As label_doubts._ranking: the checkpoint, the set and the predictions file key the cache.
@st.cache_data(show_spinner=False, max_entries=16, hash_funcs=HASH)
def _set_calibration(loaded: Loaded, images: ImageSet, version: float | None,
                     _probs: np.ndarray) -> SetCalibration | None:
    labels = np.asarray(images.labels)
    store = stored(loaded)
    rows = rows_for(store.names, images) if store is not None else None
    if store is not None and rows is not None:
        after = calibrated(_probs, store.arrays, rows)
        used = sorted({float(t) for t in store.arrays["temperatures"][1 - store.arrays["fold"]
                                                                      [rows]]})
        how = (f"the temperatures stored in {markdown.literal(store.file)}, each image scaled "
               "with the one fitted on the half of the file without it")
    elif len(labels) >= 2:
        after, ts = cross_fit_temperature(labels, _probs)
        used = [float(t) for t in ts]
        how = ("temperatures fitted here on each random half of these images and applied to "
               "the other half, since no predictions file with temperatures covers them")
    else:
        return None
    return SetCalibration(reliability(labels, _probs), reliability(labels, after),
                          tuple(used), how)

"""Per-image predictions files (``<checkpoint>.predictions.npz``): index, image name, true
label, class probabilities and the temperatures fitted on them; written by
``python -m convattn.evaluate`` and read by the app instead of re-running the model.
Plain arrays, no pickles.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import Tensor

from convattn.files.checkpoint import atomic_write
from convattn.files.data import ImageSet
from convattn.trust.calibration import (
    cross_fit_temperature,
    fit_temperature,
    logits_from_probs,
    two_folds,
)


def predictions_path(checkpoint: str | Path, flip: bool = False) -> Path:
    """Where the predictions of ``checkpoint`` go; the app reads only the plain ones, since
    it shows the model without test-time augmentation."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + (".predictions-flip-tta.npz" if flip
                                                   else ".predictions.npz"))



def save_arrays(path: str | Path, **arrays: np.ndarray) -> Path:
    """np.savez_compressed to ``path`` atomically: a reader never sees half a file."""
    return atomic_write(path, lambda f: np.savez_compressed(f, **arrays))



def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """An .npz written by ``save_arrays`` as plain arrays (no pickles)."""
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}



def save_predictions(path: str | Path, data: ImageSet, probs: Tensor, source: str,
                     **extra: np.ndarray) -> Path:
    """The predictions file the app reads; ``extra`` holds e.g. the temperatures (see
    ``calibration_arrays``)."""
    return save_arrays(
        path,
        index=np.arange(len(data)),
        names=np.array(data.names),
        labels=np.asarray(data.labels),
        probs=probs.numpy().astype(np.float32),  # fp16 rounding can change the top class
        classes=np.array(data.classes),
        source=np.array(source),
        **extra,
    )



def calibration_arrays(labels: np.ndarray, probs: np.ndarray) -> dict[str, np.ndarray]:
    """What a predictions file keeps for temperature scaling: the two folds of the
    cross-fitting (``fold``), each fold's fitted T (``temperatures``: temperatures[f] was
    fitted on fold f and calibrates the other fold), and T fitted on every image
    (``temperature``, for images outside the file, such as uploads)."""
    _, temperatures = cross_fit_temperature(labels, probs)
    return {"fold": two_folds(len(labels)).astype(np.int8),
            "temperatures": np.asarray(temperatures, dtype=np.float64),
            "temperature": np.array(fit_temperature(labels, logits_from_probs(probs)))}



load_predictions = load_arrays

"""Add temperature scaling to predictions files written before evaluate stored it.

    python -m scripts.calibrate_predictions checkpoints/*.predictions.npz

Each file keeps its probabilities as they are (no model is run) and gains ``fold``,
``temperatures`` and ``temperature`` (see ``convattn.files.predictions.calibration_arrays``).
"""

from __future__ import annotations

import sys
import zipfile

import numpy as np

from convattn.files.predictions import calibration_arrays, load_predictions, save_arrays
from convattn.trust.calibration import calibrated, expected_calibration_error


def main(paths: list[str]) -> int:
    if not paths:
        print("error: name one or more predictions files (.predictions.npz).", file=sys.stderr)
        return 2
    for path in paths:
        try:
            pred = load_predictions(path)
            stored = calibration_arrays(pred["labels"], pred["probs"])
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            print(f"error: {path} is not a predictions file written by convattn.evaluate "
                  "(labels and probs); nothing was changed.", file=sys.stderr)
            return 2
        after = calibrated(pred["probs"], stored, np.arange(len(pred["probs"])))
        save_arrays(path, **(pred | stored))
        print(f"{path}: ECE {100 * expected_calibration_error(pred['labels'], pred['probs']):.2f}% "
              f"-> {100 * expected_calibration_error(pred['labels'], after):.2f}%, "
              f"T = {stored['temperatures'][0]:.3f} and {stored['temperatures'][1]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

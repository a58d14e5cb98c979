"""Inspect's out-of-distribution notice: said plainly when the image is unlike the
training data (the flag is ``convattn.trust.ood``'s), for uploads and test images alike.

A classifier answers with one of its classes whatever it is shown, so a confident answer
about a flat colour or a photo of no CIFAR-10 class means nothing; students should be told
so next to the prediction. Checkpoints without the flag's statistics show nothing here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from appkit import markdown
from appkit.loaded_model import HASH, Loaded
from convattn.registry import UnknownName
from convattn.trust import ood


@dataclass(frozen=True)
class Flag:
    score: float
    threshold: float
    flagged: bool
    method: str  # its label, for the small print


def message(n_classes: int) -> str:
    return (f"**This image looks unlike the training data.** The model can only answer "
            f"with its {n_classes} classes, so its confidence means little here.")


@st.cache_data(show_spinner=False, max_entries=64, hash_funcs=HASH)
def check(loaded: Loaded, pixels: np.ndarray) -> Flag | None:
    """The flag for one uint8 (H, W, 3) image, or None when the checkpoint carries no
    fitted flag (cached per checkpoint and image)."""
    fitted = ood.stored_fit(loaded.info)
    if fitted is None:
        return None
    try:
        scores, flagged = ood.out_of_distribution(loaded.model, loaded.info, pixels)
    except UnknownName:  # a method this version does not know: no flag rather than a crash
        return None
    return Flag(float(scores[0]), fitted.threshold, bool(flagged[0]),
                ood.METHODS.get(fitted.method, fitted.method))


def show(loaded: Loaded, pixels: np.ndarray) -> None:
    """A warning under the prediction when the image is flagged; nothing otherwise."""
    flag = check(loaded, pixels)
    if flag is None or not flag.flagged:
        return
    st.warning(message(len(loaded.classes)))
    st.caption(f"Out-of-distribution score {flag.score:.3g}, above the threshold "
               f"{flag.threshold:.3g} that 95% of the test images stay under "
               f"({markdown.literal(flag.method)}).")

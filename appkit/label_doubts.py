"""The app's doubts about labels: the known CIFAR-10 test label errors
(``convattn.trust.label_errors``) as badges, sentences and corrected accuracies, and
confident learning's ranking of any image set's labels (``convattn.trust.label_issues``),
cached per (checkpoint, image set).

A name in the known list counts only when the image carries the label the list says it
was given: a folder of someone else's images may reuse CIFAR-10's file names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import streamlit as st

from appkit import markdown
from appkit.loaded_model import HASH, Loaded
from appkit.sources import predictions_mtime
from convattn.files.data import ImageSet
from convattn.trust.label_errors import corrected_accuracy, label_error_lookup

if TYPE_CHECKING:
    from convattn.trust.label_issues import LabelIssues

CITATION = "Northcutt et al. 2021"


@st.cache_data(show_spinner=False, max_entries=16, hash_funcs=HASH)
def known(images: ImageSet) -> dict[int, dict[str, Any]]:
    """The known-error entry of every image of ``images`` that has one, by image index."""
    found = label_error_lookup(images.names)
    return {i: found[name] for i, name in enumerate(images.names)
            if name in found and images.classes[images.labels[i]] == found[name]["given"]}


def entry_for(name: str | None, label: str | None) -> dict[str, Any] | None:
    """The known-error entry of one image named ``name`` and labelled ``label``, if any."""
    if name is None or label is None:
        return None
    e = label_error_lookup([name]).get(name)
    return e if e is not None and e["given"] == label else None


def validated(images: ImageSet) -> np.ndarray:
    """(N,) bool: the images that are validated label errors (fewer than 3 of 5 workers
    chose the given label)."""
    mask = np.zeros(len(images), dtype=bool)
    mask[[i for i, e in known(images).items() if e["validated"]]] = True
    return mask


def _workers(e: dict[str, Any]) -> int:
    return sum(e["votes"].values())


def badge(e: dict[str, Any]) -> str:
    """A gallery thumbnail's short note (Markdown) on a flagged image."""
    votes, n = e["votes"], _workers(e)
    given, suggested = markdown.literal(e["given"]), markdown.literal(e["suggested"])
    if e["validated"]:
        return f":orange-badge[label error] {votes['guessed']} of {n} saw {suggested}"
    return f":gray-badge[label upheld] {votes['given']} of {n} saw {given}"


def sentence(e: dict[str, Any]) -> str:
    """What the known list says about one image, in a sentence (Markdown)."""
    votes, n = e["votes"], _workers(e)
    given, suggested = markdown.literal(e["given"]), markdown.literal(e["suggested"])
    if not e["validated"]:
        return (f"Label upheld: confident learning doubted the label {given}, but "
                f"{votes['given']} of {n} workers saw {given} ({votes['guessed']} saw "
                f"{suggested}, {votes['both']} both, {votes['neither']} neither; {CITATION}).")
    fix = (f"The label should be **{suggested}**." if e["correctable"] else
           "No other class has a majority, so there is no label to put in its place.")
    return (f"**Known label error**: labelled {given}, {votes['guessed']} of {n} workers saw "
            f"{suggested} ({votes['given']} saw {given}, {votes['both']} both, "
            f"{votes['neither']} neither; {CITATION}). {fix}")


def badges(images: ImageSet, indices: np.ndarray) -> dict[int, str]:
    """The gallery badges of those ``indices`` that are in the known list."""
    found = known(images)
    return {int(i): badge(found[int(i)]) for i in indices if int(i) in found}


def accuracies(images: ImageSet, probs: np.ndarray) -> dict[str, Any] | None:
    """``corrected_accuracy`` for a set that holds known errors; None for other sets."""
    if not known(images):
        return None
    try:
        return corrected_accuracy(images.names, images.labels, probs, images.classes)
    except ValueError:  # the names are CIFAR-10's but the labels are not: not its test set
        return None


def ranking(loaded: Loaded, images: ImageSet, probs: np.ndarray) -> LabelIssues:
    """Confident learning's ranking of the labels of ``images`` from the probabilities of
    ``loaded`` (``set_results.set_probs``), cached. Raises ValueError with one sentence."""
    return _ranking(loaded, images, predictions_mtime(loaded.path), probs)


# The probabilities are what the checkpoint and its predictions file (by its mtime) say of
# the image set, so those key the cache and the (N, K) array is not hashed.
@st.cache_data(show_spinner="Ranking the labels with cleanlab…", max_entries=16,
               hash_funcs=HASH)
def _ranking(loaded: Loaded, images: ImageSet, version: float | None, _probs: np.ndarray
             ) -> LabelIssues:
    # Here, not at the top: cleanlab takes seconds to import, and only one page needs it.
    from convattn.trust.label_issues import rank_label_issues

    return rank_label_issues(np.asarray(images.labels), _probs)

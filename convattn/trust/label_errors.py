"""The known label errors of the CIFAR-10 test set, and accuracy measured around them.

The list is derived from cleanlab/label-errors (Apache License 2.0; the LICENSE ships as
``convattn/resources/LICENSE-label-errors``): Northcutt, Athalye and Mueller (2021),
"Pervasive Label Errors in Test Sets Destabilize Machine Learning Benchmarks". Confident
learning flagged 275 test images; 5 crowd workers then voted on each. An image is a
*validated* error when fewer than 3 of them chose the given label (54 images), and
*correctable* when, besides, at least 3 chose the suggested label (18 images): only then
is there a label to put in the given one's place.

Images are named as in the JPEG copy (``test/<class>/NNNN.jpg``, numbered in canonical
order within each class; ``scripts/make_label_errors.py`` derives the names once) and, for
torchvision's CIFAR-10, as ``test/<canonical index>``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

RESOURCE = "cifar10_label_errors.json"
ATTRIBUTION = ("Known CIFAR-10 test label errors: cleanlab/label-errors (Apache-2.0), "
               "Northcutt, Athalye and Mueller 2021.")
VALIDATED_BELOW = 3  # fewer given-label votes than this (of 5) make a validated error
MAJORITY = 3  # this many votes (of 5) for the suggested class make it the corrected label


@lru_cache(maxsize=1)
def _rows() -> tuple[list[str], tuple[tuple, ...]]:
    text = resources.files("convattn").joinpath("resources", RESOURCE).read_text()
    data = json.loads(text)
    return data["classes"], tuple(tuple(r) for r in data["rows"])


def known_label_errors() -> list[dict[str, Any]]:
    """The 275 flagged CIFAR-10 test images, in canonical order, one dict each: ``name``
    ("test/<class>/NNNN.jpg"), ``index`` (canonical test index), ``given`` and
    ``suggested`` (class names), ``votes`` (of 5 workers: given, guessed, both, neither),
    ``validated`` (votes["given"] < 3) and ``correctable`` (validated, and >= 3 votes for
    the suggested class). The dicts are new on every call: callers may change them."""
    classes, rows = _rows()
    entries = []
    for index, name, given, suggested, v_given, v_guessed, v_both, v_neither in rows:
        votes = {"given": v_given, "guessed": v_guessed, "both": v_both,
                 "neither": v_neither}
        validated = v_given < VALIDATED_BELOW
        entries.append({
            "name": name, "index": index, "given": classes[given],
            "suggested": classes[suggested], "votes": votes, "validated": validated,
            "correctable": validated and v_guessed >= MAJORITY,
        })
    return entries


def _canonical(name: str) -> str:
    return str(name).replace("\\", "/")  # names made on Windows use backslashes


def label_error_lookup(names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The known-error entries of those ``names`` that have one, keyed by the name as
    given. Names may be JPEG-copy names or torchvision ones ("test/<index>")."""
    by_name: dict[str, dict[str, Any]] = {}
    for e in known_label_errors():
        by_name[e["name"]] = e
        by_name[f"test/{e['index']}"] = e
    return {n: by_name[c] for n in names if (c := _canonical(n)) in by_name}


def corrected_accuracy(names: Sequence[str], labels: Sequence[int] | np.ndarray,
                       preds: Sequence[int] | np.ndarray, classes: Sequence[str]
                       ) -> dict[str, Any]:
    """Accuracy (percent) three ways: as labelled; with the correctable errors among
    ``names`` given their suggested label; and with the validated errors left out.

    ``preds`` are predicted class indices (N,) or probabilities (N, K). The counts say
    how many images each figure rests on: ``count``, ``known`` (flagged images present),
    ``validated``, ``corrected``, ``count_without_errors``, and how many predictions the
    correction turned right (``fixed``) or wrong (``broken``).
    """
    labels = np.asarray(labels)
    preds = np.asarray(preds)
    if preds.ndim == 2:
        preds = preds.argmax(1)
    if labels.ndim != 1 or preds.ndim != 1 or not len(names) == len(labels) == len(preds):
        raise ValueError(f"names, labels and preds must be one per image; got {len(names)} "
                         f"names, labels of shape {labels.shape}, preds of shape "
                         f"{preds.shape}.")
    if len(labels) == 0:
        raise ValueError("there are no images to measure accuracy on.")
    for what, a in (("labels", labels), ("preds", preds)):
        if a.size and (a.min() < 0 or a.max() >= len(classes)):
            raise ValueError(f"{what} must be class indices from 0 to {len(classes) - 1}; "
                             f"got values from {a.min()} to {a.max()}.")
    found = label_error_lookup(names)
    corrected = labels.copy()
    keep = np.ones(len(labels), dtype=bool)
    known = validated = n_corrected = 0
    for i, name in enumerate(names):
        e = found.get(name)
        if e is None:
            continue
        missing = {e["given"], e["suggested"]} - set(classes)
        if missing:
            raise ValueError(f"{name} is a known CIFAR-10 label error, but the classes "
                             f"{list(classes)} lack {sorted(missing)}.")
        if labels[i] != list(classes).index(e["given"]):
            # The same name labelled otherwise: this is not the canonical test set.
            raise ValueError(f"{name} is labelled {classes[labels[i]]}, but CIFAR-10's test "
                             f"set labels it {e['given']}: these are not its test images.")
        known += 1
        if e["validated"]:
            validated += 1
            keep[i] = False
        if e["correctable"]:
            corrected[i] = list(classes).index(e["suggested"])
            n_corrected += 1
    right, right_corrected = preds == labels, preds == corrected
    return {
        "accuracy": 100.0 * float(right.mean()),
        "accuracy_corrected": 100.0 * float(right_corrected.mean()),
        "accuracy_without_errors": (100.0 * float(right[keep].mean()) if keep.any()
                                    else float("nan")),
        "count": len(labels),
        "known": known,
        "validated": validated,
        "corrected": n_corrected,
        "count_without_errors": int(keep.sum()),
        "fixed": int((right_corrected & ~right).sum()),
        "broken": int((right & ~right_corrected).sum()),
    }

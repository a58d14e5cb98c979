"""Galleries of test images: choosing and ordering them (numpy), and drawing them as a
grid whose every image has a button that opens it on the Inspect page.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import streamlit as st

from appkit import label_doubts, pictures, session
from convattn.files.data import ImageSet

ORDERS = {
    "confidence": "most confident first",
    "loss": "highest loss first (−log p of the true class)",
    "index": "test-set order",
}
THUMB = 96  # px side of a thumbnail: 3 screen pixels per CIFAR-10 image pixel
COLUMNS = 8
FOCUS = 20  # classes a confusion matrix or per-class chart shows at most


def confusion(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) counts, rows the true class and columns the predicted one."""
    return np.bincount(labels * num_classes + predicted,
                       minlength=num_classes**2).reshape(num_classes, num_classes)


def focus(counts: np.ndarray, n: int = FOCUS) -> np.ndarray:
    """The classes (indices, in order) a confusion matrix of (K, K) ``counts`` shows: all K
    up to ``n``; beyond, the ``n`` most confused (images taken for another class plus
    images of another class taken for it), then, while there is room, those with the most
    images. Readable at 100 or 1,000 classes, where every cell cannot be."""
    k = len(counts)
    if k <= n:
        return np.arange(k)
    off = counts - np.diag(np.diag(counts))
    confused = off.sum(axis=0) + off.sum(axis=1)
    seen = counts.sum(axis=1) + counts.sum(axis=0)
    order = np.lexsort((np.arange(k), -seen, -confused))  # most confused, then most seen
    return np.sort(order[:n])


def worst(per_class: np.ndarray, present: np.ndarray, n: int = FOCUS) -> np.ndarray:
    """The classes (indices, in order) a per-class accuracy chart shows: those with images
    (``present``), all of them up to ``n``, else the ``n`` least accurate."""
    idx = np.flatnonzero(present)
    if len(idx) <= n:
        return idx
    return np.sort(idx[np.argsort(per_class[idx], kind="stable")[:n]])


def thumbnail(image: np.ndarray, box: int = THUMB) -> np.ndarray:
    """(h, w, 3) uint8 to show in a ``box`` px square: enlarged by the largest whole
    number of screen pixels per pixel that fits (crisp squares), or, for an image larger
    than the box (a 224x224 card's), shrunk smoothly to fit it."""
    h, w = image.shape[:2]
    factor = box // max(h, w)
    if factor >= 1:
        return image.repeat(factor, axis=0).repeat(factor, axis=1)
    return pictures.fit_box(image, box)[0]


def loss(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cross-entropy of each image, −log p(true class), (N,)."""
    p = probs[np.arange(len(labels)), labels].astype(np.float64)
    return -np.log(np.clip(p, 1e-12, 1.0))


def choose(probs: np.ndarray, labels: np.ndarray, true: int | None = None,
           predicted: int | None = None, only_wrong: bool = False,
           order: str = "confidence") -> np.ndarray:
    """Indices of the images with the given true and predicted class (None: any), in
    ``order`` (a key of ``ORDERS``); ties keep test-set order."""
    pred = probs.argmax(axis=1)
    keep = np.ones(len(labels), dtype=bool)
    if true is not None:
        keep &= labels == true
    if predicted is not None:
        keep &= pred == predicted
    if only_wrong:
        keep &= pred != labels
    idx = np.flatnonzero(keep)
    if order == "confidence":
        score = -probs[idx, pred[idx]]
    elif order == "loss":
        score = -loss(probs[idx], labels[idx])
    elif order == "index":
        return idx
    else:
        raise ValueError(f"unknown order {order!r}; expected one of {', '.join(ORDERS)}")
    return idx[np.argsort(score, kind="stable")]


def clicked_point(chart_state: Any) -> dict[str, Any] | None:
    """The point clicked in a plotly chart drawn with ``on_select``, from its
    session-state value (``{"selection": {"points": [...]}}``), or None."""
    try:
        points = chart_state["selection"]["points"]
    except (KeyError, TypeError):
        return None
    return points[0] if points else None


def page_of(indices: np.ndarray, key: str, per_page: int = 32) -> np.ndarray:
    """The slice of ``indices`` on the page chosen with a number input under ``key``
    (pop ``key`` from the session state to go back to page 1). The number is kept while
    the user looks at an image in Inspect."""
    pages = max(1, -(-len(indices) // per_page))
    if pages == 1:
        return indices
    if st.session_state.get(key, 1) > pages:
        st.session_state.pop(key)
    page = st.number_input(f"Page (1 to {pages}, {per_page} images each)", 1, pages,
                           key=key, persist_state="session")
    start = (int(page) - 1) * per_page
    return indices[start:start + per_page]


def grid(images: np.ndarray, indices: np.ndarray, captions: list[str], key: str,
         badges: Mapping[int, str] | None = None) -> int | None:
    """Thumbnails of ``images[indices]``, each in its own box with its caption, its badge
    in ``badges`` (Markdown, by index) if it has one, and an "Inspect" button; returns the
    index whose button was pressed, if any."""
    clicked = None
    # A browser scales a thumbnail to its column's width, and to the screen's pixel
    # density, smoothly: that blurs the pixels that the nearest-neighbour enlargement made
    # square. Scaling the thumbnails of this grid by nearest neighbour too keeps them crisp.
    # Each image's box is padded thinly: eight boxes a row leave little room for a
    # thumbnail and its badge.
    st.html(f"<style>.st-key-{key}_grid img {{ image-rendering: pixelated; }} "
            f".st-key-{key}_grid [class*='st-key-{key}_cell_'] {{ padding: 6px; }}</style>")
    with st.container(key=f"{key}_grid"):
        for start in range(0, len(indices), COLUMNS):
            columns = st.columns(COLUMNS)
            for column, i, text in zip(columns, indices[start:start + COLUMNS],
                                       captions[start:start + COLUMNS]):
                # One bordered box per image: a badge that only some images have lies
                # inside its own image's box, under its caption, and cannot be read as the
                # next row's (as it was when it hung loose under the button).
                with column.container(border=True, key=f"{key}_cell_{i}"):
                    # PNG: the exact pixels (Streamlit would send a JPEG).
                    st.image(thumbnail(images[i]), width=THUMB, output_format="PNG")
                    st.caption(text)
                    if badges and int(i) in badges:
                        st.caption(badges[int(i)])
                    if st.button("Inspect", key=f"{key}_{i}", help=f"Open image #{i} on the "
                                 "Inspect page"):
                        clicked = int(i)
    return clicked


def inspectable(images: ImageSet, shown: np.ndarray, captions: list[str], key: str) -> None:
    """The grid of a page's gallery, known CIFAR-10 label errors badged; a click on an
    image's button opens it on the Inspect page (with a link back here)."""
    clicked = grid(images.images, shown, captions, key=key,
                   badges=label_doubts.badges(images, shown))
    if clicked is not None:
        session.open_in_inspect(clicked)

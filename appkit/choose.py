"""The sidebar of the teaching pages (Learn, Attention statistics, Faithfulness, Sanity
check): checkpoint, test set, image and query.

The widgets use the same keys as the Inspect page, and ``keep`` carries their values
from page to page (Streamlit forgets a widget's value when a page without it runs), so a
checkpoint, image or query chosen on one page is still chosen on the next.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st
from streamlit.delta_generator import DeltaGenerator
from streamlit_image_coordinates import streamlit_image_coordinates

from convattn.checkpoint import CheckpointError
from convattn.data import DataError
from convattn.images import FITS, ImageError, decode_image
from convattn.models import describe_model

from . import render, sources, state, widgets

SIZE = 32
SHARED_KEYS = ("checkpoint", "data_folder", "source", "class_filter", "only_wrong", "module",
               "fit", "upload_label")


@dataclass
class Picked:
    """The image a page works on."""

    pixels: np.ndarray  # (32, 32, 3) uint8
    label: int | None  # true class in the model's classes, when known
    caption: str


def keep() -> None:
    """Carry the shared widgets' values over from the page that ran before this one."""
    for key in SHARED_KEYS:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def model(notice: DeltaGenerator) -> state.Loaded:
    """Checkpoint choice and its one-line description; stops the page on a bad file."""
    st.header("Model")
    options = state.checkpoint_options()
    if not options:
        notice.error(f"No checkpoint was found in checkpoints/: train one with "
                     f"`{state.TRAIN_HINT}` and reload this page.")
        st.stop()
    if st.session_state.get("checkpoint") not in options:
        st.session_state.pop("checkpoint", None)
    path = st.selectbox("Checkpoint", options, format_func=state.checkpoint_label,
                        key="checkpoint")
    try:
        loaded = state.load(path)
    except CheckpointError as e:
        notice.error(f"{e} Choose another checkpoint in the sidebar.")
        st.stop()
    acc = loaded.info.get("test_accuracy")
    acc_text = f"{acc:.1f}% test accuracy" if acc is not None else "accuracy not recorded"
    st.markdown(f"**{loaded.info['arch']}**: {describe_model(loaded.info['arch'])}.  \n"
                f"{acc_text} · runs on **{state.device_label()}**")
    return loaded


def test_set() -> sources.ImageSet:
    """The full test set named in the sidebar (or $CONVATTN_DATA), else the bundled sample."""
    folder = st.text_input("Full test set (folder)", value=sources.default_data_folder(),
                           key="data_folder", placeholder="e.g. ../shared/data/cifar10-jpeg",
                           help="An ImageFolder root holding test/<class>/*.jpg or a .npz "
                                "pack. Empty: the bundled sample.").strip()
    images = None
    if folder:
        try:
            images = sources.load_test_set(folder)
        except DataError as e:
            st.error(f"{e} Using the bundled sample instead.")
    if images is None:
        try:
            images = sources.load_sample()
        except DataError as e:
            st.error(str(e))
            st.stop()
    st.caption(f"Using the {images.title}.")
    return images


def _random_position(n: int) -> None:
    widgets.set_value("position", int(np.random.default_rng().integers(n)))


def _reset_position() -> None:
    widgets.set_value("position", 0)


def image(loaded: state.Loaded, images: sources.ImageSet, notice: DeltaGenerator) -> Picked:
    """A test image by class and number (or the next misclassified one), or an upload."""
    st.header("Image")
    kind = st.radio("Source", ["Test images", "Upload"], horizontal=True, key="source")
    if kind == "Upload":
        return _upload(loaded, notice)
    cls = st.selectbox("Class", ["all classes", *images.classes], key="class_filter",
                       on_change=_reset_position)
    only_wrong = st.checkbox("Only misclassified images", key="only_wrong",
                             on_change=_reset_position)
    candidates = np.arange(len(images))
    if cls != "all classes":
        candidates = candidates[images.labels == images.classes.index(cls)]
    if only_wrong:
        found = sources.predictions_for_checkpoint(loaded.key[0])
        predicted = sources.predicted_for_set(images, found[0] if found else None)
        if predicted is None:
            predicted = state.predict_set(loaded, images)
        wrong = candidates[predicted[candidates] != images.labels[candidates]]
        if len(wrong):
            candidates = wrong
        else:
            st.info("The model gets every one of these images right.")
    n = len(candidates)
    position = widgets.settable_number(f"Image number (0 to {n - 1})", 0, n - 1, "position", 0)
    st.button("Random image", on_click=_random_position, args=(n,), key="random_image")
    index = int(candidates[position])
    name = images.classes[images.labels[index]]
    label = loaded.classes.index(name) if name in loaded.classes else None
    return Picked(images.images[index], label,
                  f"{images.names[index]} (#{index}) · true class **{name}**")


def _upload(loaded: state.Loaded, notice: DeltaGenerator) -> Picked:
    upload = st.file_uploader("Image file: PNG, JPEG, WebP, BMP or GIF", key="upload")
    fit = st.radio("Fit to 32x32", FITS, horizontal=True, key="fit", format_func={
        "resize": "Resize whole image", "crop": "Center-crop to square"}.get)
    true = st.selectbox("True class, if you know it", ["unknown", *loaded.classes],
                        key="upload_label")
    if upload is None:
        notice.info("Upload an image in the sidebar: the model sees it shrunk to 32x32 pixels.")
        st.stop()
    try:
        decoded = decode_image(upload.getvalue(), upload.name, SIZE, fit)
    except ImageError as e:
        notice.error(str(e))
        st.stop()
    label = None if true == "unknown" else loaded.classes.index(true)
    return Picked(decoded.pixels, label, f"{upload.name}: {decoded.describe(fit)}")


def module(names: list[str], grids: dict[str, tuple[int, int]],
           where: DeltaGenerator | None = None) -> str:
    """Which attention module to look at (the Inspect page's choice carries over)."""
    where = where or st
    if st.session_state.get("module") not in names:
        st.session_state.pop("module", None)
    return where.selectbox("Attention module", names, key="module",
                           format_func=lambda n: f"{n} ({grids[n][0]}x{grids[n][1]} positions)")


def _on_click() -> None:
    value = st.session_state.get("teaching_click")
    if value and value.get("width") and value.get("height"):
        widgets.set_value("query_row", int(value["y"] * SIZE / value["height"]))
        widgets.set_value("query_col", int(value["x"] * SIZE / value["width"]))


def query(picture: np.ndarray, grid: tuple[int, int], side: int = 288,
          caption: str = "") -> tuple[tuple[int, int], tuple[int, int], int]:
    """A clickable enlarged ``picture`` (side x side x 3) plus row and column inputs.

    Returns the query pixel (row, col) in the 32x32 input, its cell in the module's
    grid, and the cell's row-major index. The query is shared with the Inspect page.
    """
    h, w = grid
    box = st.container()
    a, b = st.columns(2)
    with a:
        row = widgets.settable_number("Query row", 0, SIZE - 1, "query_row", SIZE // 2)
    with b:
        col = widgets.settable_number("Query column", 0, SIZE - 1, "query_col", SIZE // 2)
    cell = (row * h // SIZE, col * w // SIZE)
    with box:
        streamlit_image_coordinates(render.mark_query(picture, (row, col), cell, grid),
                                    key="teaching_click", on_click=_on_click, width=side,
                                    cursor="crosshair")
        if caption:
            st.caption(caption)
    return (row, col), cell, cell[0] * w + cell[1]

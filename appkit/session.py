"""What the pages share through st.session_state: the checkpoint, the test set, the image.

Streamlit drops a widget's value when the user opens a page that does not draw that
widget. So each shared choice lives in a plain session-state entry, under the Inspect
page's own widget key where it has one ("checkpoint", "data_folder"): another page reads
it (also straight from the Inspect page's widget), keeps it as a plain entry, draws its
own widget from it and writes changes back. The Inspect page's widgets then start from
the same entries when the user returns.

The image is shared by its name (e.g. "test/cat/0001.jpg"), which finds the same picture
in the bundled sample and in the full test set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from convattn.checkpoint import CheckpointError
from convattn.data import DataError
from convattn.models import describe_model

from . import sources, state, widgets

CHECKPOINT = "checkpoint"  # path of the checkpoint, as in the Inspect page's selectbox
DATA_FOLDER = "data_folder"  # the full test set's folder, "" for the bundled sample
IMAGE_NAME = "image_name"  # name of the test image last shown
INSPECT_PAGE = "app.py"
# The Inspect page's widgets that say which test image its "position" counts in.
INSPECT_CHOICE = ("source", "class_filter", "only_wrong")


def keep() -> None:
    """Call first on every page: keeps the shared choices, and the Inspect page's image
    choice, alive while the user is on a page that does not draw their widgets."""
    for key in (CHECKPOINT, DATA_FOLDER, *INSPECT_CHOICE):
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def shared(key: str, default: Any) -> Any:
    """The shared value under ``key``, kept as a plain entry so that it outlives pages
    that do not draw its widget."""
    value = st.session_state.get(key, default)
    st.session_state[key] = value
    return value


def bound(widget: Callable[..., Any], key: str, default: Any, *args: Any, **kwargs: Any
          ) -> Any:
    """Draw ``widget(*args, **kwargs)`` showing the shared value under ``key``; the
    user's changes are written back to ``key``."""
    value = shared(key, default)
    widget_key = f"{key}__widget"
    st.session_state[widget_key] = value

    def changed() -> None:
        st.session_state[key] = st.session_state[widget_key]

    return widget(*args, key=widget_key, on_change=changed, **kwargs)


def choose_checkpoint(notice: DeltaGenerator, key: str = CHECKPOINT,
                      label: str = "Checkpoint", default: str | None = None) -> state.Loaded:
    """A sidebar checkpoint choice bound to ``key`` and the loaded model; a missing or
    unreadable checkpoint stops the page with one sentence in ``notice``."""
    options = state.checkpoint_options()
    if not options:
        notice.error(f"No checkpoint was found in checkpoints/: train one with "
                     f"`{state.TRAIN_HINT}` (or set {state.ENV_CHECKPOINT} to a checkpoint "
                     "file) and reload this page.")
        st.stop()
    first = default if default in options else options[0]
    if st.session_state.get(key) not in options:
        st.session_state[key] = first
    path = bound(st.selectbox, key, first, label, options, format_func=state.checkpoint_label)
    try:
        loaded = state.load(path)
    except CheckpointError as e:
        notice.error(f"{e} Choose another checkpoint in the sidebar.")
        st.stop()
    return loaded


def describe(loaded: state.Loaded) -> str:
    """One line on a loaded checkpoint: architecture, accuracy, device."""
    info = loaded.info
    acc = info.get("test_accuracy")
    acc_text = f"{acc:.1f}% test accuracy" if acc is not None else "test accuracy not recorded"
    return (f"**{info['arch']}**: {describe_model(info['arch'])}.  \n"
            f"{acc_text} · runs on **{state.device_label()}**")


def choose_test_set() -> sources.ImageSet:
    """The full test set named in the sidebar (shared with the Inspect page), or the
    bundled sample when none is named or it cannot be read (saying why)."""
    folder = bound(st.text_input, DATA_FOLDER, sources.default_data_folder(),
                   "Full test set (folder)", placeholder="e.g. ../shared/data/cifar10-jpeg",
                   help="An ImageFolder root holding test/<class>/*.jpg, a .npz pack made "
                        "by `python -m convattn.data pack`, or torchvision's CIFAR-10 "
                        f"folder. Empty: the bundled sample. Also read from "
                        f"${sources.ENV_DATA}.").strip()
    if folder:
        try:
            return sources.load_test_set(folder)
        except DataError as e:
            st.error(f"{e} Using the bundled sample instead.")
    try:
        return sources.load_sample()
    except DataError as e:
        st.error(str(e))
        st.stop()


def set_caption(images: sources.ImageSet) -> str:
    """Says which image set a page shows."""
    if images.key == "sample":
        return (f"Showing the {images.title}. Name the full test set in the sidebar to see "
                "all of it.")
    return f"Showing the {images.title}."


def image_index(images: sources.ImageSet) -> int:
    """Index in ``images`` of the shared image (0 when it is not in this set)."""
    name = st.session_state.get(IMAGE_NAME)
    try:
        return images.names.index(name)
    except ValueError:
        return 0


def remember_image(images: sources.ImageSet, index: int) -> None:
    """Make test image ``index`` the shared image (the Inspect page calls this)."""
    st.session_state[IMAGE_NAME] = images.names[int(index)]


def select_image(images: sources.ImageSet, index: int) -> None:
    """Make test image ``index`` the shared image, also on the Inspect page."""
    remember_image(images, index)
    st.session_state.update(source="Test images", class_filter="all classes",
                            only_wrong=False)
    widgets.set_value("position", int(index))


def choose_image(images: sources.ImageSet) -> int:
    """A sidebar number input and a Random button for the shared test image."""
    n = len(images)
    if st.session_state.pop("image_random", False):
        select_image(images, int(np.random.default_rng().integers(n)))
    index = image_index(images)
    remember_image(images, index)
    widget_key = "image_number__widget"
    st.session_state[widget_key] = index

    def changed() -> None:
        select_image(images, int(st.session_state[widget_key]))

    st.number_input(f"Test image number (0 to {n - 1})", 0, n - 1, step=1, key=widget_key,
                    on_change=changed)
    st.button("Random image", key="image_random_button", width="stretch",
              on_click=lambda: st.session_state.update(image_random=True))
    return index


def image_caption(images: sources.ImageSet, index: int) -> str:
    return (f"{images.names[index]} (#{index}) · true class "
            f"**{images.classes[images.labels[index]]}**")


def open_in_inspect(images: sources.ImageSet, index: int) -> None:
    """Show test image ``index`` on the Inspect page, with the same checkpoint and set."""
    select_image(images, index)
    st.switch_page(INSPECT_PAGE)

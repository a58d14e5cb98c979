"""The sidebar every page shares: the model, the image to look at, the test set.

app.py draws it once per run, before the page (``draw``): its widgets are then the same
widgets on every page, so what the user chose stays chosen from page to page. The page
gets the results from ``appkit.session.current()``. What keeps a page from showing
anything (no checkpoint, an upload still missing) is raised as ``Missing``: one sentence
that the page shows under its title.

A page that needs no image (Misclassifications) or nothing of the sidebar (Training)
does not draw those widgets, and Streamlit forgets the value of a widget that a run does
not draw, so each one here is kept with ``persist_state="session"``. The image number
and the query live in plain entries (see ``widgets``), an uploaded image in
``KEPT_UPLOAD``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from convattn.checkpoint import CheckpointError, OutputError
from convattn.data import DataError
from convattn.images import FITS, ImageError, decode_image
from convattn.models import describe_model

from . import analysis, render, setwork, sources, state, widgets
from .pages import Uses

SIZE = analysis.SIZE
FIT_LABELS = {"resize": "Resize whole image", "crop": "Center-crop to square"}
KEPT_UPLOAD = "kept_upload"  # session state: (file name, bytes) of the uploaded image
PICK = "picked_image"  # session state: a test image to show, see ``pick``
DOWNLOADED = "downloaded_to"  # session state: the folder CIFAR-10 was just downloaded into


class Missing(Exception):
    """What the sidebar could not choose, as one sentence for the page."""

    def __init__(self, message: str, level: str = "error") -> None:
        super().__init__(message)
        self.level = level  # "error", or "info" for a step the user has still to take

    def show(self, where: DeltaGenerator) -> None:
        (where.info if self.level == "info" else where.error)(str(self))


@dataclass
class Selection:
    pixels: np.ndarray  # (32, 32, 3) uint8, what the model sees
    label: int | None  # true class index in the model's classes, when known
    caption: str
    original: np.ndarray | None = None  # an upload as it came, for comparison
    name: str | None = None  # a test image's name in its set ("test/cat/0001.jpg")
    index: int | None = None  # and its index there


@dataclass
class Shared:
    """What the sidebar chose for this run's page; a part not drawn, or that failed, is
    None, and ``problem`` says why."""

    loaded: state.Loaded | None = None
    images: sources.ImageSet | None = None
    preds: dict | None = None  # the checkpoint's predictions file for the full test set
    selection: Selection | None = None
    problem: Missing | None = None
    after_model: DeltaGenerator | None = None  # room under the model for a page's own
    notice: DeltaGenerator | None = None  # under the page's title, see session.current

    def image(self) -> Selection:
        """The chosen image; without one (an upload still missing) the page says why in
        ``notice`` and stops here."""
        if self.selection is None:
            if self.problem is not None:
                self.problem.show(self.notice)
            st.stop()
        return self.selection


def _take_upload() -> None:
    """Keep a newly uploaded checkpoint and select it (a callback: it runs before the
    Checkpoint box is drawn, so it may set that box's value)."""
    upload = st.session_state.get("checkpoint_upload")
    if upload is None:
        return
    try:
        path = state.store_upload(upload.name, upload.getvalue())
    except (CheckpointError, OutputError) as e:
        st.session_state["checkpoint_upload_error"] = str(e)
        return
    uploads = st.session_state.setdefault(state.UPLOADS, [])
    if path not in uploads:
        uploads.append(path)
    st.session_state["checkpoint"] = path


def model_section() -> state.Loaded:
    st.header("Model")
    options = state.checkpoint_options()
    if not options:
        raise Missing(f"No checkpoint was found in checkpoints/: train one with "
                      f"`{state.TRAIN_HINT}` (or set {state.ENV_CHECKPOINT} to a checkpoint "
                      "file) and reload this page.")
    path = st.selectbox("Checkpoint", options, format_func=state.checkpoint_label,
                        key="checkpoint", persist_state="session")
    with st.expander("Use your own checkpoint"):
        st.file_uploader(
            "A checkpoint written by `convattn-train` (.pt)", type=["pt"],
            key="checkpoint_upload", on_change=_take_upload,
            help="Loaded weights-only: nothing stored in the file is run. It is listed "
                 "under Checkpoint for this browser session.")
        failed = st.session_state.pop("checkpoint_upload_error", None)
        if failed:
            st.error(render.literal(failed))
    try:
        loaded = state.load(path)
    except CheckpointError as e:
        raise Missing(f"{render.literal(e)} Choose another checkpoint in the sidebar.") from None
    info = loaded.info
    acc = info.get("test_accuracy")
    acc_text = f"{acc:.1f}% test accuracy" if acc is not None else "test accuracy not recorded"
    st.markdown(f"**{info.arch}**: {describe_model(info.arch)}.  \n"
                f"{acc_text} · runs on **{state.device_label()}**")
    return loaded


def test_set_section(loaded: state.Loaded) -> tuple[sources.ImageSet, dict | None]:
    st.header("Test images")
    downloaded = st.session_state.pop(DOWNLOADED, None)
    if downloaded:  # set before the box is drawn: Streamlit allows no later change
        st.session_state["data_folder"] = downloaded
    st.session_state.setdefault("data_folder", sources.default_data_folder())
    folder = st.text_input(
        "Full test set (folder)", key="data_folder", persist_state="session",
        placeholder="e.g. ../shared/data/cifar10-jpeg",
        help="An ImageFolder root holding test/<class>/*.jpg, a .npz pack made by "
             "`python -m convattn.data pack`, or a folder for torchvision's CIFAR-10. "
             f"Empty: the bundled sample. Also read from ${sources.ENV_DATA}.").strip()
    images = None
    if sources.is_new_folder(folder):
        st.info(f"{render.literal(folder)} does not exist yet: download CIFAR-10 "
                f"({sources.DOWNLOAD_SIZE}) into it?")
    elif folder:
        try:
            images = sources.load_test_set(folder)
        except DataError as e:
            st.error(f"{render.literal(e)} Using the bundled sample instead.")
    if downloaded and images is not None:
        st.success(f"CIFAR-10 is downloaded: {len(images):,} test images.")
    sample = images is None
    if sample:
        try:
            images = sources.load_sample()
        except DataError as e:
            raise Missing(render.literal(e)) from None
    st.caption(f"Using the {render.literal(images.title)}.")
    if sample:
        download_section(folder)
    found = sources.predictions_for_checkpoint(loaded.path)
    preds = found[0] if found else None
    if found:
        summary = sources.set_summary(preds)
        st.caption(f"On the full test set ({summary['count']:,} images, from "
                   f"{render.literal(found[1].name)}): **{summary['accuracy']:.2f}%** correct.")
        with st.expander("Accuracy per class"):
            st.markdown(render.markdown_table({
                "class": list(summary["per_class"]),
                "accuracy %": [f"{v:.1f}" for v in summary["per_class"].values()]}))
    return images, preds


def download_section(folder: str) -> None:
    """The button that downloads CIFAR-10 into ``folder`` (or the default folder), and what
    came of it. A success shows the set from the next run on."""
    target = sources.download_folder(folder)
    if target.suffix == ".npz":
        return  # a pack is made, not downloaded
    if not folder:
        st.caption(f"For the full test set (10,000 images), download CIFAR-10 once "
                   f"({sources.DOWNLOAD_SIZE}) into {render.literal(target)}, or name a "
                   "folder above.")
    if not st.button(f"Download CIFAR-10 ({sources.DOWNLOAD_SIZE})", key="download",
                     help="torchvision's copy of CIFAR-10, from the University of Toronto."):
        return
    try:
        with st.spinner(f"Downloading CIFAR-10 into {render.literal(target)}…"):
            sources.download_cifar10(target)
    except DataError as e:
        st.error(render.literal(e))
        return
    st.session_state[DOWNLOADED] = str(target)
    st.rerun()


def _request(kind: str) -> None:
    st.session_state["image_request"] = kind


def _refilter() -> None:
    st.session_state["refilter"] = True  # the list changed: find the image again (below)


def pick(index: int) -> None:
    """Show test image ``index`` (of the set the sidebar uses) from the next run on.

    Kept until ``image_section`` draws the image widgets: Streamlit lets code set a
    widget's value only before the widget is drawn in a run, and a page runs after the
    sidebar.
    """
    st.session_state[PICK] = int(index)


def _take_pick() -> None:
    index = st.session_state.pop(PICK, None)
    if index is not None:
        st.session_state.update(source="Test images", class_filter="all classes",
                                only_wrong=False)
        widgets.set_value("position", index)


def image_section(loaded: state.Loaded, images: sources.ImageSet, preds: dict | None
                  ) -> Selection:
    st.header("Image")
    _take_pick()
    kind = st.radio("Source", ["Test images", "Upload"], horizontal=True, key="source",
                    persist_state="session")
    if kind == "Upload":
        return upload_section(loaded)
    cls = st.selectbox("Class", ["all classes", *images.classes], key="class_filter",
                       on_change=_refilter, persist_state="session")
    only_wrong = st.checkbox("Only misclassified images", key="only_wrong",
                             on_change=_refilter, persist_state="session")
    request = st.session_state.pop("image_request", None)
    predicted = None
    if only_wrong or request == "next_wrong":
        predicted = setwork.predicted(loaded, images)
    candidates = np.arange(len(images))
    if cls != "all classes":
        candidates = candidates[images.labels == images.classes.index(cls)]
    if only_wrong:
        wrong = candidates[predicted[candidates] != images.labels[candidates]]
        if len(wrong):
            candidates = wrong
        else:
            st.info("The model gets every one of these images right.")
    n = len(candidates)
    if st.session_state.pop("refilter", False):
        # Stay on the image shown before the filter changed when the new list holds it.
        hits = np.flatnonzero(candidates == st.session_state.get("shown_index", -1))
        widgets.set_value("position", int(hits[0]) if len(hits) else 0)
    position = min(widgets.get_value("position", 0), n - 1)
    if request == "random":
        widgets.set_value("position", int(np.random.default_rng().integers(n)))
    elif request == "next_wrong":
        order = np.roll(np.arange(n), -(position + 1))
        hits = [j for j in order if predicted[candidates[j]] != images.labels[candidates[j]]]
        if hits:
            widgets.set_value("position", int(hits[0]))
        else:
            st.info("No misclassified image among these.")
    position = widgets.settable_number(f"Image number (0 to {n - 1})", 0, n - 1, "position", 0)
    left, right = st.columns(2)
    left.button("Random", on_click=_request, args=("random",), width="stretch", key="random")
    right.button("Next wrong", on_click=_request, args=("next_wrong",), width="stretch",
                 key="next_wrong",
                 help="The next image (in this list) that the model misclassifies.")
    index = int(candidates[position])
    st.session_state["shown_index"] = index
    if n < len(images):
        st.caption(f"Image number {position} counts within this list of {n:,} images; "
                   f"in the whole set it is #{index}.")
    name = images.classes[images.labels[index]]
    label = loaded.classes.index(name) if name in loaded.classes else None
    return Selection(images.images[index], label, f"{render.literal(images.names[index])} "
                     f"(#{index}) · true class **{render.literal(name)}**",
                     name=images.names[index], index=index)


def _keep_image_upload() -> None:
    """The uploader changed: keep the file, or forget it when the user removed it.

    Streamlit empties a file uploader whenever another page is opened, so the pages read
    the file from this plain session entry instead.
    """
    upload = st.session_state.get("upload")
    if upload is None:
        st.session_state.pop(KEPT_UPLOAD, None)
    else:
        st.session_state[KEPT_UPLOAD] = (upload.name, upload.getvalue())


def upload_section(loaded: state.Loaded) -> Selection:
    upload = st.file_uploader("Image file: PNG, JPEG, WebP, BMP or GIF, any size",
                              key="upload", on_change=_keep_image_upload)
    kept = st.session_state.get(KEPT_UPLOAD)
    if upload is None and kept is not None:
        st.caption(f"Showing **{render.literal(kept[0])}**, uploaded earlier; upload another "
                   "file to replace it.")
        st.button("Forget this image", key="forget_upload",
                  on_click=lambda: st.session_state.pop(KEPT_UPLOAD, None))
    fit = st.radio("Fit to 32x32", FITS, format_func=FIT_LABELS.get, horizontal=True,
                   key="fit", persist_state="session")
    true = st.selectbox("True class, if you know it", ["unknown", *loaded.classes],
                        key="upload_label", persist_state="session")
    if kept is None:
        raise Missing("Upload an image in the sidebar: the model will see it shrunk to 32x32 "
                      "pixels, the size of CIFAR-10 images.", "info")
    name, data = kept
    try:
        decoded = decode_image(data, name, SIZE, fit)
    except ImageError as e:
        raise Missing(render.literal(e)) from None
    label = None if true == "unknown" else loaded.classes.index(true)
    caption = f"{render.literal(name)}: {decoded.describe(fit)}"
    if label is not None:
        caption += f", true class **{render.literal(true)}**"
    return Selection(decoded.pixels, label, caption, decoded.original)


def draw(uses: Uses) -> Shared:
    """Draw what a page needs of the sidebar (see ``appkit.pages.Uses``): the model
    first, then the image, then the test set."""
    shared = Shared()
    if uses == "nothing":
        return shared
    with st.sidebar:
        try:
            shared.loaded = model_section()
            shared.after_model = st.container()
            image_box = st.container()  # drawn above the test-set box, filled after it
            shared.images, shared.preds = test_set_section(shared.loaded)
            if uses == "image":
                with image_box:
                    shared.selection = image_section(shared.loaded, shared.images,
                                                     shared.preds)
        except Missing as e:
            shared.problem = e.with_traceback(None)  # kept till the next run: no frames
    return shared

"""The sidebar's Test images section: the full test set from a folder (or the bundled
sample when there is none), and the checkpoint's accuracy on the full set from its
predictions file.
"""

from __future__ import annotations

import streamlit as st

from appkit import markdown, sources
from appkit.loaded_model import Loaded
from appkit.sidebar import fetch_cifar10
from appkit.sidebar.choices import Missing
from convattn.errors import DataError
from convattn.files.data import ImageSet


def section(loaded: Loaded) -> tuple[ImageSet, dict | None]:
    """The section, drawn; the image set and the checkpoint's predictions file (None
    without one), or ``Missing`` when not even the bundled sample can be read."""
    st.header("Test images")
    downloaded = st.session_state.pop(fetch_cifar10.DOWNLOADED, None)
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
        st.info(f"{markdown.literal(folder)} does not exist yet: download CIFAR-10 "
                f"({sources.DOWNLOAD_SIZE}) into it?")
    elif folder:
        try:
            images = sources.load_test_set(folder)
        except DataError as e:
            st.error(f"{markdown.literal(e)} Using the bundled sample instead.")
    if downloaded and images is not None:
        st.success(f"CIFAR-10 is downloaded: {len(images):,} test images.")
    sample = images is None
    if sample:
        try:
            images = sources.load_sample()
        except DataError as e:
            raise Missing(markdown.literal(e)) from None
    st.caption(f"Using the {markdown.literal(images.title)}.")
    if sample:
        fetch_cifar10.button(folder)
    found = sources.predictions_for_checkpoint(loaded.path)
    preds = found[0] if found else None
    if found:
        summary = sources.set_summary(preds)
        st.caption(f"On the full test set ({summary['count']:,} images, from "
                   f"{markdown.literal(found[1].name)}): **{summary['accuracy']:.2f}%** "
                   "correct.")
        with st.expander("Accuracy per class"):
            st.markdown(markdown.table({
                "class": list(summary["per_class"]),
                "accuracy %": [f"{v:.1f}" for v in summary["per_class"].values()]}))
    return images, preds

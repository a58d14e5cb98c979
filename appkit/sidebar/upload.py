"""The sidebar's Image section for an uploaded image: the file, kept for the session
(``KEPT_UPLOAD``), how it is fitted to 32x32, and its true class if the user knows it.
"""

from __future__ import annotations

import streamlit as st

from appkit import markdown
from appkit.loaded_model import Loaded
from appkit.sidebar.choices import Missing, Selection
from convattn.files.images import FITS, ImageError, decode_image
from convattn.readout.grid import INPUT_SIZE

FIT_LABELS = {"resize": "Resize whole image", "crop": "Center-crop to square"}
KEPT_UPLOAD = "kept_upload"  # session state: (file name, bytes) of the uploaded image


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


def section(loaded: Loaded) -> Selection:
    """The upload's widgets, drawn; the uploaded image as the model sees it, or
    ``Missing`` (none uploaded yet, or not an image)."""
    upload = st.file_uploader("Image file: PNG, JPEG, WebP, BMP or GIF, any size",
                              key="upload", on_change=_keep_image_upload)
    kept = st.session_state.get(KEPT_UPLOAD)
    if upload is None and kept is not None:
        st.caption(f"Showing **{markdown.literal(kept[0])}**, uploaded earlier; upload "
                   "another file to replace it.")
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
        decoded = decode_image(data, name, INPUT_SIZE, fit)
    except ImageError as e:
        raise Missing(markdown.literal(e)) from None
    label = None if true == "unknown" else loaded.classes.index(true)
    caption = f"{markdown.literal(name)}: {decoded.describe(fit)}"
    if label is not None:
        caption += f", true class **{markdown.literal(true)}**"
    return Selection(decoded.pixels, label, caption, decoded.original)

"""The sidebar's Image section for an uploaded image: the file, kept for the session
(``KEPT_UPLOAD``), how it is fitted to the model's input size (32x32 for convattn's
networks, a card's ``image_size``), and its true class if the user knows it. For a grey
network (a card with one value in ``mean``) the image is shown grey, as the model sees it.
"""

from __future__ import annotations

import streamlit as st

from appkit import markdown
from appkit.loaded_model import Loaded
from appkit.sidebar.choices import Missing, Selection
from convattn.files.images import FITS, ImageError, as_grey, decode_image

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
    h, w = loaded.info.image_size
    grey = loaded.info.channels == 1
    fit = st.radio(f"Fit to {w}x{h}", FITS, format_func=FIT_LABELS.get, horizontal=True,
                   key="fit", persist_state="session")
    true = st.selectbox("True class, if you know it", ["unknown", *loaded.classes],
                        key="upload_label", persist_state="session")
    if kept is None:
        what = ("32x32 pixels, the size of CIFAR-10 images" if (h, w) == (32, 32)
                else f"{w}x{h} pixels, the size this network takes")
        raise Missing(f"Upload an image in the sidebar: the model will see it fitted to "
                      f"{what}{', in grey' if grey else ''}.", "info")
    name, data = kept
    try:
        decoded = decode_image(data, name, (h, w), fit)
    except ImageError as e:
        raise Missing(markdown.literal(e)) from None
    label = None if true == "unknown" else loaded.classes.index(true)
    caption = f"{markdown.literal(name)}: {decoded.describe(fit)}"
    if grey:
        caption += ", in grey as this network sees it"
    if label is not None:
        caption += f", true class **{markdown.literal(true)}**"
    pixels = as_grey(decoded.pixels) if grey else decoded.pixels
    return Selection(pixels, label, caption, decoded.original)

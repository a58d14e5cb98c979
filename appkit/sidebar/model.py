"""The sidebar's Model section: the checkpoint to use (the operator's model card first,
then those found, and the ones this session uploaded), and what that model is.
"""

from __future__ import annotations

import streamlit as st

from appkit import loaded_model, markdown
from appkit.loaded_model import Loaded
from appkit.sidebar.choices import Missing
from convattn.files.checkpoint import CheckpointError, OutputError


def _take_upload() -> None:
    """Keep a newly uploaded checkpoint and select it (a callback: it runs before the
    Checkpoint box is drawn, so it may set that box's value)."""
    upload = st.session_state.get("checkpoint_upload")
    if upload is None:
        return
    try:
        path = loaded_model.store_upload(upload.name, upload.getvalue())
    except (CheckpointError, OutputError) as e:
        st.session_state["checkpoint_upload_error"] = str(e)
        return
    uploads = st.session_state.setdefault(loaded_model.UPLOADS, [])
    if path not in uploads:
        uploads.append(path)
    st.session_state["checkpoint"] = path


def section() -> Loaded:
    """The section, drawn; the chosen model, or ``Missing`` with what to do."""
    st.header("Model")
    options = loaded_model.checkpoint_options()
    if not options:
        raise Missing(f"No checkpoint was found in checkpoints/: train one with "
                      f"`{loaded_model.TRAIN_HINT}` (or set {loaded_model.ENV_CHECKPOINT} to "
                      "a checkpoint file) and reload this page.")
    path = st.selectbox("Checkpoint", options, format_func=loaded_model.checkpoint_label,
                        key="checkpoint", persist_state="session")
    with st.expander("Use your own checkpoint"):
        st.file_uploader(
            "A checkpoint written by `convattn-train` (.pt)", type=["pt"],
            key="checkpoint_upload", on_change=_take_upload,
            help="Loaded weights-only: nothing stored in the file is run. It is listed "
                 "under Checkpoint for this browser session.")
        failed = st.session_state.pop("checkpoint_upload_error", None)
        if failed:
            st.error(markdown.literal(failed))
    try:
        loaded = loaded_model.load(path)
    except CheckpointError as e:
        if loaded_model.is_card(path):  # the operator's file: said where it is chosen
            st.error(markdown.literal(e))
            raise Missing("The model card chosen in the sidebar cannot be opened (the "
                          "sidebar says why). Choose another checkpoint in the "
                          "sidebar.") from None
        raise Missing(f"{markdown.literal(e)} Choose another checkpoint in the "
                      "sidebar.") from None
    info = loaded.info
    acc = info.get("test_accuracy")
    acc_text = (f"{markdown.percent(acc)} test accuracy" if acc is not None
                else "test accuracy not recorded")
    arch = markdown.literal(info.arch) if loaded.is_card else info.arch  # a card's: its text
    st.markdown(f"**{arch}**: {loaded.describe()}.  \n"
                f"{acc_text} · runs on **{loaded_model.device_label()}**")
    return loaded

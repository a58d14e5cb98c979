"""The sidebar's button that downloads CIFAR-10 (torchvision's copy) into the download
folder (``$CONVATTN_DATA``, else the cache's ``cifar10``), when the page is on the bundled
sample. The browser never names where it writes (``appkit.roots``).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from appkit import markdown, sources
from convattn.errors import DataError
from convattn.files.download import download_cifar10

DOWNLOADED = "downloaded_to"  # session state: the folder CIFAR-10 was just downloaded into


def button(target: Path) -> None:
    """The button that downloads CIFAR-10 into ``target``, and what came of it. A success
    shows the set from the next run on (``test_set`` reads ``DOWNLOADED``)."""
    if target.suffix == ".npz":
        return  # a pack is made, not downloaded
    st.caption(f"For the full test set (10,000 images), download CIFAR-10 once "
               f"({sources.DOWNLOAD_SIZE}) into {markdown.literal(target)}.")
    if not st.button(f"Download CIFAR-10 ({sources.DOWNLOAD_SIZE})", key="download",
                     help="torchvision's copy of CIFAR-10, from the University of Toronto."):
        return
    try:
        with st.spinner(f"Downloading CIFAR-10 into {markdown.literal(target)}…"):
            download_cifar10(target)
    except DataError as e:
        st.error(markdown.literal(e))
        return
    st.session_state[DOWNLOADED] = str(target)
    st.rerun()

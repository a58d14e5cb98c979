"""Inspect's similar training images: those nearest to the page's image in the model's
feature space (found by ``convattn.trust.neighbours``): what the model may be comparing it
with, and whether a near copy of it was trained on.

The training split's features take minutes on a CPU: they are computed only when asked
for, kept on disk by ``cached_features``, and held in memory by ``progress_cache.once``
so that later images need only their own forward pass.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from appkit import markdown, progress_cache, sources
from appkit.gallery import COLUMNS, THUMB, thumbnail
from appkit.loaded_model import HASH, Loaded
from convattn.errors import DataError
from convattn.files.checkpoint import CheckpointError
from convattn.files.data import ImageSet
from convattn.trust.neighbours import cached_features, image_features, nearest

K = 8
ASKED = "nearest_asked"  # session state: the (checkpoint, folder) pairs the user asked for


@st.cache_data(show_spinner=False, max_entries=64, hash_funcs=HASH)
def _query(loaded: Loaded, pixels: np.ndarray) -> np.ndarray:
    return image_features(loaded.model, loaded.info, pixels[None])


def _train_features(loaded: Loaded, folder: str, train: ImageSet) -> np.ndarray:
    return progress_cache.once(
        ("train features", loaded.key, folder),
        lambda progress: cached_features(loaded.path, folder, "train", model=loaded.model,
                                         info=loaded.info, images=train, progress=progress),
        f"Computing the features of the {len(train):,} training images once with "
        f"{markdown.literal(loaded.name)} (kept on disk for next time)…")


def _ask(pair: tuple) -> None:
    st.session_state.setdefault(ASKED, set()).add(pair)


def section(loaded: Loaded, images: ImageSet, pixels: np.ndarray) -> None:
    """Inspect's last section: a button, then the ``K`` nearest training images."""
    st.header("Nearest training images")
    if loaded.is_card:  # the features' disk cache is keyed by a checkpoint file's digest
        st.caption(f"{markdown.literal(loaded.name)} is a model card: the nearest training "
                   "images are found for convattn's own checkpoints only.")
        return
    folder = sources.train_folder(images)
    if folder is None:
        st.caption("Name a data folder that also holds a train split in the sidebar (Full "
                   "test set) to see the training images nearest to this one.")
        return
    pair = (loaded.key, folder)
    if pair not in st.session_state.get(ASKED, set()):
        st.button(f"Find the {K} nearest training images", key="nearest", on_click=_ask,
                  args=(pair,),
                  help="Runs the model once over the training split (minutes on a CPU, "
                       "once per checkpoint: the features are kept on disk).")
        return
    try:
        train = sources.load_train_set(folder, loaded.info.image_size)
        features = _train_features(loaded, folder, train)
    except (DataError, CheckpointError) as e:
        st.error(markdown.literal(e))
        return
    idx, dist = nearest(features, _query(loaded, pixels), k=min(K, len(features)))
    # Crisp thumbnails, as in the galleries (see gallery.grid).
    st.html("<style>.st-key-nearest_grid img { image-rendering: pixelated; }</style>")
    with st.container(key="nearest_grid"):
        for column, i, d in zip(st.columns(COLUMNS), idx[0], dist[0]):
            with column:
                st.image(thumbnail(train.images[i]), width=THUMB, output_format="PNG")
                st.caption(f"**{markdown.literal(train.classes[train.labels[i]])}**  \n"
                           f"distance {d:.3f}", help=markdown.literal(train.names[i]))
    st.caption(f"The {len(idx[0])} of the {len(train):,} training images whose features (what "
               f"the model's last layer receives) point the most nearly the same way as this "
               "image's, nearest first, with their labels; hover over ? for a file name. "
               "Cosine distance is 0 for the same direction. Pooled activations are mostly "
               "non-negative, so even unrelated images tend to be close: compare the distances "
               "with one another. One far below the rest may be a near copy of this image.")

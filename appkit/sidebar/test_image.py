"""The sidebar's Image section for a test image: the class filter, "only misclassified",
the image number, Random and Next wrong; and ``pick``, the way another page (a gallery)
shows a test image.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from appkit import markdown, set_results, widgets
from appkit.loaded_model import Loaded
from appkit.sidebar.choices import Selection
from convattn.files.data import ImageSet

PICK = "picked_image"  # session state: a test image to show, see ``pick``
SOURCE = "Test images"  # the "Source" radio's choice for this section


def _request(kind: str) -> None:
    st.session_state["image_request"] = kind


def _refilter() -> None:
    st.session_state["refilter"] = True  # the list changed: find the image again (below)


def pick(index: int) -> None:
    """Show test image ``index`` (of the set the sidebar uses) from the next run on.

    Kept until ``take_pick`` runs, before the image widgets are drawn: Streamlit lets code
    set a widget's value only before the widget is drawn in a run, and a page runs after
    the sidebar.
    """
    st.session_state[PICK] = int(index)


def take_pick() -> None:
    """Before the image widgets are drawn: show the test image ``pick`` asked for, if
    any, with no filter hiding it."""
    index = st.session_state.pop(PICK, None)
    if index is not None:
        st.session_state.update(source=SOURCE, class_filter="all classes", only_wrong=False)
        widgets.set_value("position", index)


def section(loaded: Loaded, images: ImageSet) -> Selection:
    """The test image's widgets, drawn; the image chosen."""
    cls = st.selectbox("Class", ["all classes", *images.classes], key="class_filter",
                       on_change=_refilter, persist_state="session")
    only_wrong = st.checkbox("Only misclassified images", key="only_wrong",
                             on_change=_refilter, persist_state="session")
    request = st.session_state.pop("image_request", None)
    predicted = None
    if only_wrong or request == "next_wrong":
        predicted = set_results.predicted(loaded, images)
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
    return Selection(images.images[index], label, f"{markdown.literal(images.names[index])} "
                     f"(#{index}) · true class **{markdown.literal(name)}**",
                     name=images.names[index], index=index)

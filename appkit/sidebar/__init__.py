"""The sidebar every page shares: the model, the image to look at, the test set.

app.py draws it once per run, before the page (``draw``): its widgets are then the same
widgets on every page, so what the user chose stays chosen from page to page. The page
gets the results from ``appkit.session.current()``. What keeps a page from showing
anything (no checkpoint, an upload still missing) is raised as ``Missing``: one sentence
that the page shows under its title.

A page that needs no image (Misclassifications) or nothing of the sidebar (Training)
does not draw those widgets, and Streamlit forgets the value of a widget that a run does
not draw, so each one here is kept with ``persist_state="session"``. The image number
lives in a plain entry (see ``appkit.widgets``), an uploaded image in
``upload.KEPT_UPLOAD``.

This module draws the sections in order; each is a module of its own:

- ``choices``: what the sidebar chose for the page (``Shared``, ``Selection``) and what
  kept it from choosing (``Missing``).
- ``model``: the Model section: the checkpoint (found or uploaded) and what it is.
- ``test_set``: the Test images section: the full test set's folder, or the bundled
  sample, and the checkpoint's accuracy from its predictions file.
- ``fetch_cifar10``: the button that downloads CIFAR-10 while the bundled sample is used.
- ``test_image``: the Image section for a test image (filters, number, Random, Next
  wrong), and ``pick``, a gallery's way to show one.
- ``upload``: the Image section for an uploaded image.
"""

from __future__ import annotations

import streamlit as st

from appkit.loaded_model import Loaded
from appkit.pages import Uses
from appkit.sidebar import model, test_image, test_set, upload
from appkit.sidebar.choices import Missing, Selection, Shared
from convattn.files.data import ImageSet


def _image(loaded: Loaded, images: ImageSet) -> Selection:
    """The Image section: a test image or an upload, as the Source radio says."""
    st.header("Image")
    test_image.take_pick()  # before the radio: a pick switches it to test images
    kind = st.radio("Source", [test_image.SOURCE, "Upload"], horizontal=True, key="source",
                    persist_state="session")
    if kind == "Upload":
        return upload.section(loaded)
    return test_image.section(loaded, images)


def draw(uses: Uses) -> Shared:
    """Draw what a page needs of the sidebar (see ``appkit.pages.Uses``): the model
    first, then the image, then the test set."""
    shared = Shared()
    if uses == "nothing":
        return shared
    with st.sidebar:
        try:
            shared.loaded = model.section()
            shared.after_model = st.container()
            image_box = st.container()  # drawn above the test-set box, filled after it
            shared.images, shared.preds = test_set.section(shared.loaded)
            if uses == "image":
                with image_box:
                    shared.selection = _image(shared.loaded, shared.images)
        except Missing as e:
            shared.problem = e.with_traceback(None)  # kept till the next run: no frames
    return shared

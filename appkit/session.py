"""What the pages share in a session: the shared sidebar's choices, and the way from a
gallery to the Inspect page and back.

app.py calls ``share(entry)`` before running the page: it draws the shared sidebar (see
``appkit.sidebar``) and keeps the results for the page, which reads them with
``current()``. A page's own widgets keep their values while the user visits other pages
when drawn with ``persist_state="session"``.
"""

from __future__ import annotations

import streamlit as st

from appkit import pages, sidebar
from appkit.sidebar import test_image
from appkit.sidebar.choices import Shared

SHARED = "shared_sidebar"  # session state: this run's sidebar choices (``Shared``)
PAGE = "current_page"  # session state: this run's pages.Entry
BACK = "back_to"  # session state: (page file, label) of the list an image was opened from


def share(entry: pages.Entry) -> None:
    """The router's part, before the page runs: draw the sidebar that ``entry`` uses."""
    st.session_state[PAGE] = entry
    st.session_state[SHARED] = sidebar.draw(entry.uses)


def current() -> Shared:
    """The page's part, under its title: what the sidebar chose, with ``notice``, a
    container here for one-sentence messages. Without a model or test images, says why
    there and stops the page."""
    shared = st.session_state[SHARED]
    shared.notice = st.container()
    if shared.problem is not None and shared.images is None:
        shared.problem.show(shared.notice)
        st.stop()
    return shared


def open_in_inspect(index: int) -> None:
    """Show test image ``index`` on the Inspect page, with the same checkpoint and set,
    and a link back to this page (which keeps its state)."""
    test_image.pick(index)
    here = st.session_state[PAGE]
    st.session_state[BACK] = (here.path, here.title.split(":")[0])
    st.switch_page(pages.INSPECT)


def back_link() -> None:
    """On Inspect: a link back to the gallery the image was opened from, if it was."""
    back = st.session_state.get(BACK)
    if back:
        st.page_link(back[0], label=f"Back to {back[1]}", icon=":material/arrow_back:")

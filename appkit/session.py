"""What the pages share through st.session_state: the checkpoint, the test set, the image.

Every page draws its sidebar with ``appkit.sidebar``, whose widgets have the same keys on
every page ("checkpoint", "data_folder", "source", "class_filter", "only_wrong", "fit",
"upload_label"; the image number and the query live in plain entries, see ``widgets``,
and an uploaded image in ``sidebar.KEPT_UPLOAD``). Streamlit drops a widget's
value when the user opens a page that does not draw that widget, and a page's widget is
not the previous page's widget even under the same key, so each page calls ``keep()``
first: it turns those values into plain entries, which the page's widgets start from.
"""

from __future__ import annotations

import streamlit as st
from streamlit.errors import StreamlitAPIException

from . import widgets

INSPECT_PAGE = "app.py"
SHARED_KEYS = ("checkpoint", "data_folder", "source", "class_filter", "only_wrong", "fit",
               "upload_label")
# Each page's own choices, kept while the user is on other pages, so that a page looks as
# it was left (the Misclassifications cell clicked before opening an image in Inspect).
PAGE_KEYS = ("mis_true", "mis_pred", "mis_wrong", "mis_order", "mis_page",
             "ablation_kind", "flip_which", "flip_class", "flip_page",
             "train_checkpoints", "zoo_archs", "zoo_metric", "compare_checkpoint")
# The sidebar's page links, grouped by the question they answer. Streamlit's own list
# (hidden in .streamlit/config.toml) would call the Inspect page "app", after app.py.
NAVIGATION = {
    "One image": [(INSPECT_PAGE, "Inspect"), ("pages/4_Compare.py", "Compare two models")],
    "How attention works": [("pages/5_Learn.py", "Learn, step by step")],
    "The whole test set": [("pages/1_Misclassifications.py", "Misclassifications"),
                           ("pages/2_Ablation.py", "Ablation: switch attention off"),
                           ("pages/6_Attention_statistics.py", "Attention statistics")],
    "Can the explanations be trusted?": [("pages/7_Faithfulness.py", "Faithfulness"),
                                         ("pages/8_Sanity_check.py", "Sanity check")],
    "Training": [("pages/3_Training.py", "Training history and γ")],
}


def start(title: str) -> None:
    """Call first on every page: the page's title, the choices carried over from other
    pages (see ``keep``), and the page links at the top of the sidebar."""
    st.set_page_config(page_title=f"convattn · {title}", layout="wide")
    keep()
    navigation()


def navigation() -> None:
    with st.sidebar:
        try:
            for section, pages in NAVIGATION.items():
                st.caption(section)
                for path, label in pages:
                    st.page_link(path, label=label)
        except StreamlitAPIException:
            pass  # a page run on its own (AppTest of one file) has no others to link to
        st.divider()


def keep() -> None:
    """Carries the shared choices and every page's own choices over from the last run,
    whichever page it was."""
    for key in (*SHARED_KEYS, *PAGE_KEYS):
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def select_image(index: int) -> None:
    """Make test image ``index`` (of the set the sidebar uses) the image of every page."""
    st.session_state.update(source="Test images", class_filter="all classes",
                            only_wrong=False)
    widgets.set_value("position", int(index))


BACK = "back_to"  # session state: (page, label) of the list an image was opened from


def open_in_inspect(index: int, page: str) -> None:
    """Show test image ``index`` on the Inspect page, with the same checkpoint and set,
    and a link back to ``page`` (the gallery it was picked in, which keeps its state)."""
    select_image(index)
    label = next(label for pages in NAVIGATION.values() for path, label in pages
                 if path == page)
    st.session_state[BACK] = (page, label.split(":")[0])
    st.switch_page(INSPECT_PAGE)


def back_link() -> None:
    """On Inspect: a link back to the gallery the image was opened from, if it was."""
    back = st.session_state.get(BACK)
    if back:
        st.page_link(back[0], label=f"Back to {back[1]}", icon=":material/arrow_back:")

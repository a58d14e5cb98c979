"""The app's pages, grouped by the question they answer: the one table that app.py routes
and that the pages link to. A new page is its file in app_pages/ and one line here.

The page files are not in pages/: Streamlit treats a pages/ folder next to the entrypoint
as a legacy multipage app, and AppTest then runs the page file without the router.
Each page's URL comes from its file name without the number (app_pages/5_Ablation.py is
/Ablation); the default page, Inspect, is at /. The numbers follow the menu's order, as
listed in ``SECTIONS`` (0 Inspect, 1 Compare, ..., 10 Training): a page moved in the menu
is renamed to match.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import streamlit as st

# What of the shared sidebar a page needs, and so what the router draws for it:
# "image": checkpoint, test set and image; "test set": checkpoint and test set;
# "nothing": none of it (its choices are kept all the same, see appkit.sidebar).
Uses = Literal["image", "test set", "nothing"]


@dataclass(frozen=True)
class Entry:
    path: str  # the page's file, relative to app.py
    title: str  # its name in the navigation
    uses: Uses = "image"


INSPECT = "app_pages/0_Inspect.py"
SECTIONS: dict[str, list[Entry]] = {
    "One image": [Entry(INSPECT, "Inspect"),
                  Entry("app_pages/1_Compare.py", "Compare two models")],
    "How attention works": [Entry("app_pages/2_Learn.py", "Learn, step by step"),
                            Entry("app_pages/3_Predict_then_reveal.py",
                                  "Predict, then reveal", "test set")],
    "The whole test set": [
        Entry("app_pages/4_Misclassifications.py", "Misclassifications", "test set"),
        Entry("app_pages/5_Ablation.py", "Ablation: switch attention off"),
        Entry("app_pages/6_Attention_statistics.py", "Attention statistics", "test set"),
        Entry("app_pages/7_Likely_label_errors.py", "Likely label errors", "test set")],
    "Can the explanations be trusted?": [
        Entry("app_pages/8_Faithfulness.py", "Faithfulness", "test set"),
        Entry("app_pages/9_Sanity_check.py", "Sanity check")],
    "Training": [Entry("app_pages/10_Training.py", "Training history and γ", "nothing")],
}
ENTRIES = [entry for entries in SECTIONS.values() for entry in entries]
_BY_TITLE = {entry.title: entry for entry in ENTRIES}


def navigation() -> st.Page:
    """Streamlit's navigation over the table (in the sidebar, by section); returns the
    page to run."""
    return st.navigation(
        {section: [st.Page(e.path, title=e.title, default=e.path == INSPECT) for e in entries]
         for section, entries in SECTIONS.items()}, expanded=True)


def entry(page: st.Page) -> Entry:
    """The table's line for a page that ``navigation`` returned."""
    return _BY_TITLE[page.title]

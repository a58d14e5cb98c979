"""convattn's Streamlit app: ``streamlit run app.py``.

The router: Streamlit's navigation over the pages listed in ``appkit.pages`` (their
files are in app_pages/), and the sidebar they share (checkpoint, test set, image),
drawn here once per run, before the page, so that what the user chose in it stays chosen
on every page.

``streamlit run app.py -- --data-root DIR`` (repeatable) names folders the browsers may
read data from (``appkit.roots``); the rules are said once in the server's log.
"""

from __future__ import annotations

import streamlit as st

from appkit import pages, serving, session

serving.announce()
page = pages.navigation()
st.set_page_config(page_title=f"convattn · {page.title}", layout="wide")
session.share(pages.entry(page))
page.run()

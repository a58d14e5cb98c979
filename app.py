"""convattn's Streamlit app: ``streamlit run app.py``.

The router: Streamlit's navigation over the pages listed in ``appkit.pages`` (their
files are in app_pages/), and the sidebar they share (checkpoint, test set, image),
drawn here once per run, before the page, so that what the user chose in it stays chosen
on every page.

``streamlit run app.py -- --data-root DIR`` (repeatable) names folders the browsers may
read data from (``appkit.roots``); the rules are said once in the server's log.

``streamlit run`` first imports this file as the module ``app`` to find ``app``, the
server (``st.App``): its start begins ``appkit.preload``, Inspect's first run done while
the browser loads the page. Then Streamlit runs the file as a script for every browser
session's run: the router.
"""

from __future__ import annotations

import streamlit as st

from appkit import preload  # light: what it preloads, it imports on its own thread

if __name__ == "app":  # `streamlit run` imports this file as a module, to find its server
    app = st.App("app.py", lifespan=preload.lifespan)
else:  # a browser session's run: Streamlit (and AppTest) runs the file as __main__
    preload.wait_for_imports()
    from appkit import pages, serving, session

    serving.announce()
    page = pages.navigation()
    st.set_page_config(page_title=f"convattn · {page.title}", layout="wide")
    session.share(pages.entry(page))
    page.run()

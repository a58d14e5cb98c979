"""The app's pages through Streamlit's AppTest, as a browser gets them: app.py routes and
draws the shared sidebar, then runs the page."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
INSPECT = "0_Inspect.py"


def open_page(page: str = INSPECT, timeout: int = 120, **state) -> AppTest:
    """A new session opened on ``page`` (a file name in app_pages/), with the session
    state entries ``state`` set first."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    for k, v in state.items():
        at.session_state[k] = v
    return switch(at, page)


def switch(at: AppTest, page: str) -> AppTest:
    """Open ``page`` (a file name in app_pages/) in the session of ``at``, as a click on
    its link does."""
    return at.switch_page(f"app_pages/{page}").run()


def captions(at: AppTest) -> list[str]:
    """The page's captions as a reader sees them: Streamlit's, then the attention lens's
    caption and note for its pinned query (which the lens draws, not st.caption)."""
    out = [c.value for c in at.caption]
    for data in lens_data(at):
        said = data.get("caption") or {}
        out += [t for t in (said.get("text"), said.get("note")) if t]
    return out


def lens_data(at: AppTest) -> list[dict]:
    """What each attention lens (and its invisible store) on the page was sent."""
    from appkit.lens import wire

    return [wire.unpack(e.proto.bytes) for e in at.get("bidi_component")
            if e.proto.component_name == "convattn_lens"]

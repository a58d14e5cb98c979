"""Widgets whose value the page can also set, e.g. a click that moves a number input
(the image number in the sidebar, the pinned query's row and column).

Streamlit forgets a widget's state after a run in which the widget is not drawn, and
setting a widget's key from code is fragile. So the value lives in a plain session-state
entry; the widget is drawn from it, and ``set_value`` gives the widget a fresh key so it
shows the new value.
"""

from __future__ import annotations

from typing import Any

import streamlit as st


def _version(name: str) -> int:
    return int(st.session_state.get(f"{name}__version", 0))


def set_value(name: str, value: int) -> None:
    """Set the value of ``settable_number(name=...)``; safe in callbacks."""
    st.session_state[name] = int(value)
    st.session_state[f"{name}__version"] = _version(name) + 1


def get_value(name: str, default: int) -> int:
    return int(st.session_state.get(name, default))


def settable_number(label: str, low: int, high: int, name: str, default: int,
                    **kwargs: Any) -> int:
    """An integer number input from ``low`` to ``high`` whose value is kept under ``name``."""
    value = min(max(get_value(name, default), low), high)
    st.session_state[name] = value
    key = f"{name}__{_version(name)}"

    def changed() -> None:
        st.session_state[name] = int(st.session_state[key])

    return int(st.number_input(label, low, high, value=value, step=1, key=key,
                               on_change=changed, **kwargs))


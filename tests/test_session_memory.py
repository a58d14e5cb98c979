"""What one session keeps: after a walk through several images, its session state holds
no image array of its own, only views of the image set every session shares (the
sources' ``st.cache_resource``)."""

from __future__ import annotations

import numpy as np
import pagedata
from apprun import open_page


def _arrays(obj: object, depth: int = 0, seen: set | None = None) -> list[np.ndarray]:
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 6:
        return []
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return [obj]
    items = (obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple))
             else vars(obj).values() if hasattr(obj, "__dict__") else [])
    return [a for x in items for a in _arrays(x, depth + 1, seen)]


def test_session_state_holds_no_image_arrays_after_a_walk(tmp_path, monkeypatch):
    path = pagedata.checkpoint(tmp_path / "tiny.pt", "seed")
    monkeypatch.setenv("CONVATTN_CHECKPOINT", str(path))
    monkeypatch.setenv("CONVATTN_DATA", "")
    at = open_page()
    at.multiselect(key="methods").set_value([]).run()
    for i in range(1, 6):
        next(w for w in at.number_input if w.label.startswith("Image number")).set_value(i)
        at.run()
        assert not at.exception
    assert any("(#5)" in c.value for c in at.caption) or any(
        "(#5)" in m.value for m in at.markdown)

    other = open_page()  # another session, on its first image
    held, theirs = _held(at), _held(other)
    assert any(a.shape == (32, 32, 3) for a in held)  # the image shown: a view, below
    # Each array the walker's state holds lies in memory the other session holds too.
    own = [a.shape for a in held if not any(np.shares_memory(a, b) for b in theirs)]
    assert own == []


def _held(at) -> list[np.ndarray]:
    state = at.session_state._state
    return [a for key in state.filtered_state for a in _arrays(state[key])]

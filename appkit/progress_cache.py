"""The app's one hand-written cache: for work that moves a progress bar while it runs.

Everything else is cached with ``st.cache_data`` or ``st.cache_resource``. Those record
every Streamlit call made inside the cached function and replay it on a cache hit, so a
progress bar moved from inside one would be replayed against the bar of an earlier run,
which no longer exists (Streamlit raises CacheReplayClosureError). Work whose progress is
shown as it goes (a whole test set's predictions and ablations, the training images'
features, faithfulness curves, the randomisation over many images) is kept here instead:
once per process, shared by every session, computed once even when two sessions ask for it
at the same time (the second waits for the first), each pool bounded with the least
recently used result dropped first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import streamlit as st

T = TypeVar("T")
Progress = Callable[[int, int], None]  # (done, in all)
KEEP = 16  # results ``once`` keeps


@dataclass
class _Store:
    lock: threading.Lock = field(default_factory=threading.Lock)
    pools: dict[str, OrderedDict[Hashable, Any]] = field(default_factory=dict)
    busy: dict[tuple[str, Hashable], threading.Lock] = field(default_factory=dict)


@st.cache_resource(show_spinner=False)
def _store() -> _Store:
    return _Store()


def remember(pool: str, key: Hashable, compute: Callable[[], T], keep: int,
             message: str = "") -> T:
    """``compute()`` the first time ``key`` is asked for in ``pool``, the kept result
    afterwards; ``pool`` keeps ``keep`` results. While another session computes the same
    result, this one waits for it under a spinner that says so (after ``message``)."""
    store = _store()
    with store.lock:
        results = store.pools.setdefault(pool, OrderedDict())
        if key in results:
            results.move_to_end(key)
            return results[key]
        busy = store.busy.setdefault((pool, key), threading.Lock())
    if busy.locked():
        with st.spinner(f"{message} Another session started this; waiting for it…".strip()):
            busy.acquire()
    else:
        busy.acquire()
    try:
        with store.lock:
            if key in results:
                return results[key]
        value = compute()
        with store.lock:
            results[key] = value
            while len(results) > keep:
                results.popitem(last=False)
        return value
    finally:
        with store.lock:
            store.busy.pop((pool, key), None)
        busy.release()


def has(pool: str, key: Hashable) -> bool:
    """Whether ``pool`` holds the result for ``key`` now (to say what asking would cost)."""
    store = _store()
    with store.lock:
        return key in store.pools.get(pool, {})


def peek(pool: str, key: Hashable) -> Any:
    """The result ``pool`` holds for ``key`` now, or None (nothing is computed)."""
    store = _store()
    with store.lock:
        return store.pools.get(pool, {}).get(key)


def once(key: tuple, compute: Callable[[Progress], T], message: str) -> T:
    """``compute(progress)`` the first time ``key`` is asked for, under a progress bar
    that says ``message`` and counts images; the kept result afterwards (``KEEP`` of
    them)."""
    def run() -> T:
        bar = st.progress(0.0, text=message)

        def progress(done: int, total: int) -> None:
            bar.progress(min(done / max(total, 1), 1.0),
                         text=f"{message} {done:,} of {total:,} images.")

        value = compute(progress)
        bar.empty()
        return value

    return remember("once", key, run, KEEP, message)

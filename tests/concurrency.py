"""What the thread-safety tests share: run functions on threads at once."""

from __future__ import annotations

import threading
from collections.abc import Callable


def run_together(*targets: Callable[[], object], timeout: float | None = 300) -> None:
    """Start one thread per target, then wait for all of them."""
    threads = [threading.Thread(target=t) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)

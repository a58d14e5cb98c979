"""Freed tensors go back to the system: a served session must not keep the memory its
forward and backward passes used.

glibc's malloc serves a block of 128 KiB or more with a mapping of its own, unmapped when
freed, until the first such block is freed; then it raises that threshold to the freed
block's size (up to 32 MiB) and keeps later blocks in the heap of the thread that asked
for them. Each Streamlit session computes on a thread of its own, so every session kept
an arena of freed forward/backward buffers: about 60-70 MiB of resident memory per
session (``python -m bench.bench_memory``; 5.7 MiB with a fixed threshold, measured with
``MALLOC_MMAP_THRESHOLD_``). ``return_big_blocks`` fixes the threshold, which also turns
glibc's adjustment off, when the server starts.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
THRESHOLD = 256 * 1024  # bytes: a 64-channel 32x32 float32 feature map is 256 KiB


def return_big_blocks(threshold: int = THRESHOLD) -> bool:
    """Map every block of ``threshold`` bytes or more on its own, so that freeing it
    returns it to the system; whether the C library took the setting (False where it is
    not glibc's)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, int(threshold)))
    except (OSError, AttributeError):
        return False

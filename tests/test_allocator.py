"""appkit.allocator: a big block freed after the threshold is fixed goes back to the
system, where glibc's own rule keeps it in the heap (the reference: the same steps with
the default settings, in a fresh process each)."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest
from apprun import ROOT

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc")

STEPS = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    import numpy as np
    from appkit.allocator import return_big_blocks

    def rss_mib():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    took = return_big_blocks() if {fixed} else False
    first = np.ones(16 << 20, np.uint8)  # mapped on its own; glibc learns from its free
    del first
    before = rss_mib()
    block = np.ones(8 << 20, np.uint8)  # a forward pass's buffer, say
    above = np.ones(1 << 10, np.uint8)  # allocated after it: the block is not the heap's top
    del block
    print(took, rss_mib() - before)
""")


def _kept_mib(fixed: bool) -> tuple[bool, float]:
    out = subprocess.run([sys.executable, "-c", STEPS.format(root=str(ROOT), fixed=fixed)],
                         capture_output=True, text=True, check=True, timeout=60)
    took, kept = out.stdout.split()
    return took == "True", float(kept)


def test_a_freed_block_goes_back_once_the_threshold_is_fixed():
    took, kept = _kept_mib(fixed=True)
    assert took
    assert kept < 1.0


def test_glibc_keeps_it_by_default():
    took, kept = _kept_mib(fixed=False)
    assert not took
    assert kept > 7.0  # the 8 MiB block stays resident: what each session used to keep

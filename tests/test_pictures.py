"""appkit.pictures' stored colour tables: matplotlib's own, read without matplotlib."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from appkit import pictures

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", pictures.STORED)
def test_each_stored_table_is_matplotlibs(name):
    # Fails after a change of colour map or of matplotlib: run pictures.write_tables().
    with np.load(pictures.TABLES) as stored:
        table = stored[name]
    assert table.shape == (256, 3) and table.dtype == np.uint8
    np.testing.assert_array_equal(table, pictures.matplotlib_table(name))
    np.testing.assert_array_equal(pictures.lookup_table(name), table)


def test_the_page_colour_maps_are_all_stored():
    assert {pictures.ATTENTION_CMAP, pictures.SPREAD_CMAP, pictures.ATTRIBUTION_CMAP} <= set(
        pictures.STORED)


def test_a_colour_map_not_stored_comes_from_matplotlib():
    assert "magma" not in pictures.STORED
    table = pictures.lookup_table("magma")
    np.testing.assert_array_equal(table, pictures.matplotlib_table("magma"))
    assert tuple(table[0]) == (0, 0, 4) and tuple(table[-1]) == (252, 253, 191)


def test_colouring_a_map_imports_no_matplotlib():
    script = ("import sys, numpy as np\n"
              f"sys.path.insert(0, {str(ROOT)!r})\n"
              "from appkit import pictures\n"
              "rgb = pictures.colorize(np.linspace(0, 1, 6).reshape(2, 3), 0.0, 1.0, "
              "pictures.ATTENTION_CMAP)\n"
              "print(rgb[1, 2].tolist(), 'matplotlib' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=120)
    top, imported = out.stdout.split("]")
    assert imported.strip() == "False"
    assert [int(v) for v in top.strip("[ ").split(",")] == pictures.matplotlib_table(
        pictures.ATTENTION_CMAP)[255].tolist()

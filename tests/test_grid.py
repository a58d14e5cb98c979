"""The one grid helper: input pixels <-> cells of a feature map's grid."""

import numpy as np

from appkit.lens import wire
from convattn.readout.grid import INPUT_SIZE, Grid


def test_pixels_fall_in_the_cell_that_covers_them():
    g = Grid(8, 8)  # 4x4 input pixels per cell on the 32x32 input
    assert (g.height, g.width) == (INPUT_SIZE, INPUT_SIZE) == (32, 32)
    assert g.cell_of((0, 0)) == (0, 0)
    assert g.cell_of((3, 4)) == (0, 1)
    assert g.cell_of((31, 31)) == (7, 7)
    assert g.index_of((13, 22)) == 3 * 8 + 5
    assert g.cell_of((-5, 40)) == (0, 7) and g.clamp((-5, 40)) == (0, 31)  # clamped
    assert not g.is_input() and Grid(32, 32).is_input()


def test_every_pixel_maps_to_the_cell_whose_centre_is_nearest():
    for g in (Grid(8, 8), Grid(16, 16), Grid(4, 2), Grid(32, 32), Grid(3, 5, 12, 20)):
        centres = g.centres()
        assert centres.shape == (g.cells, 2)
        for r in range(g.height):
            for c in range(g.width):
                nearest = np.argmin(((centres - (r + 0.5, c + 0.5)) ** 2).sum(1))
                # Ties (a pixel centre on a cell border) cannot happen for integer cells
                # of whole pixels; for the 3x5 grid over 12x20 each cell is 4x4 pixels.
                assert g.index_of((r, c)) == nearest


def test_a_cells_centre_pixel_lies_in_that_cell():
    for g in (Grid(8, 8), Grid(16, 16), Grid(32, 32), Grid(3, 5, 12, 20)):
        for i in range(g.cells):
            assert g.index_of(g.centre_pixel(i)) == i
    assert Grid(8, 8).centre_pixel(0) == (2, 2)
    assert Grid(8, 8).centres()[9].tolist() == [6.0, 6.0]  # cell (1, 1) covers pixels 4..7


def test_the_lens_receives_the_grid_and_the_input_as_data():
    q = np.zeros((1, 64, 4), np.float32)
    data = wire.module_payload(q, q, (8, 8))
    assert data["grid"] == [8, 8] and data["input"] == [32, 32]
    assert {k: data[k] for k in ("grid", "input")} == Grid(8, 8).data()

"""Where a feature map's positions lie on the input image: the one place that turns an
input pixel into a cell of a grid and back.

An attention module over an H' x W' feature map has H' W' positions; each covers
``height / H'`` x ``width / W'`` pixels of the input (4 x 4 at 8x8 on a 32x32 image; 8 x
16 at 12x8 on a 96x128 one: nothing here assumes a square). The lens in the browser
receives ``Grid.data()`` for the queries and for the keys, which may lie on a coarser grid
(max-pooled keys), and computes the same cells from them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INPUT_SIZE = 32  # the input side of every registered network (CIFAR-10), in pixels


@dataclass(frozen=True)
class Grid:
    """A grid of ``rows`` x ``cols`` cells laid over an input of ``height`` x ``width``."""

    rows: int
    cols: int
    height: int = INPUT_SIZE
    width: int = INPUT_SIZE

    @classmethod
    def of(cls, shape: tuple[int, int], image: tuple[int, int] = (INPUT_SIZE, INPUT_SIZE)
           ) -> Grid:
        """The grid of an (H', W') feature map over an input of ``image`` (H, W) pixels,
        by default the registered networks' 32x32."""
        return cls(int(shape[0]), int(shape[1]), int(image[0]), int(image[1]))

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows, self.cols

    @property
    def cells(self) -> int:
        return self.rows * self.cols

    def is_input(self) -> bool:
        """Whether each cell is one input pixel."""
        return (self.rows, self.cols) == (self.height, self.width)

    def clamp(self, pixel: tuple[int, int]) -> tuple[int, int]:
        """The nearest input pixel inside the image."""
        return (min(max(int(pixel[0]), 0), self.height - 1),
                min(max(int(pixel[1]), 0), self.width - 1))

    def cell_of(self, pixel: tuple[int, int]) -> tuple[int, int]:
        """(row, col) of the cell holding input ``pixel`` (clamped into the image)."""
        r, c = self.clamp(pixel)
        return r * self.rows // self.height, c * self.cols // self.width

    def index_of(self, pixel: tuple[int, int]) -> int:
        """Row-major index of the cell holding input ``pixel``."""
        r, c = self.cell_of(pixel)
        return r * self.cols + c

    def centre_pixel(self, index: int) -> tuple[int, int]:
        """The input pixel (row, col) at the centre of row-major cell ``index``."""
        r, c = divmod(int(index), self.cols)
        return (int((r + 0.5) * self.height / self.rows),
                int((c + 0.5) * self.width / self.cols))

    def centres(self) -> np.ndarray:
        """(N, 2) float64 centres (row, col) of the cells, row-major, in input pixels: one
        cell apart at 8x8 is 4 pixels apart on a 32x32 image."""
        ys = (np.arange(self.rows) + 0.5) * self.height / self.rows
        xs = (np.arange(self.cols) + 0.5) * self.width / self.cols
        return np.stack(np.meshgrid(ys, xs, indexing="ij"), axis=-1).reshape(-1, 2)

    def data(self) -> dict[str, list[int]]:
        """What the browser's lens needs to map pixels to cells."""
        return {"grid": [self.rows, self.cols], "input": [self.height, self.width]}

"""``ImageSet``: images held in memory with their labels and names.

Its own module, below both ``data`` (which reads datasets, the bundled samples among
them) and ``shipped`` (which locates and reads the samples), so that each can import it
without importing the other. ``convattn.files.data`` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ImageSet:
    """Images held in memory: a split read by ``load_split``, or a set the app shows.

    numpy, not torch: the pixels are data that many consumers index and show; a model
    gets them through ``torch.from_numpy`` (no copy) and ``CheckpointInfo.normalise``.
    """

    images: np.ndarray  # (N, 32, 32, 3) uint8
    labels: np.ndarray  # (N,) int64
    classes: list[str]
    names: list[str]  # where each image came from, e.g. "test/cat/0001.jpg"
    key: str = ""  # identifies the set in cache keys, e.g. "sample" or "folder:/data/c10"
    title: str = ""  # what it is, for people

    def __len__(self) -> int:
        return len(self.labels)

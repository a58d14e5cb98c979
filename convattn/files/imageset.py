"""``ImageSet``: images held in memory with their labels and names.

Its own module, below both ``data`` (which reads datasets, the bundled samples among
them) and ``shipped`` (which locates and reads the samples), so that each can import it
without importing the other. ``convattn.files.data`` re-exports it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from convattn.errors import DataError

SHOWN = 8  # class names listed in a sentence


@dataclass(frozen=True)
class ImageSet:
    """Images held in memory: a split read by ``load_split``, or a set the app shows.

    numpy, not torch: the pixels are data that many consumers index and show; a model
    gets them through ``torch.from_numpy`` (no copy) and ``CheckpointInfo.normalise``.
    """

    images: np.ndarray  # (N, H, W, 3) uint8: 32x32 for CIFAR-10, a card's size otherwise
    labels: np.ndarray  # (N,) int64
    classes: list[str]
    names: list[str]  # where each image came from, e.g. "test/cat/0001.jpg"
    key: str = ""  # identifies the set in cache keys, e.g. "sample" or "folder:/data/c10"
    title: str = ""  # what it is, for people

    def __len__(self) -> int:
        return len(self.labels)

    def onto(self, classes: Sequence[str]) -> ImageSet:
        """The same images labelled by their class names' places in ``classes`` (a model's
        classes, of which the set may hold only some), so that label i means the model's
        class i. The set itself when its classes are those already.

        Raises ``DataError`` with one sentence naming a class of the set that ``classes``
        lacks."""
        classes = [str(c) for c in classes]
        if list(self.classes) == classes:
            return self
        place = {c: i for i, c in enumerate(classes)}
        lacking = [c for c in self.classes if c not in place]
        if lacking:
            shown = ", ".join(classes[:SHOWN]) + (f" and {len(classes) - SHOWN:,} more"
                                                 if len(classes) > SHOWN else "")
            raise DataError(f"the class folder {lacking[0]!r} of these images is not one of "
                            f"the model's {len(classes):,} classes ({shown}).")
        mapping = np.array([place[c] for c in self.classes], dtype=np.int64)
        digest = hashlib.sha1("\n".join(classes).encode()).hexdigest()[:12]
        return replace(self, labels=mapping[self.labels] if len(self.labels) else self.labels,
                       classes=classes, key=f"{self.key}>classes:{digest}" if self.key else "")

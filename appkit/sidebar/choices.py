"""What the sidebar chose for the page (``Shared``, with the image as a ``Selection``), and
what kept it from choosing (``Missing``): the types the sidebar's parts and the pages
share.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from appkit import markdown, sources
from appkit.loaded_model import Loaded
from convattn.files.data import ImageSet


class Missing(Exception):
    """What the sidebar could not choose, as one sentence for the page."""

    def __init__(self, message: str, level: str = "error") -> None:
        super().__init__(message)
        self.level = level  # "error", or "info" for a step the user has still to take

    def show(self, where: DeltaGenerator) -> None:
        (where.info if self.level == "info" else where.error)(str(self))


@dataclass
class Selection:
    pixels: np.ndarray  # (H, W, 3) uint8, what the model sees (32x32, or a card's size)
    label: int | None  # true class index in the model's classes, when known
    caption: str
    original: np.ndarray | None = None  # an upload as it came, for comparison
    name: str | None = None  # a test image's name in its set ("test/cat/0001.jpg")
    index: int | None = None  # and its index there


@dataclass
class Shared:
    """What the sidebar chose for this run's page; a part not drawn, or that failed, is
    None, and ``problem`` says why."""

    loaded: Loaded | None = None
    images: ImageSet | None = None
    preds: dict | None = None  # the checkpoint's predictions file for the full test set
    selection: Selection | None = None
    problem: Missing | None = None
    after_model: DeltaGenerator | None = None  # room under the model for a page's own
    notice: DeltaGenerator | None = None  # under the page's title, see session.current

    def labelled_images(self) -> ImageSet:
        """The test images, for a page that reads their labels as the model's classes;
        when the set's classes are not the model's, the page says why in ``notice`` and
        stops here."""
        problem = sources.class_problem(self.images, self.loaded.classes)
        if problem:
            self.notice.error(markdown.literal(problem))
            st.stop()
        return self.images

    def image(self) -> Selection:
        """The chosen image; without one (an upload still missing) the page says why in
        ``notice`` and stops here."""
        if self.selection is None:
            if self.problem is not None:
                self.problem.show(self.notice)
            st.stop()
        return self.selection

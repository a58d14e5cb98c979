"""Shared fixtures: tiny synthetic datasets made on the fly (no CIFAR-10 needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

TINY_CLASSES = ("cat", "dog", "frog")
TRAIN_PER_CLASS = 8  # 24 training images: 3 batches of 8
TEST_PER_CLASS = 4  # 12 test images


def make_image_folder(root: Path, classes=TINY_CLASSES, train_per_class=TRAIN_PER_CLASS,
                      test_per_class=TEST_PER_CLASS, seed: int = 0) -> Path:
    """An ImageFolder root (train/<class>/NNNN.png, test/<class>/NNNN.png) of random
    32x32 RGB images; each class has its own mean colour so a model can learn a little."""
    rng = np.random.default_rng(seed)
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        for c, cls in enumerate(classes):
            folder = root / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                base = np.zeros(3)
                base[c % 3] = 120
                pixels = np.clip(rng.normal(base + 60, 50, size=(32, 32, 3)), 0, 255)
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i:04d}.png")
    return root


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-class ImageFolder root, made once per test session. Tests must not write in it."""
    return make_image_folder(tmp_path_factory.mktemp("tiny") / "data")


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
               ) -> None:
    """An empty cache folder for every test: the default dataset folder is in it, and a
    CIFAR-10 that the user downloaded there must not change what a test sees."""
    monkeypatch.setenv("CONVATTN_CACHE", str(tmp_path_factory.mktemp("cache")))

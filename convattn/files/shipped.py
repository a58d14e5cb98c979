"""Where the files that ship with convattn are: the one locator for them.

- The bundled samples are package data (``convattn/resources/``), so they are there
  however convattn was installed: 1,000 CIFAR-10 test images (100 per class, the set the
  app opens on) and 2,000 training images (200 per class). ``--data sample`` names the
  two as one dataset (``convattn.files.data.load_split``), so every command runs offline.
- The shipped checkpoints (and their predictions, ablation and checks files) are the
  ``checkpoints/`` folder of a clone of the repository, found beside the package; a wheel
  installed elsewhere has none, so ``$CONVATTN_CHECKPOINTS`` names a folder to use instead
  (the app lists that folder too).

Jobs write over a file of that folder only when asked to with ``--overwrite-shipped``.
"""

from __future__ import annotations

import os
import zipfile
from importlib import resources
from pathlib import Path

import numpy as np

from convattn.errors import DataError
from convattn.files.checkpoint import OutputError
from convattn.files.imageset import ImageSet

CHECKPOINTS_ENV = "CONVATTN_CHECKPOINTS"
DEFAULT_CHECKPOINT = "seed"
SAMPLE = "sample"  # the --data value that names the bundled samples
SAMPLE_SPLITS = ("train", "test")
_CHECKOUT = Path(__file__).resolve().parents[2]  # the repository root, in a clone


def checkpoints_dir() -> Path:
    """The folder of shipped checkpoints: ``$CONVATTN_CHECKPOINTS``, else the clone's
    checkpoints/ (which may not exist when convattn is installed from a wheel)."""
    env = os.environ.get(CHECKPOINTS_ENV)
    return Path(env).expanduser() if env else _CHECKOUT / "checkpoints"


def shipped_checkpoint(name: str = DEFAULT_CHECKPOINT) -> Path:
    """The path of a shipped checkpoint by name (``"seed"``, ``"resnet9-attn"``...);
    DataError in one sentence when it is not there."""
    path = checkpoints_dir() / f"{name}.pt"
    if not path.is_file():
        raise DataError(f"No shipped checkpoint {name!r} in {checkpoints_dir()}: set "
                        f"{CHECKPOINTS_ENV} to a folder holding {name}.pt (a clone's "
                        "checkpoints/).")
    return path


def sample_path(split: str = "test") -> Path:
    """A bundled sample: a .npz of uint8 images (B, 32, 32, 3), labels, classes, names;
    the test sample (the app's) by default, or the training one."""
    if split not in SAMPLE_SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {SAMPLE_SPLITS}.")
    return Path(str(resources.files("convattn") / "resources" / f"cifar10-{split}-sample.npz"))


def is_shipped(path: str | Path) -> bool:
    """Whether ``path`` is in the shipped checkpoints' folder."""
    return Path(path).resolve().parent == checkpoints_dir().resolve()



def output_path(checkpoint: str | Path, out: str, beside: Path, overwrite_shipped: bool
                ) -> tuple[Path, str]:
    """Where a job on ``checkpoint`` writes its file, and a note for the user ("" if none).

    ``out`` when given, else ``beside`` (the file next to the checkpoint); but a shipped
    file is never replaced without ``overwrite_shipped``: the default for a shipped
    checkpoint is ``runs/<name>`` instead, and an ``out`` naming an existing shipped file
    is refused.
    """
    if overwrite_shipped:
        return Path(out) if out else beside, ""
    if out:
        if is_shipped(out) and Path(out).exists():
            raise OutputError(f"{out} is shipped with the repository: pass "
                              "--overwrite-shipped to replace it, or --out another file.")
        return Path(out), ""
    if is_shipped(checkpoint):
        path = Path("runs") / beside.name
        return path, (f"{checkpoint} is shipped with the repository, so its {beside.name} "
                      f"was left as it is and {path} written instead (--overwrite-shipped "
                      "replaces the shipped file).")
    return beside, ""


def load_sample(path: str | Path | None = None, split: str = "test") -> ImageSet:
    """A bundled sample (``split``'s, unless ``path`` names an .npz of the same layout) as
    an ImageSet: uint8 images (B, 32, 32, 3), labels, classes and names; DataError in one
    sentence if unreadable."""
    path = Path(path) if path is not None else sample_path(split)
    try:
        with np.load(path, allow_pickle=False) as f:
            images, labels = f["images"], f["labels"]
            classes, names = [str(c) for c in f["classes"]], [str(n) for n in f["names"]]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise DataError(f"The bundled sample {path} cannot be read ({type(e).__name__}): "
                        "make it with `python -m scripts.make_sample --split "
                        f"{split}`, or name a dataset folder instead.") from None
    per_class = len(labels) // max(len(classes), 1)
    # The split is the first part of the names ("train/cat/0000.jpg"): a file given by
    # path says for itself what it holds.
    first = names[0].split("/")[0] if names else ""
    kind = first if first in SAMPLE_SPLITS else "test"
    title = f"bundled sample: {len(labels):,} {kind} images ({per_class} per class)"
    # "sample" stays the test sample's key: the app's caches are keyed on it.
    key = SAMPLE if kind == "test" else f"{SAMPLE}:{kind}"
    return ImageSet(images, labels.astype(np.int64), classes, names, key=key, title=title)

"""CIFAR-10 data, or any image folder: reading it from disk into uint8 arrays, and
feeding it to a model.

Sources accepted by ``load_split``:
- an ImageFolder root holding ``train/<class>/*`` and ``test/<class>/*`` (for example the
  JPEG copy of CIFAR-10), decoded once into memory; a folder of ``<class>/*`` alone (no
  train/ or test/) is a test split;
- a folder for torchvision's CIFAR10 (``download=True`` fetches it for users online);
- a ``.npz`` pack made by ``python -m convattn.data pack ROOT OUT.npz`` (the JPEG bytes of
  an ImageFolder root in one file, for moving the dataset between machines);
- the word ``"sample"``: the bundled samples (``convattn.files.shipped``), 2,000 training
  and 1,000 test images of the JPEG copy, so that every command runs on a fresh install
  with no network and no dataset (a folder named sample is ``./sample``).

The whole of CIFAR-10 is 180 MB as uint8, so training keeps it in memory (on the GPU
when there is one) and crops and flips batches there instead of going through PIL.

Images are read at ``size`` (32x32 by default, a model card's ``image_size`` otherwise)
as ``CheckpointInfo.prepare`` fits a file with ``fit="resize"``: upright by its EXIF, RGB
with transparent pixels on white, the whole image resized (squashed, if its aspect differs)
with Lanczos (``convattn.files.images``). Images already at ``size`` are used as they are.

Decoding 60,000 JPEGs takes half a minute, so a folder or pack, once decoded, is kept as
uint8 arrays in the user's cache folder (``cache_dir()``), one file per size, and read
back from there while its files are unchanged.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from convattn.errors import DataError as DataError
from convattn.files.checkpoint import OutputError, atomic_write
from convattn.files.images import _fit, _to_rgb
from convattn.files.imageset import ImageSet as ImageSet
from convattn.files.shipped import SAMPLE, load_sample

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif")
SPLITS = ("train", "test")
DATA_ENV = "CONVATTN_DATA"  # the dataset the CLIs (and the app) use when none is named
CACHE_ENV = "CONVATTN_CACHE"  # where decoded datasets (and the default dataset) live
# Smaller sets decode in well under a second: caching them would only litter the cache.
CACHE_MIN_IMAGES = 1000
CACHE_FORMAT = "convattn-decoded-2"  # change it when what a cache file holds changes
Size = int | tuple[int, int]  # a side, or (H, W) as a model card's image_size


def cache_dir() -> Path:
    """$CONVATTN_CACHE, else $XDG_CACHE_HOME/convattn, else ~/.cache/convattn."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "convattn"


def default_data() -> Path:
    """$CONVATTN_DATA, else ``cache_dir()/cifar10`` (where ``--download`` puts CIFAR-10)."""
    return Path(os.environ.get(DATA_ENV) or cache_dir() / "cifar10").expanduser()


DEFAULT_DATA_HELP = "$CONVATTN_DATA, else ~/.cache/convattn/cifar10"


def resolve_data(source: str, download: bool = False) -> str:
    """The dataset a CLI reads: ``source`` if given, else ``default_data()``; DataError
    saying how to get the data when the default is empty."""
    if source:
        return source
    if os.environ.get(DATA_ENV) == SAMPLE:  # the word, as --data takes it
        return SAMPLE
    root = default_data()
    if not download and not root.exists():
        raise DataError(f"no dataset at {root} (the default): run once with --download to "
                        "fetch CIFAR-10 there (170 MB), name one with --data or "
                        f"${DATA_ENV}, or try --data {SAMPLE} (the bundled 3,000 images).")
    return str(root)


def _hw(size: Size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _decode(data: bytes | Path, size: Size = 32) -> np.ndarray:
    """One image file -> uint8 (H, W, 3) at ``size``, as ``prepare`` fits it (see above)."""
    h, w = _hw(size)
    src = io.BytesIO(data) if isinstance(data, bytes) else data
    with Image.open(src) as im:
        if im.mode == "RGB" and im.size == (w, h) and not im.getexif():
            return np.asarray(im, dtype=np.uint8)  # CIFAR-10's JPEGs: nothing to fit
        rgb = _to_rgb(ImageOps.exif_transpose(im))
        if rgb.size != (w, h):
            rgb = _fit(rgb, (h, w), "resize")
        return np.asarray(rgb, dtype=np.uint8)


def resized(images: ImageSet, size: Size) -> ImageSet:
    """``images`` at ``size``: the same set when it is at that size already, else each
    image fitted as ``_decode`` fits a file (the bundled sample for a card's size)."""
    h, w = _hw(size)
    if images.images.shape[1:3] == (h, w):
        return images
    fitted = np.stack([np.asarray(_fit(Image.fromarray(p), (h, w), "resize"))
                       for p in images.images]) if len(images) else \
        np.zeros((0, h, w, 3), dtype=np.uint8)
    return ImageSet(fitted, images.labels, images.classes, images.names,
                    key=f"{images.key}@{h}x{w}" if images.key else "", title=images.title)


def _split_dir(root: Path, split: str) -> Path:
    """Where a split's class folders are: ``root/split``, or for the test split of a
    folder with neither train/ nor test/, ``root`` itself (``<class>/*``)."""
    split_dir = root / split
    if split_dir.is_dir():
        return split_dir
    if (split == "test" and root.is_dir() and not (root / "train").is_dir()
            and any(p.is_dir() for p in root.iterdir())):
        return root
    raise DataError(
        f"{root} is not a dataset folder: expected {split_dir} with one subfolder of "
        "images per class (an ImageFolder layout with train/ and test/), or for test "
        "images alone, one subfolder of images per class."
    )


def _folder_files(root: Path, split: str) -> tuple[list[str], list[tuple[Path, int]]]:
    split_dir = _split_dir(root, split)
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    files = [
        (f, label)
        for label, cls in enumerate(classes)
        for f in sorted((split_dir / cls).iterdir())
        if f.suffix.lower() in IMAGE_EXTENSIONS
    ]
    if not files:
        raise DataError(
            f"{split_dir} holds no images: expected one subfolder per class containing "
            f"image files ({', '.join(IMAGE_EXTENSIONS)})."
        )
    return classes, files


def _fingerprint(*parts: object) -> str:
    h = hashlib.sha256(CACHE_FORMAT.encode())
    for part in parts:
        h.update(repr(part).encode())
    return h.hexdigest()


def _cached(source: Path, split: str, fingerprint: str, count: int,
            decode: Callable[[], ImageSet], size: Size = 32) -> ImageSet:
    """``decode()``, or the arrays it returned last time for this source, split and image
    size while ``fingerprint`` (the files' names, sizes and modification times) is the same.

    One cache file per source, split and size, replaced when the files change; a cache
    that cannot be read is decoded again, and one that cannot be written only warns.
    """
    if count < CACHE_MIN_IMAGES:
        return decode()
    h, w = _hw(size)
    path = (cache_dir() / "decoded"
            / f"{_fingerprint(str(source.resolve()), split, (h, w))[:20]}.npz")
    try:
        with np.load(path, allow_pickle=False) as f:
            if str(f["fingerprint"]) == fingerprint:
                found = ImageSet(f["images"], f["labels"], [str(c) for c in f["classes"]],
                                 f["names"].tolist())
                if (found.images.shape == (count, h, w, 3)
                        and found.images.dtype == np.uint8 and len(found.labels) == count):
                    return found
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        pass  # missing or corrupt (a full disk, say): decode the files again
    data = decode()
    try:
        atomic_write(path, lambda f: np.savez(
            f, fingerprint=np.array(fingerprint), images=data.images, labels=data.labels,
            classes=np.array(data.classes), names=np.array(data.names)))
    except (OutputError, OSError) as e:  # a read-only or full cache costs only speed
        warnings.warn(f"the decoded images were not cached ({e})", stacklevel=3)
    return data


def _load_folder(root: Path, split: str, size: Size = 32) -> ImageSet:
    classes, files = _folder_files(root, split)
    stats = [f.stat() for f, _ in files]
    fingerprint = _fingerprint(classes, [(str(f.relative_to(root)), label, st.st_size,
                                          st.st_mtime_ns) for (f, label), st in
                                         zip(files, stats)], _hw(size))
    return _cached(root, split, fingerprint, len(files),
                   lambda: _decode_folder(root, classes, files, size), size)


def _decode_folder(root: Path, classes: list[str], files: list[tuple[Path, int]],
                   size: Size = 32) -> ImageSet:
    images = []
    for f, _ in files:
        try:
            images.append(_decode(f, size))
        except OSError as e:
            raise DataError(f"{f} could not be read as an image ({e}).") from None
    return ImageSet(
        images=np.stack(images),
        labels=np.array([label for _, label in files], dtype=np.int64),
        classes=classes,
        names=[str(f.relative_to(root)) for f, _ in files],
    )


def _load_pack(path: Path, split: str, size: Size = 32) -> ImageSet:
    st = path.stat()
    try:
        with np.load(path, allow_pickle=False) as pack:
            count = len(pack[f"{split}_labels"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        raise DataError(f"{path} is not a convattn dataset pack (one is made by "
                        "`python -m convattn.data pack ROOT OUT.npz`).") from None
    return _cached(path, split, _fingerprint(st.st_size, st.st_mtime_ns, _hw(size)), count,
                   lambda: _decode_pack(path, split, size), size)


def _decode_pack(path: Path, split: str, size: Size = 32) -> ImageSet:
    try:
        with np.load(path, allow_pickle=False) as pack:
            blob = pack[f"{split}_jpeg"]
            offsets = pack[f"{split}_offsets"]
            labels = pack[f"{split}_labels"]
            names = [str(n) for n in pack[f"{split}_names"]]
            classes = [str(c) for c in pack["classes"]]
    except (OSError, ValueError, KeyError):
        raise DataError(f"{path} is not a convattn dataset pack (one is made by "
                        "`python -m convattn.data pack ROOT OUT.npz`).") from None
    images = [_decode(blob[a:b].tobytes(), size) for a, b in zip(offsets[:-1], offsets[1:])]
    return ImageSet(np.stack(images), labels.astype(np.int64), classes, names)


def _load_torchvision(root: Path, split: str, download: bool) -> ImageSet:
    from torchvision.datasets import CIFAR10

    if download:  # one sentence and nothing left behind when it fails
        from convattn.files.download import download_cifar10

        download_cifar10(root)
    try:
        ds = CIFAR10(str(root), train=split == "train")
    except RuntimeError as e:
        raise DataError(f"{root} does not hold torchvision's CIFAR-10 ({e}).") from None
    return ImageSet(
        images=np.asarray(ds.data, dtype=np.uint8),
        labels=np.array(ds.targets, dtype=np.int64),
        classes=list(ds.classes),
        names=[f"{split}/{i}" for i in range(len(ds.targets))],
    )


def load_split(source: str | Path, split: str, download: bool = False, size: Size = 32
               ) -> ImageSet:
    """Read one split ("train" or "test") of a dataset into memory, its images at ``size``
    (a side or (H, W); see the module's docstring for how they are fitted)."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {SPLITS}.")
    if isinstance(source, str) and source == SAMPLE:  # the word, not a path: see above
        return resized(load_sample(split=split), size)
    root = Path(source)
    if download or (root / "cifar-10-batches-py").is_dir():
        return resized(_load_torchvision(root, split, download), size)
    if root.suffix == ".npz":
        if not root.is_file():
            raise DataError(f"{root} does not exist: expected a dataset pack (.npz).")
        return _load_pack(root, split, size)
    if not root.is_dir():
        raise DataError(
            f"{root} does not exist: expected a folder holding train/ and test/ with one "
            "subfolder of images per class, or torchvision's CIFAR-10 (use --download)."
        )
    return _load_folder(root, split, size)


def pack_folder(root: str | Path, out: str | Path) -> Path:
    """Store an ImageFolder root's files, bytes unchanged, in one .npz."""
    root, out = Path(root), Path(out)
    arrays: dict[str, np.ndarray] = {}
    for split in SPLITS:
        classes, files = _folder_files(root, split)
        blobs = [f.read_bytes() for f, _ in files]
        arrays[f"{split}_jpeg"] = np.frombuffer(b"".join(blobs), dtype=np.uint8)
        arrays[f"{split}_offsets"] = np.cumsum([0] + [len(b) for b in blobs])
        arrays[f"{split}_labels"] = np.array([label for _, label in files], dtype=np.int64)
        arrays[f"{split}_names"] = np.array([str(f.relative_to(root)) for f, _ in files])
        arrays["classes"] = np.array(classes)
    np.savez_compressed(out, **arrays)
    return out


def unpack(pack: str | Path, root: str | Path) -> Path:
    """Write a pack's files back out as an ImageFolder root (bytes unchanged)."""
    root = Path(root)
    try:
        with np.load(pack, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        parts = [(arrays[f"{s}_jpeg"], arrays[f"{s}_offsets"], arrays[f"{s}_names"])
                 for s in SPLITS]
    except (OSError, ValueError, KeyError):
        raise DataError(f"{pack} is not a convattn dataset pack (one is made by "
                        "`python -m convattn.data pack ROOT OUT.npz`).") from None
    for blob, offsets, names in parts:
        for name, a, b in zip(names, offsets[:-1], offsets[1:]):
            dest = root / str(name)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(blob[a:b].tobytes())
    return root






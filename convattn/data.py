"""CIFAR-10 data: reading it from disk into uint8 tensors, and feeding it to a model.

Sources accepted by ``load_split``:
- an ImageFolder root holding ``train/<class>/*`` and ``test/<class>/*`` (for example the
  JPEG copy of CIFAR-10), decoded once into memory;
- a folder for torchvision's CIFAR10 (``download=True`` fetches it for users online);
- a ``.npz`` pack made by ``python -m convattn.data pack ROOT OUT.npz`` (the JPEG bytes of
  an ImageFolder root in one file, for moving the dataset between machines).

The whole of CIFAR-10 is 180 MB as uint8, so training keeps it in memory (on the GPU
when there is one) and crops and flips batches there instead of going through PIL.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .info import normalise

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif")
SPLITS = ("train", "test")


class DataError(Exception):
    """A dataset that cannot be read; the message is one sentence for the user."""


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


def _decode(data: bytes | Path, size: int = 32) -> np.ndarray:
    src = io.BytesIO(data) if isinstance(data, bytes) else data
    with Image.open(src) as im:
        im = im.convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(im, dtype=np.uint8)


def _folder_files(root: Path, split: str) -> tuple[list[str], list[tuple[Path, int]]]:
    split_dir = root / split
    if not split_dir.is_dir():
        raise DataError(
            f"{root} is not a dataset folder: expected {split_dir} with one subfolder of "
            "images per class (an ImageFolder layout with train/ and test/)."
        )
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


def _load_folder(root: Path, split: str) -> ImageSet:
    classes, files = _folder_files(root, split)
    images = []
    for f, _ in files:
        try:
            images.append(_decode(f))
        except OSError as e:
            raise DataError(f"{f} could not be read as an image ({e}).") from None
    return ImageSet(
        images=np.stack(images),
        labels=np.array([label for _, label in files], dtype=np.int64),
        classes=classes,
        names=[str(f.relative_to(root)) for f, _ in files],
    )


def _load_pack(path: Path, split: str) -> ImageSet:
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
    images = [_decode(blob[a:b].tobytes()) for a, b in zip(offsets[:-1], offsets[1:])]
    return ImageSet(np.stack(images), labels.astype(np.int64), classes, names)


def _load_torchvision(root: Path, split: str, download: bool) -> ImageSet:
    from torchvision.datasets import CIFAR10

    try:
        ds = CIFAR10(str(root), train=split == "train", download=download)
    except RuntimeError as e:
        raise DataError(f"{root} does not hold torchvision's CIFAR-10 ({e}).") from None
    return ImageSet(
        images=np.asarray(ds.data, dtype=np.uint8),
        labels=np.array(ds.targets, dtype=np.int64),
        classes=list(ds.classes),
        names=[f"{split}/{i}" for i in range(len(ds.targets))],
    )


def load_split(source: str | Path, split: str, download: bool = False) -> ImageSet:
    """Read one split ("train" or "test") of a dataset into memory."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {SPLITS}.")
    root = Path(source)
    if download or (root / "cifar-10-batches-py").is_dir():
        return _load_torchvision(root, split, download)
    if root.suffix == ".npz":
        if not root.is_file():
            raise DataError(f"{root} does not exist: expected a dataset pack (.npz).")
        return _load_pack(root, split)
    if not root.is_dir():
        raise DataError(
            f"{root} does not exist: expected a folder holding train/ and test/ with one "
            "subfolder of images per class, or torchvision's CIFAR-10 (use --download)."
        )
    return _load_folder(root, split)


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



class TensorLoader:
    """Batches of normalised images from an in-memory uint8 set, on any device.

    Training batches are randomly cropped (zero padding of 4, as torchvision's
    RandomCrop(32, padding=4)) and flipped with a generator seeded from (seed, epoch):
    an epoch's batches depend on nothing else, which is what makes ``--resume`` exact.
    With ``world > 1`` each rank takes its own interleaved share of every epoch.
    """

    def __init__(
        self,
        data: ImageSet,
        batch_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        device: torch.device | str = "cpu",
        train: bool = False,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.device = torch.device(device)
        self.train = train
        self.batch_size = batch_size
        self.seed, self.rank, self.world = seed, rank, world
        images = torch.as_tensor(data.images).to(self.device)  # (N, 32, 32, 3)
        if train:
            images = torch.nn.functional.pad(images, (0, 0, 4, 4, 4, 4))  # (N, 40, 40, 3)
        self.images = images
        self.labels = torch.as_tensor(data.labels).to(self.device)
        self.mean, self.std = tuple(mean), tuple(std)

    def _indices(self, epoch: int) -> Tensor:
        n = len(self.labels)
        if not self.train:
            idx = torch.arange(n)
        else:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            idx = torch.randperm(n, generator=gen)
            idx = idx[: n // (self.batch_size * self.world) * self.batch_size * self.world]
        return idx[self.rank :: self.world] if self.world > 1 else idx

    def __len__(self) -> int:
        n = len(self._indices(0))
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    def normalise(self, batch: Tensor) -> Tensor:
        """(B, H, W, 3) uint8 -> (B, 3, H, W) float, channels_last in memory."""
        return normalise(batch, self.mean, self.std)

    def epoch(self, epoch: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        idx = self._indices(epoch)
        if self.train:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch + 7_919)
            offsets = torch.randint(0, 9, (len(idx), 2), generator=gen)
            flips = torch.rand(len(idx), generator=gen) < 0.5
            ar = torch.arange(32)
            rows = offsets[:, :1] + ar  # (n, 32)
            cols = torch.where(flips[:, None], offsets[:, 1:] + 31 - ar, offsets[:, 1:] + ar)
        for start in range(0, len(idx), self.batch_size):
            b = idx[start : start + self.batch_size]
            if self.train:
                r = rows[start : start + self.batch_size].to(self.device)
                c = cols[start : start + self.batch_size].to(self.device)
                batch = self.images[b.to(self.device)[:, None, None], r[:, :, None], c[:, None, :]]
            else:
                batch = self.images[b.to(self.device)]
            yield self.normalise(batch), self.labels[b.to(self.device)]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self.epoch(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convattn.data")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="store an ImageFolder root (train/, test/) in one .npz")
    p.add_argument("root")
    p.add_argument("out")
    u = sub.add_parser("unpack", help="write a .npz pack back out as an ImageFolder root")
    u.add_argument("pack")
    u.add_argument("root")
    args = parser.parse_args(argv)
    try:
        if args.command == "pack":
            out = pack_folder(args.root, args.out)
            print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")
        else:
            print(f"wrote {unpack(args.pack, args.root)}")
    except (DataError, OSError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

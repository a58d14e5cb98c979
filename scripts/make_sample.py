"""Make a bundled CIFAR-10 sample (``convattn.files.shipped.sample_path``).

    python -m scripts.make_sample [--data ../shared/data/cifar10-jpeg] [--split test]
                                  [--per-class N] [--out FILE]

The test sample (100 per class by default) is the set the app opens on; the training
sample (``--split train``, 200 per class by default) makes ``--data sample`` a whole
dataset, so every command runs on a fresh clone with no network.

Takes the first ``--per-class`` files (sorted by name) of each class of the split, decoded
exactly as ``convattn.files.data.load_split`` decodes them (its own file listing and
decoder), and stores them as one compressed .npz: images (N, 32, 32, 3) uint8, labels
(N,), classes, and names such as "test/cat/0000.jpg" that match the ``names`` of a
predictions file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from convattn.errors import DataError
from convattn.files import data
from convattn.files.shipped import sample_path

PER_CLASS = {"train": 200, "test": 100}


def make_sample(root: Path, out: Path, per_class: int, split: str = "test") -> Path:
    try:
        classes, files = data._folder_files(root, split)  # load_split's listing and order
    except DataError as e:
        raise SystemExit(f"error: {e}") from None
    taken: dict[int, int] = {}
    picked = []
    for f, label in files:
        if taken.get(label, 0) < per_class:
            taken[label] = taken.get(label, 0) + 1
            picked.append((f, label))
    short = [classes[k] for k in range(len(classes)) if taken.get(k, 0) < per_class]
    if short:
        raise SystemExit(f"error: fewer than {per_class} images in {', '.join(short)}.")
    images = np.stack([data._decode(f) for f, _ in picked])  # load_split's decoder
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, images=images,
                        labels=np.array([label for _, label in picked], dtype=np.int64),
                        classes=np.array(classes),
                        names=np.array([str(f.relative_to(root)) for f, _ in picked]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/cifar10-jpeg"))
    parser.add_argument("--split", choices=list(PER_CLASS), default="test")
    parser.add_argument("--per-class", type=int, default=None,
                        help="images per class (default: 200 for train, 100 for test)")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: the split's bundled sample in convattn/resources/")
    args = parser.parse_args(argv)
    per_class = args.per_class or PER_CLASS[args.split]
    out = make_sample(args.data, args.out or sample_path(args.split), per_class, args.split)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.2f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

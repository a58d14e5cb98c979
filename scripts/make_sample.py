"""Make the bundled CIFAR-10 sample the app opens on (``convattn.files.shipped.sample_path``).

    python -m scripts.make_sample [--data ../shared/data/cifar10-jpeg] [--per-class 100]

Takes the first ``--per-class`` files (sorted by name) of each class of the test split,
decoded exactly as ``convattn.files.data.load_split`` decodes them, and stores them as one
compressed .npz: images (N, 32, 32, 3) uint8, labels (N,), classes, and names such as
"test/cat/0000.jpg" that match the ``names`` of a predictions file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from convattn.files.data import IMAGE_EXTENSIONS
from convattn.files.shipped import sample_path

DEFAULT_OUT = sample_path()


def make_sample(root: Path, out: Path, per_class: int) -> Path:
    split_dir = root / "test"
    if not split_dir.is_dir():
        raise SystemExit(f"error: {split_dir} does not exist (expected an ImageFolder root).")
    classes = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    images, labels, names = [], [], []
    for label, cls in enumerate(classes):
        files = sorted(f for f in (split_dir / cls).iterdir()
                       if f.suffix.lower() in IMAGE_EXTENSIONS)[:per_class]
        for f in files:
            with Image.open(f) as im:
                pixels = np.asarray(im.convert("RGB"), dtype=np.uint8)
            if pixels.shape != (32, 32, 3):
                raise SystemExit(f"error: {f} is {pixels.shape}, not a 32x32 CIFAR image.")
            images.append(pixels)
            labels.append(label)
            names.append(str(f.relative_to(root)))
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, images=np.stack(images), labels=np.array(labels, dtype=np.int64),
                        classes=np.array(classes), names=np.array(names))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/cifar10-jpeg"))
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    out = make_sample(args.data, args.out, args.per_class)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.2f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

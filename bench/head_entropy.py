"""How sharply each head of each attention module looks: mean row entropy / log N.

    python -m bench.head_entropy [--checkpoints seed,seed-mh4,resnet9-attn] [--images 200]

On ``--images`` of the bundled sample, the same number from every class
(``stats.balanced_order``), CPU. 1 means every query spreads its attention evenly over all
N positions; lower means the head picks positions out. The Attention statistics page
averages the heads; this shows them apart.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from convattn import attention_maps
from convattn.files.checkpoint import load_checkpoint
from convattn.files.shipped import sample_path
from convattn.readout.stats import balanced_order, row_entropy

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = sample_path()


def head_entropy(checkpoint: Path, images: int, batch: int = 50) -> dict[str, list[float]]:
    """{module: [mean row entropy / log N of each head]} over the first ``images`` of the
    sample's balanced order."""
    model, info = load_checkpoint(checkpoint)
    with np.load(SAMPLE) as f:
        idx = balanced_order(f["labels"])[:images]
        pixels = f["images"][idx]
    sums: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for start in range(0, len(pixels), batch):
            x = info.normalise(pixels[start:start + batch])
            for name, a in attention_maps(model, x, per_head=True).items():  # (B, h, N, N)
                b, h, n, _ = a.shape
                e = row_entropy(a.reshape(b * h, n, n)).view(b, h, n).sum(dim=(0, 2))
                sums[name] = sums.get(name, 0) + e / (n * math.log(n))
    return {name: (s / len(pixels)).tolist() for name, s in sums.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoints", default="seed,seed-mh4,resnet9-attn")
    p.add_argument("--images", type=int, default=200)
    args = p.parse_args()
    for name in args.checkpoints.split(","):
        for module, heads in head_entropy(ROOT / "checkpoints" / f"{name}.pt",
                                          args.images).items():
            print(f"{name:14s} {module:10s} " + "  ".join(f"{v:.3f}" for v in heads))


if __name__ == "__main__":
    main()

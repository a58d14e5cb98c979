"""How long the nearest-neighbour features of a training split take.

    python bench/bench_neighbours.py [CHECKPOINT ...] [--data ROOT] [--limit N]
                                     [--device cpu|cuda] [--batch-size 500]

For each checkpoint (default: checkpoints/seed.pt and checkpoints/resnet9-attn.pt): the
time to compute the features of the train split (only the first ``--limit`` images when
given, then extrapolated to the whole split and marked so), to key and read them from the
cache (in a temporary folder; with ``--limit`` only the key is timed), and to find 8
neighbours for 100 queries among as many rows as the split has. Decoding the JPEGs is timed
once, apart.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from convattn.files.checkpoint import load_checkpoint
from convattn.files.data import load_split
from convattn.trust.neighbours import cached_features, features_key, image_features, nearest

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="*", type=Path,
                   default=[CHECKPOINTS / "seed.pt", CHECKPOINTS / "resnet9-attn.pt"])
    p.add_argument("--data", default="../shared/data/cifar10-jpeg")
    p.add_argument("--limit", type=int, default=0, help="time only the first N images")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=500)
    args = p.parse_args()
    where = (torch.cuda.get_device_name() if args.device == "cuda"
             else f"CPU, {torch.get_num_threads()} threads")
    t0 = time.perf_counter()
    train = load_split(args.data, "train")
    print(f"decoded {len(train)} train images in {time.perf_counter() - t0:.1f}s")
    n = min(args.limit or len(train), len(train))
    for ckpt in args.checkpoints:
        model, info = load_checkpoint(ckpt, args.device)
        image_features(model, info, train.images[: args.batch_size], args.batch_size)  # warm
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            if n == len(train):  # the cache is keyed by the whole folder: time a miss
                feats = cached_features(ckpt, args.data, model=model, info=info, images=train,
                                        batch_size=args.batch_size, directory=tmp)
                note = " (a cache miss: key, features, write)"
            else:
                feats = image_features(model, info, train.images[:n], args.batch_size)
                note = f" (measured on {n}, extrapolated)"
            seconds = time.perf_counter() - t0
            print(f"{ckpt.name:18s} features {feats.shape}: {n / seconds:,.0f} images/s, "
                  f"{len(train)} images in {seconds * len(train) / n:,.0f}s{note} [{where}]")
            t0 = time.perf_counter()
            if n == len(train):
                cached = cached_features(ckpt, args.data, directory=tmp)
                print(f"{'':18s} cache hit (key + read): {time.perf_counter() - t0:.2f}s")
            else:  # time the key alone, and search as many rows as the split has
                features_key(ckpt, args.data)
                print(f"{'':18s} cache key (hash + stat of every file): "
                      f"{time.perf_counter() - t0:.2f}s")
                cached = np.resize(feats.astype(np.float16), (len(train), feats.shape[1]))
        t0 = time.perf_counter()
        nearest(cached, feats[:100].astype(np.float32), k=8)
        print(f"{'':18s} 8 neighbours of 100 queries among {len(cached)}: "
              f"{time.perf_counter() - t0:.2f}s")

if __name__ == "__main__":
    main()

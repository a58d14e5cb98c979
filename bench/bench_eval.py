"""Evaluation throughput on a whole test split.

    python bench/bench_eval.py CHECKPOINT [CHECKPOINT ...] --data ROOT [--device cpu|cuda]

Times the forward passes over every test image (data already decoded in memory), fp32,
batch 500, and prints images per second and accuracy.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from convattn.cli.flags import exit_on_user_error
from convattn.device import pick_device
from convattn.jobs.evaluation import EvalConfig, evaluate_checkpoint


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--data", default="../shared/data/cifar10-jpeg")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    pick_device(args.device)
    name = (torch.cuda.get_device_name() if args.device == "cuda"
            else f"CPU ({torch.get_num_threads()} threads)")
    with tempfile.TemporaryDirectory() as tmp:
        for ckpt in args.checkpoints:
            cfg = EvalConfig(data=args.data, device=args.device, out=str(Path(tmp) / "p.npz"))
            evaluate_checkpoint(ckpt, cfg, progress=False)  # warm-up
            r = evaluate_checkpoint(ckpt, cfg, progress=False)
            print(f"{Path(ckpt).name:20s} {r['count']} images in {r['seconds']:.2f}s = "
                  f"{r['images_per_second']:,.0f} images/s, accuracy {r['accuracy']:.2f}% "
                  f"[{name}]")


if __name__ == "__main__":
    sys.exit(exit_on_user_error(main))

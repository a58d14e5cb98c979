"""airbench94 (Jordan, "94% on CIFAR-10 in 3.29 seconds on a single GPU", 2024) on the
project's JPEG copy of CIFAR-10: the fast-training anchor beside our trainer, same GPU.

    pip install airbench==0.1.8      # not a dependency of convattn; needs a CUDA GPU
    python bench/bench_airbench.py --data ../shared/data/cifar10-jpeg [--runs 5]

airbench's loader reads ``cifar10/train.pt`` and ``cifar10/test.pt`` (torchvision's uint8
arrays) under the working directory, so this writes those from ``--data`` (any source
``convattn.files.data.load_split`` reads) into ``--workdir`` and runs airbench's own
``train94`` there, unchanged. Each run is timed by the wall clock around ``train94``
(network built, whitening initialised, 9.9 epochs; CUDA synchronised), after one warm-up.
Printed per run: seconds, test accuracy without test-time augmentation and with airbench's
own (level 2: mirror and translate, which is how airbench reports its 94 %).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from convattn.cli.flags import exit_on_user_error
from convattn.device import pick_device
from convattn.errors import DataError
from convattn.files.data import load_split


def write_airbench_data(source: str, workdir: Path) -> None:
    """cifar10/{train,test}.pt in airbench's format, from any dataset convattn reads."""
    folder = workdir / "cifar10"
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        data = load_split(source, split)
        torch.save({"images": torch.from_numpy(data.images),
                    "labels": torch.from_numpy(data.labels),
                    "classes": list(data.classes)}, folder / f"{split}.pt")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="dataset root or .npz pack")
    p.add_argument("--workdir", default="/tmp/airbench", help="where cifar10/*.pt go")
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    pick_device("cuda")  # airbench runs on a CUDA GPU only
    try:
        import airbench
    except ImportError:
        raise DataError("airbench is not installed: pip install airbench==0.1.8.") from None

    workdir = Path(args.workdir)
    write_airbench_data(args.data, workdir)
    os.chdir(workdir)
    test_loader = airbench.CifarLoader("cifar10", train=False, batch_size=2000)
    airbench.warmup94(verbose=False)
    rows = []
    for run in range(args.runs):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        model = airbench.train94(run=run, verbose=False)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        plain = airbench.evaluate(model, test_loader, tta_level=0)
        tta = airbench.evaluate(model, test_loader, tta_level=2)
        rows.append({"seconds": seconds, "accuracy": 100 * plain, "accuracy_tta": 100 * tta})
        print(f"run {run}: {seconds:6.2f} s   test {100 * plain:5.2f}%   "
              f"with TTA {100 * tta:5.2f}%", flush=True)
    summary = {k: (statistics.mean(r[k] for r in rows),
                   statistics.stdev(r[k] for r in rows) if len(rows) > 1 else 0.0)
               for k in rows[0]}
    print("mean ± std: " + "   ".join(f"{k} {m:.2f} ± {s:.2f}" for k, (m, s) in summary.items()))
    print(json.dumps({"device": torch.cuda.get_device_name(), "runs": rows}))


if __name__ == "__main__":
    sys.exit(exit_on_user_error(main))

"""Turn training runs into shippable checkpoints and a results table.

    python bench/ship.py RUNS_DIR OUT_DIR

RUNS_DIR holds ``<arch>-s<seed>.pt`` files written by convattn.train. For every arch the
seed-0 run is copied to ``OUT_DIR/<arch>.pt`` without optimizer state (the ResNet-9s with
fp16 weights, to keep them small); every run's figures and history go into
``OUT_DIR/zoo-results.json``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from convattn.files.checkpoint import read_checkpoint, save_checkpoint

HALF = ("resnet9", "resnet9-attn")


def first_reaching(history: list[dict], target: float) -> dict | None:
    for h in history:
        if h["test_accuracy"] >= target:
            return {"epoch": h["epoch"], "elapsed_seconds": h["elapsed_seconds"]}
    return None


def main(runs: str, out: str) -> None:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for path in sorted(Path(runs).glob("*.pt")):
        m = re.fullmatch(r"(.+)-s(\d+)", path.stem)
        if not m:
            continue
        arch, seed = m.group(1), int(m.group(2))
        ckpt = read_checkpoint(path)
        hist = ckpt["history"]
        results.append({
            "arch": arch,
            "seed": seed,
            "epochs": ckpt["epoch"],
            "planned_epochs": ckpt["train_config"]["epochs"],
            "test_accuracy": hist[-1]["test_accuracy"],
            "best_test_accuracy": max(h["test_accuracy"] for h in hist),
            "train_seconds": ckpt["metrics"]["train_seconds"],
            "parameters": ckpt["metrics"]["parameters"],
            "device": ckpt["metrics"]["device"],
            "first_94": first_reaching(hist, 94.0),
            "train_config": ckpt["train_config"],
            "history": hist,
        })
        if seed == 0:
            shipped = {k: v for k, v in ckpt.items() if k not in ("optimizer", "scheduler")}
            save_checkpoint(shipped, out_dir / f"{arch}.pt", half=arch in HALF)
        print(f"{arch:14s} seed {seed}  {hist[-1]['test_accuracy']:.2f}%  "
              f"{ckpt['metrics']['train_seconds']:.0f}s")
    (out_dir / "zoo-results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:3])

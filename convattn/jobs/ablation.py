"""The ablation job: a checkpoint's predictions on a test split with each ablation of
``convattn.explain.ablation`` applied, written to ``<name>.ablation.npz``
(``python -m convattn.ablation``)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from convattn.device import pick_device
from convattn.errors import DataError
from convattn.explain.ablation import (
    ABLATIONS,
    ablate_images,
    ablation_path,
    flip_counts,
    save_ablation,
)
from convattn.files.checkpoint import CheckpointError, check_writable, load_checkpoint
from convattn.files.data import load_split, resolve_data
from convattn.files.shipped import output_path
from convattn.jobs.options import (
    batch_size_option,
    data_option,
    device_option,
    download_option,
    out_option,
    overwrite_shipped_option,
    split_option,
)
from convattn.readout.attention import attention_modules


@dataclass
class AblationConfig:
    data: str = data_option()
    download: bool = download_option()
    split: str = split_option()
    device: str = device_option()
    batch_size: int = batch_size_option(250)
    out: str = out_option("ablation file")
    overwrite_shipped: bool = overwrite_shipped_option("ablation file")



def ablate_checkpoint(checkpoint: str | Path, cfg: AblationConfig) -> dict[str, object]:
    out, note = output_path(checkpoint, cfg.out, ablation_path(checkpoint),
                            cfg.overwrite_shipped)
    check_writable(out)
    model, info = load_checkpoint(checkpoint, pick_device(cfg.device))
    if not attention_modules(model):
        raise CheckpointError(f"{checkpoint} ({info.arch}) has no attention module to "
                              "ablate.")
    source = resolve_data(cfg.data, cfg.download)
    data = load_split(source, cfg.split, cfg.download)
    if data.classes != info.classes:
        raise DataError(f"{source} has classes {data.classes}, but the checkpoint was "
                        f"trained on {info['classes']}.")

    def report(done: int, total: int) -> None:
        print(f"\r{done:,}/{total:,} images", end="", file=sys.stderr, flush=True)

    images, labels = data.images, data.labels
    probs = ablate_images(model, images, info.mean, info.std,
                          batch_size=cfg.batch_size, progress=report)
    print(file=sys.stderr)
    save_ablation(out, data.names, labels, data.classes, probs, f"{source}:{cfg.split}")
    real = probs["real"].argmax(axis=1)
    result: dict[str, object] = {"path": str(out), "note": note, "count": len(labels),
                                 "accuracy": {k: float((v.argmax(1) == labels).mean() * 100)
                                              for k, v in probs.items()}}
    for kind in ABLATIONS:
        counts = flip_counts(labels, real, probs[kind].argmax(axis=1), len(data.classes))
        result[kind] = {o: int(c.sum()) for o, c in counts.items()}
    return result

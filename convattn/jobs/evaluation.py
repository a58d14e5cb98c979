"""The evaluation job (``python -m convattn.evaluate``, see ``convattn.cli.evaluate``):
accuracy, per-class accuracy and the confusion matrix of a checkpoint on a split, with
accuracy around the known label errors and calibration; it writes the predictions file
(``convattn.files.predictions``). Only when asked (``fit_ood``, ``--fit-ood``) does it fit
the out-of-distribution flag (``convattn.trust.ood``) and write a checkpoint holding it:
a job that reads a checkpoint leaves it alone unless told otherwise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from convattn.device import pick_device
from convattn.errors import DataError, FlagError
from convattn.files.checkpoint import (
    atomic_save,
    check_writable,
    load_checkpoint,
    read_checkpoint,
)
from convattn.files.data import (
    CIFAR10_CLASSES,
    ImageSet,
    load_split,
    resolve_data,
)
from convattn.files.loader import TensorLoader
from convattn.files.predictions import calibration_arrays, predictions_path, save_predictions
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
from convattn.trust import ood as flag
from convattn.trust.calibration import (
    calibrated,
    expected_calibration_error,
)
from convattn.trust.label_errors import corrected_accuracy


def predict(model: nn.Module, loader: TensorLoader, amp: bool = False, progress: bool = False,
            flip: bool = False) -> tuple[Tensor, Tensor]:
    """Class probabilities (N, K) in fp32 on the CPU, and the labels (N,).

    ``flip`` is test-time augmentation: the mean of the probabilities of each image and
    of its mirror image (a different classifier from the one the app shows, so results
    made with it must say so).
    """
    was_training = model.training
    model.eval()
    probs, labels = [], []
    batches = tqdm(loader, total=len(loader), desc="evaluating", disable=not progress or None,
                   leave=False)
    with torch.no_grad(), torch.autocast(loader.device.type, dtype=torch.bfloat16,
                                         enabled=amp):
        for x, y in batches:
            p = model(x).float().softmax(dim=1)  # (B, K)
            if flip:
                p = (p + model(x.flip(3)).float().softmax(dim=1)) / 2
            probs.append(p)
            labels.append(y)
    model.train(was_training)
    return torch.cat(probs).cpu(), torch.cat(labels).cpu()


def summarise(probs: Tensor, labels: Tensor, num_classes: int) -> dict[str, Any]:
    """Accuracy (percent), per-class accuracy and the confusion matrix [true, predicted]."""
    pred = probs.argmax(1)
    confusion = torch.bincount(labels * num_classes + pred, minlength=num_classes**2)
    confusion = confusion.view(num_classes, num_classes)
    per_class = 100.0 * confusion.diag().float() / confusion.sum(1).clamp_min(1).float()
    return {
        "accuracy": 100.0 * (pred == labels).float().mean().item(),
        "per_class_accuracy": per_class.tolist(),
        "confusion": confusion.tolist(),
        "count": len(labels),
    }














OOD_TRAIN_IMAGES = 5000  # enough for the flag (bench/bench_ood.py), and 10x faster than 50k


@dataclass
class EvalConfig:
    data: str = data_option()
    download: bool = download_option()
    split: str = split_option()
    device: str = device_option()
    batch_size: int = batch_size_option(500)
    out: str = out_option("predictions file")
    overwrite_shipped: bool = overwrite_shipped_option(
        "predictions file (and, with --fit-ood, the checkpoint)")
    tta_flip: bool = field(default=False, metadata={
        "help": "test-time augmentation: average each image's probabilities with its "
                "mirror image's (reported as such; written to a separate file)"})
    fit_ood: bool = field(default=False, metadata={
        "help": "also fit the out-of-distribution flag on training images and set its "
                "threshold on the test split (95 %% unflagged), and write the checkpoint "
                "with it (weights unchanged; runs/<name>.pt for a shipped one unless "
                "--overwrite-shipped); test split only, not with --tta-flip"})
    ood_method: str = field(default=flag.DEFAULT_METHOD, metadata={
        "help": "the flag's method", "choices": list(flag.METHODS)})
    ood_train_images: int = field(default=OOD_TRAIN_IMAGES, metadata={
        "help": "training images the flag is fitted on: a fixed random subset (0: all)",
        "min": 0})


def evaluate_checkpoint(checkpoint: str | Path, cfg: EvalConfig, progress: bool = True
                        ) -> dict[str, Any]:
    out, note = output_path(checkpoint, cfg.out, predictions_path(checkpoint, cfg.tta_flip),
                            cfg.overwrite_shipped)
    check_writable(out)
    if cfg.fit_ood and (cfg.split != "test" or cfg.tta_flip):
        raise FlagError("--fit-ood sets the flag's threshold on the plain model's test "
                        "predictions: use it with --split test and without --tta-flip.")
    if cfg.fit_ood:
        ood_out, ood_note = output_path(checkpoint, "", Path(checkpoint), cfg.overwrite_shipped)
        check_writable(ood_out)
    device = pick_device(cfg.device)
    model, info = load_checkpoint(checkpoint, device)
    source = resolve_data(cfg.data, cfg.download)
    data = load_split(source, cfg.split, cfg.download)
    if data.classes != info.classes:
        raise DataError(f"{source} has classes {data.classes}, but the checkpoint was "
                        f"trained on {info['classes']}.")
    loader = TensorLoader(data, cfg.batch_size, tuple(info.mean), tuple(info.std),
                          device)
    t0 = time.perf_counter()
    probs, labels = predict(model, loader, progress=progress, flip=cfg.tta_flip)
    seconds = time.perf_counter() - t0
    result = summarise(probs, labels, len(data.classes))
    result["seconds"] = seconds
    result["images_per_second"] = len(labels) / seconds
    p, y = probs.numpy(), labels.numpy()
    calibration = calibration_arrays(y, p)
    result["ece"] = expected_calibration_error(y, p)
    result["ece_calibrated"] = expected_calibration_error(
        y, calibrated(p, calibration, np.arange(len(y))))
    result["temperatures"] = calibration["temperatures"].tolist()
    if cfg.split == "test" and list(data.classes) == list(CIFAR10_CLASSES):
        result["label_errors"] = corrected_accuracy(data.names, y, p, data.classes)
    described = f"{source}:{cfg.split}" + (" (flip TTA)" if cfg.tta_flip else "")
    result["predictions"] = str(save_predictions(out, data, probs, described, **calibration))
    result["note"] = note
    if cfg.fit_ood:
        result["ood"] = fit_ood(checkpoint, ood_out, model, info, source, data, cfg, progress)
        result["ood"]["note"] = ood_note
    result["tta"] = "flip" if cfg.tta_flip else None
    result["split"] = cfg.split
    result["classes"] = data.classes
    return result


def fit_ood(checkpoint: str | Path, out: Path, model: nn.Module, info: Any, source: str,
            test: ImageSet, cfg: EvalConfig, progress: bool = False) -> dict[str, Any]:
    """Fit the flag on ``cfg.ood_train_images`` training images (a subset fixed by seed 0:
    the same images every run), threshold it on ``test`` and write the checkpoint with it
    to ``out``: the file's other keys, weights included, are kept exactly as they were."""
    train = load_split(source, "train")
    n = len(train) if not cfg.ood_train_images else min(cfg.ood_train_images, len(train))
    pick = np.sort(np.random.default_rng(0).permutation(len(train))[:n])
    bar = tqdm(total=n + len(test), desc="out-of-distribution flag", leave=False,
               disable=not progress or None)
    done = {"base": 0}

    def tick(k: int, _total: int) -> None:
        bar.update(done["base"] + k - bar.n)

    fitted = flag.fit(flag.evidence(model, info, train.images[pick], train.labels[pick],
                                  cfg.batch_size, tick), cfg.ood_method,
                     f"fitted on {n} training images of {source}")
    done["base"] = n
    scores = fitted.score(flag.evidence(model, info, test.images, None, cfg.batch_size, tick))
    bar.close()
    fitted = flag.with_threshold(fitted, scores,
                                note=f"thresholded on its {len(test)} test images")
    ckpt = read_checkpoint(checkpoint)
    ckpt[flag.KEY] = fitted.to_dict()
    atomic_save(ckpt, out)
    return {"method": fitted.method, "label": flag.METHODS[fitted.method], "train_images": n,
            "threshold": fitted.threshold, "flagged": float((scores > fitted.threshold)
                                                             .float().mean()),
            "test_images": len(test), "checkpoint": str(out)}







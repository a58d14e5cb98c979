"""Evaluation: ``python -m convattn.evaluate CHECKPOINT --data ROOT``.

Prints accuracy, per-class accuracy and the confusion matrix, and writes a per-image
predictions file beside the checkpoint (``<name>.predictions.npz``: index, image name,
true label, class probabilities) that the app reads instead of re-running the model.
For a checkpoint shipped in the repository's checkpoints/ folder the file goes to
``runs/<name>.predictions.npz`` instead, unless ``--overwrite-shipped`` is given.

On the test split it also fits the out-of-distribution flag (``convattn.ood``) on a fixed
subset of the training split and sets its threshold so that 95 % of the test images are
not flagged, and writes both into the checkpoint (weights untouched; a shipped checkpoint
is written to ``runs/<name>.pt`` unless ``--overwrite-shipped``); ``--no-ood`` skips it.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from . import ood as flag  # not "ood": that is EvalConfig's field
from .calibration import (
    calibrated,
    cross_fit_temperature,
    expected_calibration_error,
    fit_temperature,
    logits_from_probs,
    two_folds,
)
from .checkpoint import atomic_save, atomic_write, check_writable, load_checkpoint, read_checkpoint
from .cli import output_path, run_on_checkpoint
from .data import (
    CIFAR10_CLASSES,
    DEFAULT_DATA_HELP,
    DataError,
    ImageSet,
    load_split,
    resolve_data,
)
from .device import pick_device
from .label_errors import corrected_accuracy
from .loader import TensorLoader


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


def predictions_path(checkpoint: str | Path, flip: bool = False) -> Path:
    """Where the predictions of ``checkpoint`` go; the app reads only the plain ones, since
    it shows the model without test-time augmentation."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + (".predictions-flip-tta.npz" if flip
                                                   else ".predictions.npz"))


def save_arrays(path: str | Path, **arrays: np.ndarray) -> Path:
    """np.savez_compressed to ``path`` atomically: a reader never sees half a file."""
    return atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """An .npz written by ``save_arrays`` as plain arrays (no pickles)."""
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def save_predictions(path: str | Path, data: ImageSet, probs: Tensor, source: str,
                     **extra: np.ndarray) -> Path:
    """The predictions file the app reads; ``extra`` holds e.g. the temperatures (see
    ``calibration_arrays``)."""
    return save_arrays(
        path,
        index=np.arange(len(data)),
        names=np.array(data.names),
        labels=np.asarray(data.labels),
        probs=probs.numpy().astype(np.float32),  # fp16 rounding can change the top class
        classes=np.array(data.classes),
        source=np.array(source),
        **extra,
    )


def calibration_arrays(labels: np.ndarray, probs: np.ndarray) -> dict[str, np.ndarray]:
    """What a predictions file keeps for temperature scaling: the two folds of the
    cross-fitting (``fold``), each fold's fitted T (``temperatures``: temperatures[f] was
    fitted on fold f and calibrates the other fold), and T fitted on every image
    (``temperature``, for images outside the file, such as uploads)."""
    _, temperatures = cross_fit_temperature(labels, probs)
    return {"fold": two_folds(len(labels)).astype(np.int8),
            "temperatures": np.asarray(temperatures, dtype=np.float64),
            "temperature": np.array(fit_temperature(labels, logits_from_probs(probs)))}


load_predictions = load_arrays


OOD_TRAIN_IMAGES = 5000  # enough for the flag (bench/bench_ood.py), and 10x faster than 50k


@dataclass
class EvalConfig:
    data: str = field(default="", metadata={"help": "dataset root (see convattn.train --data)",
                                            "default_help": DEFAULT_DATA_HELP})
    download: bool = field(default=False, metadata={"help": "download CIFAR-10 (torchvision)"})
    split: str = field(default="test", metadata={"help": "split", "choices": ["train", "test"]})
    device: str = field(default="auto", metadata={"help": "where to run",
                                                  "choices": ["auto", "cpu", "cuda"]})
    batch_size: int = field(default=500, metadata={"help": "images per batch", "min": 1})
    out: str = field(default="", metadata={
        "help": "predictions file", "default_help": "beside the checkpoint, or "
                                                    "runs/<name> for a shipped one"})
    overwrite_shipped: bool = field(default=False, metadata={
        "help": "write over the predictions file shipped with a checkpoint in the "
                "repository's checkpoints/ folder (and, with --ood, the checkpoint)"})
    tta_flip: bool = field(default=False, metadata={
        "help": "test-time augmentation: average each image's probabilities with its "
                "mirror image's (reported as such; written to a separate file)"})
    ood: bool = field(default=True, metadata={
        "help": "fit the out-of-distribution flag on training images and set its threshold "
                "on the test split (95 %% unflagged), written into the checkpoint (runs/"
                "<name>.pt for a shipped one unless --overwrite-shipped); test split only"})
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
    with_ood = cfg.ood and cfg.split == "test" and not cfg.tta_flip
    if with_ood:
        ood_out, ood_note = output_path(checkpoint, "", Path(checkpoint), cfg.overwrite_shipped)
        check_writable(ood_out)
    device = pick_device(cfg.device)
    model, info = load_checkpoint(checkpoint, device)
    source = resolve_data(cfg.data, cfg.download)
    data = load_split(source, cfg.split, cfg.download)
    if data.classes != info["classes"]:
        raise DataError(f"{source} has classes {data.classes}, but the checkpoint was "
                        f"trained on {info['classes']}.")
    loader = TensorLoader(data, cfg.batch_size, tuple(info["mean"]), tuple(info["std"]),
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
    if with_ood:
        result["ood"] = fit_ood(checkpoint, ood_out, model, info, source, data, cfg, progress)
        result["ood"]["note"] = ood_note
    result["tta"] = "flip" if cfg.tta_flip else None
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


def format_report(result: dict[str, Any]) -> str:
    classes = result["classes"]
    tta = " with flip test-time augmentation" if result.get("tta") else ""
    lines = [f"accuracy {result['accuracy']:.2f}% on {result['count']} images{tta} "
             f"({result['images_per_second']:.0f} images/s)"]
    errors = result.get("label_errors")
    if errors and errors["known"]:
        lines.append(f"  {errors['accuracy_corrected']:.2f}% with the {errors['corrected']} "
                     f"correctable known label errors relabelled, "
                     f"{errors['accuracy_without_errors']:.2f}% without the "
                     f"{errors['validated']} validated ones (Northcutt et al. 2021, "
                     "cleanlab/label-errors)")
    if "ece" in result:
        t0, t1 = result["temperatures"]
        lines.append(f"calibration error (ECE, 15 bins) {100 * result['ece']:.2f}%, "
                     f"{100 * result['ece_calibrated']:.2f}% after temperature scaling "
                     f"(T = {t0:.3f} and {t1:.3f}, two-fold cross-fitted)")
    lines += ["", "per class:"]
    lines += [f"  {c:>12s} {a:6.2f}%" for c, a in zip(classes, result["per_class_accuracy"])]
    lines += ["", "confusion (rows: true, columns: predicted):",
              " " * 13 + "".join(f"{c[:5]:>6s}" for c in classes)]
    lines += [f"  {c:>10s} " + "".join(f"{n:6d}" for n in row)
              for c, row in zip(classes, result["confusion"])]
    o = result.get("ood")
    if o:
        lines += ["", f"out-of-distribution flag ({o['label']}, fitted on "
                      f"{o['train_images']} training images): threshold "
                      f"{o['threshold']:.4g} flags {100 * o['flagged']:.1f}% of the "
                      f"{o['test_images']} test images; written to {o['checkpoint']}"]
        if o.get("note"):
            lines.append(o["note"])
    lines += ["", f"predictions written to {result['predictions']}"]
    if result.get("note"):
        lines.append(result["note"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return run_on_checkpoint(argv, "python -m convattn.evaluate", __doc__, EvalConfig(),
                             "a convattn checkpoint (.pt)", evaluate_checkpoint, format_report)


if __name__ == "__main__":
    sys.exit(main())

"""Checkpoints, predictions, ablation and results files for the page tests, made on the
fly from the bundled sample (the tests need no dataset)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from convattn.files.checkpoint import make_checkpoint, save_checkpoint
from convattn.files.data import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD
from convattn.files.shipped import sample_path
from convattn.nn.models import create_model

CLASSES = list(CIFAR10_CLASSES)


def history(accuracies: list[float], gamma: bool) -> list[dict]:
    return [{"epoch": i + 1, "train_loss": 2 - acc / 100, "train_accuracy": acc + 3,
             "test_accuracy": acc, "lr": 0.01, **({"gammas": {"attention": acc / 100}}
                                                 if gamma else {})}
            for i, acc in enumerate(accuracies)]


def checkpoint(path: Path, arch: str, gamma: float = 0.5, accuracies=(40.0, 50.0)) -> Path:
    torch.manual_seed(0)
    model = create_model(arch)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.fill_(gamma)
    ckpt = make_checkpoint(model, arch, {}, CLASSES, CIFAR10_MEAN, CIFAR10_STD,
                           metrics={"test_accuracy": accuracies[-1]},
                           history=history(list(accuracies), arch == "seed"),
                           train_config={"seed": 0, "epochs": len(accuracies)})
    return save_checkpoint(ckpt, path)


def sample() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.load(sample_path()) as f:
        return f["images"], f["names"], f["labels"]


# Three mistakes in the bundled sample (index, predicted class, confidence).
MISTAKES = [(5, 1, 0.6), (17, 1, 0.95), (230, 3, 0.8)]


def write_predictions(ckpt: Path) -> None:
    _, names, labels = sample()
    probs = np.full((len(labels), 10), 0.01, dtype=np.float32)
    probs[np.arange(len(labels)), labels] = 0.91
    for i, pred, conf in MISTAKES:
        probs[i] = (1 - conf) / 9
        probs[i, pred] = conf
    np.savez_compressed(ckpt.with_name(ckpt.stem + ".predictions.npz"),
                        index=np.arange(len(names)), names=names, labels=labels,
                        probs=probs.astype(np.float16), classes=np.array(CLASSES),
                        source=np.array("test"))


def write_ablation(ckpt: Path) -> dict[str, np.ndarray]:
    _, names, labels = sample()
    preds = {"real": labels.copy(), "gamma0": labels.copy(), "uniform": labels.copy()}
    preds["real"][[1, 2]] = 9  # the real model gets 1 and 2 wrong
    preds["gamma0"][[3, 4, 5, 150]] = 8  # gamma 0 gets 3, 4, 5 and 150 wrong ...
    preds["gamma0"][2] = 7  # ... and 2, as another class than the real model
    preds["uniform"][400] = 0
    arrays = {}
    for v, p in preds.items():
        probs = np.full((len(p), 10), 0.02, dtype=np.float32)
        probs[np.arange(len(p)), p] = 0.82
        arrays[f"probs_{v}"] = probs.astype(np.float16)
        arrays[f"pred_{v}"] = p
    np.savez_compressed(ckpt.with_name(ckpt.stem + ".ablation.npz"), names=names,
                        labels=labels, classes=np.array(CLASSES), source=np.array("t"),
                        **arrays)
    return preds


def write_results(folder: Path) -> None:
    runs = []
    for arch, finals in (("seed", [78.0, 80.0, 79.0]), ("seed-noattn", [77.0, 78.0, 76.0])):
        for seed, final in enumerate(finals):
            runs.append({"arch": arch, "seed": seed, "epochs": 3, "test_accuracy": final,
                         "best_test_accuracy": final + 0.5, "train_seconds": 100 + seed,
                         "parameters": 386891 if arch == "seed" else 374282,
                         "device": "GPU", "history": history([50, 60, final],
                                                              arch == "seed")})
    (folder / "zoo-results.json").write_text(json.dumps(runs))

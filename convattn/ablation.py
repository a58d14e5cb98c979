"""Does attention change the answer? Predictions with attention switched off.

``python -m convattn.ablation CHECKPOINT --data ROOT`` writes ``<name>.ablation.npz``
beside the checkpoint (``runs/<name>.ablation.npz`` for a checkpoint shipped in the
repository's checkpoints/ folder, unless ``--overwrite-shipped``): the class
probabilities of every test image from the real model and from two ablations of every
ConvAttentionModule, each run on a private copy (the given model, possibly cached and
shared by many threads, is never touched):

- ``gamma0``: gamma = 0, so each module outputs LayerNorm(X): the network as if
  attention had never been mixed in (it keeps the LayerNorm it was trained with).
- ``uniform``: conv_q and conv_k zeroed, so every score q_i . k_j is 0 and every query
  attends to all N positions with weight 1/N. Attention is still mixed in with the learned
  gamma, but it no longer chooses where to look: this asks whether *where* matters.

Comparing each ablation with the real model, an image is "fixed" by attention when the
ablated model gets it wrong and the real one right, "broken" the other way round.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .attention import attention_modules
from .checkpoint import CheckpointError, check_writable, load_checkpoint
from .cli import output_path, run_on_checkpoint
from .data import DEFAULT_DATA_HELP, DataError, load_split, resolve_data
from .device import model_device, pick_device
from .evaluate import load_arrays, save_arrays
from .info import normalise
from .layers import ConvAttentionModule


@dataclass(frozen=True)
class Ablation:
    """One way of taking attention away, applied in place to a module of a private copy."""

    name: str
    label: str
    explanation: str
    apply: Callable[[ConvAttentionModule], None]


# A new ablation is one entry here.
REGISTRY = [
    Ablation("gamma0", "γ = 0 (attention switched off)",
             "each module outputs LayerNorm(X): the network as if attention had never been "
             "mixed in", lambda m: m.set_gate_(0.0)),
    Ablation("uniform", "uniform attention (every position weighted 1/N)",
             "queries and keys zeroed, so every position is weighted 1/N: attention is "
             "still mixed in with the learned γ but no longer chooses where to look",
             lambda m: m.make_uniform_()),
]
ABLATIONS = {a.name: a.label for a in REGISTRY}  # name -> label, for menus and reports


def get_ablation(name: str) -> Ablation:
    found = {a.name: a for a in REGISTRY}
    if name not in found:
        raise ValueError(f"unknown ablation {name!r}; expected one of {', '.join(found)}")
    return found[name]


# An image's outcome when the real model is compared with an ablated one.
OUTCOMES = {
    "fixed": "attention fixes it: wrong without, right with",
    "broken": "attention breaks it: right without, wrong with",
    "both_right": "right either way",
    "same_wrong": "wrong either way, the same wrong class",
    "other_wrong": "wrong either way, a different wrong class",
}
Progress = Callable[[int, int], None]  # (images done, images in all)


def ablated_copy(model: nn.Module, kind: str, modules: Iterable[str] | None = None
                 ) -> nn.Module:
    """A private copy of ``model`` (eval mode) with attention ablated in the named
    ConvAttentionModules (all of them by default); ``kind`` is a key of ``ABLATIONS``."""
    ablation = get_ablation(kind)
    names = list(attention_modules(model)) if modules is None else list(modules)
    private = copy.deepcopy(model).eval()
    found = attention_modules(private)
    missing = [n for n in names if n not in found]
    if missing:
        raise ValueError(f"no ConvAttentionModule named {', '.join(missing)}; the model has "
                         f"{', '.join(found) or 'none'}")
    for name in names:
        ablation.apply(found[name])
    return private


def predict_images(model: nn.Module, images: np.ndarray, mean: Sequence[float],
                   std: Sequence[float], batch_size: int = 250,
                   progress: Progress | None = None) -> np.ndarray:
    """Class probabilities (N, K) float32 of (N, H, W, 3) uint8 ``images``.

    Only reads the model: it must already be in eval mode (a cached model is).
    """
    if model.training:
        raise ValueError("predictions come from a model in eval mode; call model.eval() "
                         "first (on a copy if the model is shared).")
    device = model_device(model)
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = normalise(images[start:start + batch_size], mean, std, device)
            out.append(model(x).float().softmax(dim=1).cpu().numpy())
            if progress is not None:
                progress(min(start + batch_size, len(images)), len(images))
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def ablate_images(model: nn.Module, images: np.ndarray, mean: Sequence[float],
                  std: Sequence[float], kinds: Iterable[str] = tuple(ABLATIONS),
                  modules: Iterable[str] | None = None, batch_size: int = 250,
                  progress: Progress | None = None) -> dict[str, np.ndarray]:
    """Probabilities (N, K) from the real model ("real") and from each ablation of the
    named modules (all by default).

    ``progress`` counts images over all the passes, (1 + len(kinds)) * N in all.
    """
    kinds, modules = list(kinds), None if modules is None else list(modules)
    models = {"real": model} | {k: ablated_copy(model, k, modules) for k in kinds}
    total = len(images) * len(models)
    out = {}
    for i, (name, m) in enumerate(models.items()):
        step = None
        if progress is not None:
            def step(done: int, _: int, base: int = i * len(images)) -> None:
                progress(base + done, total)
        out[name] = predict_images(m, images, mean, std, batch_size, step)
    return out


def outcomes(labels: np.ndarray, real: np.ndarray, ablated: np.ndarray) -> np.ndarray:
    """Each image's outcome (a key of ``OUTCOMES``) from true labels and the predicted
    classes of the real and the ablated model, all (N,)."""
    right, right_ablated = real == labels, ablated == labels
    names = np.array(list(OUTCOMES))
    code = np.select(
        [right & ~right_ablated, ~right & right_ablated, right & right_ablated,
         real == ablated],
        [0, 1, 2, 3], default=4)
    return names[code]


def flip_counts(labels: np.ndarray, real: np.ndarray, ablated: np.ndarray,
                num_classes: int) -> dict[str, np.ndarray]:
    """Per true class, how many images have each outcome: {outcome: (K,) int}.

    The five counts of a class add up to its number of images.
    """
    found = outcomes(labels, real, ablated)
    return {o: np.bincount(labels[found == o], minlength=num_classes) for o in OUTCOMES}


def ablation_path(checkpoint: str | Path) -> Path:
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + ".ablation.npz")


def save_ablation(path: str | Path, names: Sequence[str], labels: np.ndarray,
                  classes: Sequence[str], probs: dict[str, np.ndarray], source: str) -> Path:
    """Probabilities per variant as ``probs_<variant>`` (fp16) and, so that near-ties do
    not flip in the fp16 rounding, each variant's fp32 argmax as ``pred_<variant>``."""
    arrays = {f"probs_{k}": v.astype(np.float16) for k, v in probs.items()}
    arrays |= {f"pred_{k}": v.argmax(axis=1).astype(np.int64) for k, v in probs.items()}
    return save_arrays(path, names=np.array(list(names)), labels=np.asarray(labels),
                       classes=np.array(list(classes)), source=np.array(source), **arrays)


load_ablation = load_arrays


@dataclass
class AblationConfig:
    data: str = field(default="", metadata={"help": "dataset root (see convattn.train --data)",
                                            "default_help": DEFAULT_DATA_HELP})
    download: bool = field(default=False, metadata={"help": "download CIFAR-10 (torchvision)"})
    split: str = field(default="test", metadata={"help": "split", "choices": ["train", "test"]})
    device: str = field(default="auto", metadata={"help": "where to run",
                                                  "choices": ["auto", "cpu", "cuda"]})
    batch_size: int = field(default=250, metadata={"help": "images per batch", "min": 1})
    out: str = field(default="", metadata={
        "help": "ablation file", "default_help": "beside the checkpoint, or runs/<name> "
                                                 "for a shipped one"})
    overwrite_shipped: bool = field(default=False, metadata={
        "help": "write over the ablation file shipped with a checkpoint in the "
                "repository's checkpoints/ folder"})


def ablate_checkpoint(checkpoint: str | Path, cfg: AblationConfig) -> dict[str, object]:
    out, note = output_path(checkpoint, cfg.out, ablation_path(checkpoint),
                            cfg.overwrite_shipped)
    check_writable(out)
    model, info = load_checkpoint(checkpoint, pick_device(cfg.device))
    if not attention_modules(model):
        raise CheckpointError(f"{checkpoint} ({info['arch']}) has no ConvAttentionModule "
                              "to ablate.")
    source = resolve_data(cfg.data, cfg.download)
    data = load_split(source, cfg.split, cfg.download)
    if data.classes != info["classes"]:
        raise DataError(f"{source} has classes {data.classes}, but the checkpoint was "
                        f"trained on {info['classes']}.")

    def report(done: int, total: int) -> None:
        print(f"\r{done:,}/{total:,} images", end="", file=sys.stderr, flush=True)

    images, labels = data.images, data.labels
    probs = ablate_images(model, images, info["mean"], info["std"],
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


def format_report(result: dict) -> str:
    acc = result["accuracy"]
    lines = [f"{result['count']:,} images: accuracy real {acc['real']:.2f}%, "
             + ", ".join(f"{ABLATIONS[k]} {acc[k]:.2f}%" for k in ABLATIONS)]
    for kind in ABLATIONS:
        c = result[kind]
        lines.append(f"vs {ABLATIONS[kind]}: attention fixes {c['fixed']}, breaks "
                     f"{c['broken']}, right either way {c['both_right']}, wrong either way "
                     f"{c['same_wrong'] + c['other_wrong']}")
    lines.append(f"written to {result['path']}")
    if result.get("note"):
        lines.append(str(result["note"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return run_on_checkpoint(argv, "python -m convattn.ablation", __doc__, AblationConfig(),
                             "a convattn checkpoint (.pt) with attention", ablate_checkpoint,
                             format_report)


if __name__ == "__main__":
    sys.exit(main())

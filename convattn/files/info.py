"""What a checkpoint says about its model: a typed record.

``load_checkpoint`` returns a ``CheckpointInfo`` beside the model; convattn reads its
fields. Item access stays public on purpose: scripts written when the info was a plain dict
(and ``bench/`` runs against older checkouts, whose info is one) read ``info["classes"]``,
``info.get("history", [])`` and ``"arch" in info`` the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor

from convattn.files.prepare import Images, as_pixels, require_uint8

INPUT_SIZE = 32  # every network in convattn.nn.models takes 32x32 (CIFAR-10) images


def normalise(pixels: np.ndarray | Tensor, mean: Sequence[float], std: Sequence[float],
              device: torch.device | str | None = None) -> Tensor:
    """uint8 images (B, H, W, 3), or one (H, W, 3), -> float (B, 3, H, W) normalised as
    (x / 255 - mean) / std, on ``device`` (by default where ``pixels`` are). The fast path
    for pixels already in that form; ``CheckpointInfo.prepare`` takes any form.

    With one value in ``mean`` (a grey network's) the RGB pixels become grey first, as
    PIL's ``convert("L")`` makes them, and the result is (B, 1, H, W)."""
    if not isinstance(pixels, Tensor):
        pixels = np.asarray(pixels)
    require_uint8(pixels)  # floats would come out /255 too small, or cast to 0, silently
    if isinstance(pixels, Tensor):
        x = pixels.to(device) if device is not None else pixels
    else:  # a copy: the array may be read-only, which torch warns about
        x = torch.from_numpy(np.array(pixels, dtype=np.uint8)).to(device or "cpu")
    if x.dim() == 3:
        x = x[None]  # (1, H, W, 3)
    channels = len(mean)
    if channels == 1 and x.shape[-1] == 3:  # ITU-R 601-2 luma, rounded as PIL rounds it
        w = torch.tensor([19595, 38470, 7471], dtype=torch.int32, device=x.device)
        x = ((x.to(torch.int32) * w).sum(-1, keepdim=True) + 32768) >> 16
    m = torch.tensor(mean, device=x.device).view(1, channels, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, channels, 1, 1)
    return (x.permute(0, 3, 1, 2).float() / 255 - m) / s


@dataclass(frozen=True)
class CheckpointInfo:
    """Everything in a checkpoint but the weights and the optimizer state."""

    arch: str  # a name from convattn.list_models(), or "card:<factory>" (convattn.open_model)
    model_config: dict[str, Any]  # keyword arguments of the network, beyond num_classes
    classes: list[str]
    mean: tuple[float, ...]  # per-channel normalisation of images in [0, 1]
    std: tuple[float, ...]
    metrics: dict[str, Any] = field(default_factory=dict)  # test_accuracy (%) and others
    history: list[dict[str, Any]] = field(default_factory=list)  # one dict per epoch
    train_config: dict[str, Any] = field(default_factory=dict)  # the TrainConfig it ran
    path: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # other keys the file holds
    image_size: tuple[int, int] = (INPUT_SIZE, INPUT_SIZE)  # (H, W) the network takes

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any], path: str = "") -> CheckpointInfo:
        """From a checkpoint dict (see ``convattn.files.checkpoint``); weights are left out."""
        known = {f.name for f in fields(cls)} - {"path", "extra"}
        skipped = {"state_dict", "optimizer", "scheduler"}
        return cls(
            arch=ckpt["arch"], model_config=dict(ckpt.get("model_config") or {}),
            classes=[str(c) for c in ckpt["classes"]],
            mean=tuple(float(v) for v in ckpt["mean"]),
            std=tuple(float(v) for v in ckpt["std"]),
            metrics=dict(ckpt.get("metrics") or {}), history=list(ckpt.get("history") or []),
            train_config=dict(ckpt.get("train_config") or {}), path=str(path),
            image_size=_size(ckpt.get("image_size", INPUT_SIZE)),
            extra={k: v for k, v in ckpt.items() if k not in known | skipped})

    @property
    def test_accuracy(self) -> float | None:
        """Test accuracy in percent, when the checkpoint records it."""
        return self.metrics.get("test_accuracy")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_size(self) -> int | tuple[int, int]:
        """The side of the square images the network takes, or (H, W) when they are not
        square (``image_size`` is always (H, W))."""
        h, w = self.image_size
        return h if h == w else (h, w)

    @property
    def channels(self) -> int:
        """The input channels: 3, or 1 for a grey network (one value in ``mean``)."""
        return len(self.mean)

    def prepare(self, images: Images, device: torch.device | str | None = None,
                fit: str = "resize") -> Tensor:
        """Images as you have them -> exactly what the model takes: float (B, 3, H, W),
        (H, W) = ``image_size`` (32 x 32 for every network convattn ships), normalised
        with the checkpoint's mean and std, on ``device`` (by default the CPU,
        or where a tensor given is). This is convattn's one image convention.

        Functions that take *images* (``out_of_distribution``) take anything this takes.
        Functions that take *model input* (the model, ``attention_maps``, attributions)
        take what it returns; the model would accept unnormalised floats without a word,
        so give it nothing else.

        Accepted, with pixel values 0-255 (uint8):
        - numpy arrays or torch tensors, a batch (B, H, W, 3) or (B, 3, H, W), or one image
          (H, W, 3); a shape that could be either, (B, 3, H, 3), is read channels last;
        - PIL images, one or a list (the frame each is on, turned upright by its EXIF);
        - image files (str or Path), one or a list;
        - a list mixing these, each item one image or a batch.
        Images of another size are fitted as uploads are (``convattn.files.images``):
        ``fit="resize"`` squashes the whole image to a square, ``"crop"`` takes the
        largest centred square; PIL images and files become RGB (transparent pixels on
        white). Arrays already at ``image_size`` are used exactly as given, so this equals
        ``normalise`` on the same pixels as uint8 (B, H, W, 3). A grey network (one value
        in ``mean``, from a model card) takes the same RGB images and gets them grey,
        (B, 1, H, W), as PIL's ``convert("L")`` makes them.

        Refused with ``ImageError`` (one sentence saying what to do): floats (in [0, 1] or
        already normalised) or other non-uint8 data, 1 or 4 channels, no axis of 3
        channels, one channels-first image (3, H, W) (add the batch axis), other numbers
        of dimensions, an empty batch, and files that cannot be read or decoded."""
        return normalise(as_pixels(images, self.input_size, fit), self.mean, self.std,
                         device)

    def normalise(self, pixels: np.ndarray | Tensor, device: torch.device | str | None = None
                  ) -> Tensor:
        """uint8 (B, H, W, 3) or (H, W, 3) images -> the model's (B, C, H, W) input; the
        fast path for pixels already in that form (``prepare`` takes any form)."""
        return normalise(pixels, self.mean, self.std, device)

    # Item access, for code written when info was a dict.
    def __getitem__(self, key: str) -> Any:
        if key in self._names():
            value = getattr(self, key)
            return list(value) if key in ("mean", "std") else value
        if key in self.extra:
            return self.extra[key]
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        return key in self._names() or key in self.extra

    @classmethod
    def _names(cls) -> set[str]:
        return ({f.name for f in fields(cls)} - {"extra"}) | {"test_accuracy", "num_classes"}


def _size(value: Any) -> tuple[int, int]:
    """An image size as a checkpoint or a card writes it, a side or [H, W] -> (H, W)."""
    if isinstance(value, int):
        return value, value
    h, w = value
    return int(h), int(w)

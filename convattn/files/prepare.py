"""Images as people have them -> uint8 pixels (B, size, size, 3): the first half of
``CheckpointInfo.prepare``, whose docstring states the convention (the one place it is
written). Functions that take images (``out_of_distribution``) call ``as_pixels`` so that
they take what ``prepare`` takes.

PIL images and files go through ``convattn.files.images`` (the upload decoder): one way to
turn a picture into the model's RGB at its size (32x32, or a card's ``image_size``), not
two; ``convattn.files.data`` reads image folders the same way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from torch import Tensor

from convattn.files.images import FITS, ImageError, _fit, _to_rgb, decode_image

# One image or several, in any of the forms ``CheckpointInfo.prepare`` documents.
Picture = np.ndarray | Tensor | Image.Image | str | os.PathLike
Images = Picture | Sequence[Picture]


def as_pixels(images: Images, size: int | tuple[int, int] = 32, fit: str = "resize"
              ) -> np.ndarray | Tensor:
    """``images`` (see ``CheckpointInfo.prepare``) -> uint8 (B, size, size, 3), or
    (B, H, W, 3) for a ``size`` of (H, W).

    Arrays and tensors already at ``size`` come back as views (a tensor stays on its
    device), so the values are exactly the ones given; anything that must be fitted or
    decoded comes back as a new numpy array. Raises ``ImageError`` with one sentence."""
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, not {fit!r}")
    if isinstance(images, (np.ndarray, Tensor)):
        return _batch(images, size, fit)
    if isinstance(images, (Image.Image, str, os.PathLike)):
        return _picture(images, size, fit)[None]
    if isinstance(images, (list, tuple)):
        if not images:
            raise _empty()
        parts = [_batch(i, size, fit) if isinstance(i, (np.ndarray, Tensor))
                 else _picture(i, size, fit)[None] for i in images]
        return np.concatenate([p.cpu().numpy() if isinstance(p, Tensor) else p
                               for p in parts])
    raise ImageError(_wrong_type(images))


def _batch(a: np.ndarray | Tensor, size: int | tuple[int, int], fit: str) -> np.ndarray | Tensor:
    """An array or tensor, checked, as (B, H, W, 3) and fitted to ``size``."""
    shape = tuple(a.shape)
    require_uint8(a)
    if a.ndim == 3:
        if shape[-1] != 3 and shape[0] == 3:
            raise ImageError(f"one image must be (H, W, 3); for one channels-first image "
                             f"of shape {shape}, add the batch axis with x[None].")
        if shape[-1] not in (1, 3, 4):
            raise ImageError(_no_colour_axis(shape))
        a = a[None]
    elif a.ndim != 4:
        raise ImageError(f"images must be a batch (B, H, W, 3) or (B, 3, H, W), or one "
                         f"image (H, W, 3), not an array of shape {shape}.")
    if a.shape[0] == 0:
        raise _empty()
    if a.shape[-1] != 3:  # channels last is the convention: a tie, (B, 3, H, 3), reads so
        if a.shape[1] != 3:
            raise ImageError(_channels(shape, a.shape[-1], a.shape[1]))
        a = a.permute(0, 2, 3, 1) if isinstance(a, Tensor) else a.transpose(0, 2, 3, 1)
    if 0 in a.shape:
        raise ImageError(f"images of shape {shape} have no pixels.")
    if tuple(a.shape[1:3]) == (size if isinstance(size, tuple) else (size, size)):
        return a
    # Another size: each image goes through the same resize as an uploaded file.
    pixels = a.cpu().numpy() if isinstance(a, Tensor) else np.asarray(a)
    return np.stack([np.asarray(_fit(Image.fromarray(p), size, fit)) for p in pixels])


def require_uint8(a: np.ndarray | Tensor) -> None:
    """Refuse anything but uint8 pixels: floats in [0, 1] or already normalised would be
    divided by 255 again (or cast to 0) without a word."""
    dtype = str(a.dtype).removeprefix("torch.")
    if dtype == "uint8":
        return
    floating = a.is_floating_point() if isinstance(a, Tensor) else a.dtype.kind == "f"
    if floating:
        raise ImageError(
            f"images must be uint8 (pixel values 0-255), not {dtype}: scale floats in "
            f"[0, 1] by 255, round and cast them to uint8; a tensor already normalised "
            f"goes to the model as it is.")
    raise ImageError(f"images must be uint8 (pixel values 0-255), not {dtype}: cast them "
                     f"to uint8 once their values are 0-255.")


def _picture(p: Image.Image | str | os.PathLike, size: int | tuple[int, int], fit: str
             ) -> np.ndarray:
    """One PIL image or image file -> uint8 (size, size, 3), as the upload decoder does."""
    if isinstance(p, Image.Image):
        if 0 in p.size:
            raise ImageError(f"a PIL image of size {p.size[0]}x{p.size[1]} has no pixels.")
        # The frame it is on, upright by its EXIF, in RGB (transparent pixels on white).
        return np.asarray(_fit(_to_rgb(ImageOps.exif_transpose(p)), size, fit))
    if not isinstance(p, (str, os.PathLike)):
        raise ImageError(_wrong_type(p))
    path = Path(p)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{path} does not exist.") from None
    except IsADirectoryError:
        raise ImageError(f"{path} is a folder, not an image file.") from None
    except OSError as e:
        raise ImageError(f"{path} could not be read ({e.strerror or e}).") from None
    return decode_image(data, str(path), size, fit).pixels


def _channels(shape: tuple[int, ...], last: int, second: int) -> str:
    """The sentence for a batch whose channels are neither last nor second as 3."""
    axis, count = (-1, last) if last in (1, 4) else (1, second)
    if count == 1:
        return (f"images of shape {shape} have 1 channel: repeat it 3 times along axis "
                f"{axis} for grey images, or pass PIL images or image files, which are "
                f"converted to RGB.")
    if count == 4:
        keep = "x[..., :3]" if axis == -1 else "x[:, :3]"
        return (f"images of shape {shape} have 4 channels: keep the first 3 ({keep}) if the "
                f"fourth is alpha, or pass PIL images or image files, which put transparent "
                f"pixels on white.")
    return _no_colour_axis(shape)


def _no_colour_axis(shape: tuple[int, ...]) -> str:
    return (f"images of shape {shape} have no axis of 3 colour channels: pass (B, H, W, 3) "
            f"or (B, 3, H, W), or one image (H, W, 3).")


def _empty() -> ImageError:
    return ImageError("the batch is empty: give at least one image.")


def _wrong_type(x: object) -> str:
    return (f"images must be numpy arrays, torch tensors, PIL images or image file paths, "
            f"not {type(x).__name__}.")


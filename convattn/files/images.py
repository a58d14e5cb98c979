"""Turning an uploaded file into the RGB image a model sees: 32x32 for convattn's CIFAR-10
networks, a model card's ``image_size`` (H, W) otherwise.

Handles PNG, JPEG, WebP, BMP and GIF (the first frame of an animation); every mode these
decode to (1-bit, palette, grayscale with or without alpha, 16-bit, CMYK, RGBA); any shape
down to 1x1; EXIF orientation. Anything that cannot be used raises ``ImageError`` with one
sentence for the user.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
FITS = ("resize", "crop")
# Pillow's own decompression-bomb threshold, checked here from the header before any
# pixel is decoded, so that no global Pillow setting has to change.
MAX_PIXELS = 89_478_485
ORIENTATION = 0x0112  # the EXIF tag
# Transparent pixels are shown on white, as an image viewer would show them.
BACKGROUND = (255, 255, 255)


class ImageError(Exception):
    """A file or an array that cannot be used as images; the message is one sentence for
    the user."""


@dataclass
class DecodedImage:
    pixels: np.ndarray  # (size, size, 3) uint8, what the model sees
    original: np.ndarray  # (H, W, 3) uint8 after EXIF rotation, at most 512 px a side
    format: str  # e.g. "JPEG"
    original_size: tuple[int, int]  # (width, height) of the file's image, after rotation
    mode: str  # Pillow mode of the file, e.g. "RGBA", "I;16"
    frames: int = 1  # frames in the file (an animated GIF, WebP or PNG); the first is used

    def describe(self, fit: str) -> str:
        w, h = self.original_size
        th, tw = self.pixels.shape[:2]
        what = self.mode
        if self.frames > 1:
            what += f", {self.frames} frames: the first is used"
        if (w, h) == (tw, th):  # the model's own size: nothing was cropped or resized
            return f"{self.format} {w}x{h} ({what}), used at its own size"
        shape = "a square" if th == tw else f"{tw}:{th}"
        if fit == "crop":
            how = "center-cropped and resized"
        elif w * th != h * tw:  # say so: a student should know the model sees a distortion
            aspect = f"{w / h:.2f} to 1" if w > h else f"1 to {h / w:.2f}"
            how = f"squashed to {shape} (its aspect was {aspect}) and resized"
        else:
            how = "resized"
        return f"{self.format} {w}x{h} ({what}), {how} to {tw}x{th}"


def decode_image(data: bytes, name: str = "the file", size: int | tuple[int, int] = 32,
                 fit: str = "resize") -> DecodedImage:
    """Decode an uploaded image and fit it to ``size`` x ``size`` RGB (or (H, W)).

    ``fit`` is "resize" (the whole image, squashed to a square) or "crop" (the largest
    centred square, then resized).
    """
    if fit not in FITS:
        raise ValueError(f"fit must be one of {FITS}, not {fit!r}")
    if not data:
        raise ImageError(f"{name} is empty (0 bytes): upload a PNG, JPEG, WebP, BMP or GIF.")
    try:
        im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image this app can read: upload a PNG, JPEG, "
                         "WebP, BMP or GIF.") from None
    except Image.DecompressionBombError:
        raise _bomb(name) from None
    with im:
        if im.format not in FORMATS:
            raise ImageError(f"{name} is a {im.format} image; upload a PNG, JPEG, WebP, "
                             "BMP or GIF instead.")
        w, h = im.size
        if w * h > MAX_PIXELS:
            raise _bomb(name, w, h)
        if w == 0 or h == 0:
            raise ImageError(f"{name} has no pixels ({w}x{h}).")
        fmt, mode = im.format, im.mode
        try:
            frames = getattr(im, "n_frames", 1)
            im.seek(0)  # GIF, animated WebP or PNG: the first frame
            if fmt == "JPEG":
                # Decode large JPEGs at a reduced scale: far less memory and time, and
                # the result is shrunk to 32x32 anyway.
                side = max(size) if isinstance(size, tuple) else size
                im.draft("RGB", (4 * side, 4 * side))
            im.load()
            if im.getexif().get(ORIENTATION, 1) in (5, 6, 7, 8):  # turned by 90 degrees
                w, h = h, w
            rgb = _to_rgb(ImageOps.exif_transpose(im))
        except Image.DecompressionBombError:
            raise _bomb(name, w, h) from None
        except (OSError, ValueError, SyntaxError, EOFError) as e:
            raise ImageError(f"{name} looks like a {fmt} image but could not be decoded "
                             f"({_short(e)}).") from None
    pixels = _fit(rgb, size, fit)
    preview = rgb.copy()
    preview.thumbnail((512, 512), Image.Resampling.LANCZOS)
    return DecodedImage(np.asarray(pixels, dtype=np.uint8), np.asarray(preview, dtype=np.uint8),
                        fmt, (w, h), mode, frames)


def as_grey(pixels: np.ndarray) -> np.ndarray:
    """uint8 RGB (..., 3) -> the same shape in grey, each pixel its luma (PIL's
    ``convert("L")``, ITU-R 601-2) three times: what a grey network (one value in a card's
    ``mean``) sees of the image, which ``normalise`` turns into exactly the same input."""
    w = np.array([19595, 38470, 7471], dtype=np.int64)
    luma = ((pixels.astype(np.int64) @ w + 32768) >> 16).astype(np.uint8)
    return np.repeat(luma[..., None], 3, axis=-1)


def _bomb(name: str, w: int = 0, h: int = 0) -> ImageError:
    dims = f" ({w}x{h} = {w * h / 1e6:.0f} megapixels)" if w else ""
    return ImageError(f"{name} is too large to decode safely{dims}: the limit is "
                      f"{MAX_PIXELS / 1e6:.0f} megapixels, so it may be a decompression bomb.")


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:120]


def _to_rgb(im: Image.Image) -> Image.Image:
    """8-bit RGB from any mode: 16-bit and float grayscale are rescaled, not clipped."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        if im.mode.startswith("I;16"):
            top = 65535.0
        else:  # 32-bit int or float: stretch the image's own range
            lo = float(a.min())
            a, top = a - lo, max(float(a.max()) - lo, 1e-12)
        gray = np.clip(np.rint(a * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    has_alpha = im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        im.mode == "P" and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def _fit(im: Image.Image, size: int | tuple[int, int], fit: str) -> Image.Image:
    """``im`` at ``size`` (a side, or (H, W) from a model card's image_size)."""
    h, w = size if isinstance(size, tuple) else (size, size)
    if fit == "crop":
        return ImageOps.fit(im, (w, h), Image.Resampling.LANCZOS)
    return im.resize((w, h), Image.Resampling.LANCZOS, reducing_gap=3.0)

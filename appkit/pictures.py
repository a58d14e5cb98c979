"""Pictures for the page (enlarged images, colour-mapped overlays, colour bars), made with
numpy and PIL so that a click re-renders in a millisecond. Charts are ``appkit.plots``;
the figures of the download buttons are ``appkit.downloads``.

Maps are coloured through 256-entry lookup tables of matplotlib colour maps and
enlarged with nearest-neighbour sampling, so every input pixel (or attention cell) stays a
visible block, on images of any size and shape (the longer side becomes ``size``), and a
map on a coarser grid than the image (a key grid of pooled keys) covers the whole image.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ATTENTION_CMAP = "inferno"
SPREAD_CMAP = "viridis"
ATTRIBUTION_CMAP = "RdBu_r"  # red supports the class, blue speaks against it
QUERY_COLOUR = (0, 255, 255)  # cyan: the clicked pixel
CELL_COLOUR = (255, 255, 255)  # white: the attention cell that pixel falls in


# The tables of the page's own colour maps, as matplotlib makes them (``write_tables``;
# tests/test_pictures.py checks they still are): importing matplotlib costs about 0.2 s,
# which a server's first page would wait for.
TABLES = Path(__file__).with_name("colour_maps.npz")
STORED = (ATTENTION_CMAP, SPREAD_CMAP, ATTRIBUTION_CMAP)


@lru_cache(maxsize=16)
def lookup_table(cmap: str) -> np.ndarray:
    """The colour map as a (256, 3) uint8 table: what ``colorize`` looks values up in,
    and what the attention lens sends to the browser (``appkit.lens.lut``)."""
    if cmap in STORED and TABLES.exists():
        with np.load(TABLES) as stored:
            if cmap in stored.files:
                return stored[cmap]
    return matplotlib_table(cmap)


def matplotlib_table(cmap: str) -> np.ndarray:
    """``lookup_table`` computed by matplotlib."""
    from matplotlib import colormaps

    return (colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)


def write_tables(path: Path = TABLES) -> None:
    """Store the tables of ``STORED`` (after a change of colour map or of matplotlib)."""
    np.savez(path, **{name: matplotlib_table(name) for name in STORED})


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def fit(shape: tuple[int, ...], size: int) -> tuple[int, int]:
    """(height, width) of an (h, w) picture shown with its longer side ``size`` pixels."""
    h, w = int(shape[0]), int(shape[1])
    return (size, max(1, round(size * w / h))) if h >= w else (max(1, round(size * h / w)), size)


def resample(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour (h, w[, 3]) -> (height, width[, 3]): output pixel (y, x) takes
    input pixel (y h // height, x w // width), so each input pixel is a block."""
    rows = np.arange(height) * image.shape[0] // height
    cols = np.arange(width) * image.shape[1] // width
    return image[rows][:, cols]


def enlarge(image: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour enlargement of (h, w[, 3]) to its longer side ``size`` (a square
    image to (size, size[, 3]); when size % h == 0 each pixel becomes size / h squared)."""
    return resample(image, *fit(image.shape, size))


def fit_box(image: np.ndarray, box: int, thinnest: int = 4) -> tuple[np.ndarray, bool]:
    """(h, w, 3) uint8 scaled to fit a ``box`` x ``box`` square, for showing a file as
    uploaded; returns it and whether its thin side had to be stretched.

    Each side is at least ``thinnest`` pixels: scaled faithfully, a 4000x3 photo would be
    0 pixels high, which nothing can draw. Small images are enlarged by repeating pixels,
    so that they stay sharp.
    """
    h, w = image.shape[:2]
    scale = box / max(h, w)
    size = (max(round(w * scale), thinnest), max(round(h * scale), thinnest))
    stretched = min(w, h) * scale < thinnest
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS
    return np.asarray(Image.fromarray(image).resize(size, resample)), stretched


def colorize(values: np.ndarray, vmin: float, vmax: float, cmap: str) -> np.ndarray:
    """(h, w) floats -> (h, w, 3) uint8 through ``cmap``, clipped to [vmin, vmax]."""
    t = (np.asarray(values, dtype=np.float64) - vmin) / max(vmax - vmin, 1e-12)
    return lookup_table(cmap)[np.clip((t * 255).round(), 0, 255).astype(np.intp)]


def grayscale(image: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 -> (h, w, 3) uint8 luminance, so coloured maps read clearly on it."""
    y = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.repeat(y.round().astype(np.uint8)[..., None], 3, axis=2)


def overlay(image: np.ndarray, values: np.ndarray, vmin: float, vmax: float, cmap: str,
            opacity: float, size: int, weight_by_value: bool = False) -> np.ndarray:
    """A map coloured by ``cmap`` laid over ``image``, both enlarged to (size, size, 3).

    With ``weight_by_value`` each pixel's opacity grows with |value| / max(|vmin|, |vmax|),
    so pixels with no attribution show the image (used for signed maps).
    """
    shape = fit(image.shape, size)  # the map, on any grid, is stretched over the image
    base = resample(image, *shape).astype(np.float32)
    heat = resample(colorize(values, vmin, vmax, cmap), *shape).astype(np.float32)
    alpha = np.full(values.shape, opacity, dtype=np.float32)
    if weight_by_value:
        top = max(abs(vmin), abs(vmax), 1e-12)
        alpha = opacity * np.clip(np.abs(values) / top, 0, 1).astype(np.float32)
    a = resample(alpha, *shape)[..., None]
    return (base * (1 - a) + heat * a).round().astype(np.uint8)


def mark_query(image: np.ndarray, pixel: tuple[int, int], cell: tuple[int, int],
               grid: tuple[int, int], source: int | tuple[int, int] = 32) -> Image.Image:
    """Outline the query pixel (cyan) on an enlarged image of a ``source`` (H, W) input
    (an int: a square one) and, when the module's grid is coarser than the input, the cell
    the pixel falls in (white)."""
    sh, sw = (source, source) if isinstance(source, int) else source
    height, width = image.shape[:2]
    im = Image.fromarray(image)
    draw = ImageDraw.Draw(im)
    if (grid[0], grid[1]) != (sh, sw):
        ch, cw = height / grid[0], width / grid[1]
        box = (cell[1] * cw, cell[0] * ch, (cell[1] + 1) * cw - 1, (cell[0] + 1) * ch - 1)
        draw.rectangle(_grow(box, 1), outline=(0, 0, 0), width=1)
        draw.rectangle(box, outline=CELL_COLOUR, width=2)
    py, px = height / sh, width / sw
    box = (pixel[1] * px, pixel[0] * py, (pixel[1] + 1) * px - 1, (pixel[0] + 1) * py - 1)
    draw.rectangle(_grow(box, 1), outline=(0, 0, 0), width=1)
    draw.rectangle(box, outline=QUERY_COLOUR, width=2)
    return im


def _grow(box: tuple[float, ...], d: float) -> tuple[float, ...]:
    return (box[0] - d, box[1] - d, box[2] + d, box[3] + d)


def colorbar(vmin: float, vmax: float, cmap: str, width: int, label: str = "",
             span: tuple[float, float] = (0.0, 1.0)) -> Image.Image:
    """A horizontal colour bar with its ends and middle labelled, ``width`` pixels wide.

    ``span`` is the part of the colour map drawn: (0.5, 1) is the upper half of a diverging
    map, for values that are never negative.
    """
    font = _font(13)
    lut = np.linspace(255 * span[0], 255 * span[1], width).round().astype(np.intp)
    strip = np.tile(lookup_table(cmap)[lut], (12, 1, 1))
    im = Image.new("RGB", (width, 48 if label else 32), (255, 255, 255))
    im.paste(Image.fromarray(strip), (0, 0))
    draw = ImageDraw.Draw(im)
    # Three significant digits of the span, the same number of decimals at every tick;
    # spans too small for that many decimals to fit are written in powers of ten.
    decimals = max(0, 2 - int(np.floor(np.log10(max(abs(vmax - vmin), 1e-12)))))
    ticks = [(0, vmin, "la"), (width / 2, (vmin + vmax) / 2, "ma"), (width - 1, vmax, "ra")]
    for x, v, anchor in ticks:
        if decimals > 6:
            text = f"{v:.2e}"
        elif round(v, decimals) == 0:
            text = f"{v:.{decimals}f}".replace("-", "")
        else:
            text = f"{v:.{decimals}f}"
        draw.text((x, 14), text, fill=(40, 40, 40), font=font, anchor=anchor)
    if label:
        draw.text((width / 2, 31), label, fill=(40, 40, 40), font=font, anchor="ma")
    return im


def attribution_bar(limit: float, signed: bool, width: int, label: str = "") -> Image.Image:
    """The colour bar of attribution maps: -limit..limit, or 0..limit (the red half) for
    maps that are never negative, so no blue end promises values that cannot occur."""
    if signed:
        return colorbar(-limit, limit, ATTRIBUTION_CMAP, width, label)
    return colorbar(0.0, limit, ATTRIBUTION_CMAP, width, label, span=(0.5, 1.0))

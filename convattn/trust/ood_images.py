"""Images that are not CIFAR-10, made in code: the out-of-distribution set.

The flag of ``convattn.trust.ood`` is chosen and measured against these. Each family is one
function of a numpy ``Generator``; the whole set is deterministic from one seed, so a
method can be chosen on one seed's set and reported on another's. Shapes and text are
drawn with Pillow at 96x96 and shrunk to 32x32 (antialiased), as an upload would be.

Families: uniform and Gaussian noise, blurred noise (coloured blobs), flat colours, one
odd pixel on a flat colour (the issue's "single green pixel"), linear and radial
gradients, procedural textures (stripes, checkerboards, plaids), shapes, text, and CIFAR
images cut into shuffled patches (needs ``source`` images).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SIZE = 32
DRAW = 96  # shapes and text are drawn larger, then resized: edges come out antialiased

Maker = Callable[[np.random.Generator], np.ndarray]  # -> one (32, 32, 3) uint8 image


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, 3))  # type: ignore[return-value]


def _grid() -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1)
    return x, y


def _uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def noise(rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.5:
        return rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    mean, std = rng.uniform(40, 215, 3), rng.uniform(10, 80)
    grey = rng.random() < 0.3  # grey noise too: one channel copied to three
    shape = (SIZE, SIZE, 1) if grey else (SIZE, SIZE, 3)
    return _uint8(mean + np.broadcast_to(rng.normal(0, std, shape), (SIZE, SIZE, 3)))


def blobs(rng: np.random.Generator) -> np.ndarray:
    """Low-frequency noise: a 2x2 to 8x8 random image enlarged smoothly."""
    n = int(rng.integers(2, 9))
    small = Image.fromarray(rng.integers(0, 256, (n, n, 3), dtype=np.uint8))
    return np.asarray(small.resize((SIZE, SIZE), Image.BICUBIC))


def flat(rng: np.random.Generator) -> np.ndarray:
    return np.broadcast_to(np.array(_colour(rng), np.uint8), (SIZE, SIZE, 3)).copy()


def pixel(rng: np.random.Generator) -> np.ndarray:
    """One pixel of one colour on a flat one (an upload of a single dot, resized)."""
    image = flat(rng)
    r, c = rng.integers(0, SIZE, 2)
    image[r, c] = _colour(rng)
    return image


def gradient(rng: np.random.Generator) -> np.ndarray:
    x, y = _grid()
    if rng.random() < 0.6:
        angle = rng.uniform(0, 2 * np.pi)
        t = np.cos(angle) * x + np.sin(angle) * y
    else:
        cx, cy = rng.uniform(0, 1, 2)
        t = np.hypot(x - cx, y - cy)
    t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
    a, b = np.array(_colour(rng)), np.array(_colour(rng))
    return _uint8(a + t[..., None] * (b - a))


def texture(rng: np.random.Generator) -> np.ndarray:
    x, y = _grid()
    kind = rng.integers(0, 4)
    f = rng.uniform(2, 10)
    angle = rng.uniform(0, np.pi)
    u = np.cos(angle) * x + np.sin(angle) * y
    v = -np.sin(angle) * x + np.cos(angle) * y
    if kind == 0:  # stripes
        t = (np.sin(2 * np.pi * f * u) > 0).astype(float)
    elif kind == 1:  # checkerboard
        t = ((np.floor(f * u) + np.floor(f * v)) % 2).astype(float)
    elif kind == 2:  # plaid: two sine waves
        t = 0.5 + 0.25 * (np.sin(2 * np.pi * f * u) + np.sin(2 * np.pi * rng.uniform(2, 10) * v))
    else:  # concentric rings
        cx, cy = rng.uniform(0, 1, 2)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * f * np.hypot(x - cx, y - cy))
    a, b = np.array(_colour(rng)), np.array(_colour(rng))
    return _uint8(a + t[..., None] * (b - a))


def shapes(rng: np.random.Generator) -> np.ndarray:
    image = Image.new("RGB", (DRAW, DRAW), _colour(rng))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(1, 6))):
        kind = rng.integers(0, 4)
        box = np.sort(rng.integers(0, DRAW, (2, 2)), axis=0).T.ravel()  # x0, x1, y0, y1
        xy = [int(box[0]), int(box[2]), int(box[1]) + 4, int(box[3]) + 4]
        if kind == 0:
            draw.ellipse(xy, fill=_colour(rng))
        elif kind == 1:
            draw.rectangle(xy, fill=_colour(rng))
        elif kind == 2:
            points = [tuple(int(v) for v in p) for p in rng.integers(0, DRAW, (3, 2))]
            draw.polygon(points, fill=_colour(rng))
        else:
            points = [tuple(int(v) for v in p) for p in rng.integers(0, DRAW, (2, 2))]
            draw.line(points, fill=_colour(rng), width=int(rng.integers(2, 12)))
    return np.asarray(image.resize((SIZE, SIZE), Image.LANCZOS))


_LETTERS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789?!&"))


def text(rng: np.random.Generator) -> np.ndarray:
    background = np.array(_colour(rng))
    # Text a reader can see: the ink is far from the background
    ink = tuple(int(v) for v in np.where(background > 127, rng.integers(0, 80, 3),
                                         rng.integers(176, 256, 3)))
    image = Image.new("RGB", (DRAW, DRAW), tuple(int(v) for v in background))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=int(rng.integers(16, 48)))
    lines = int(rng.integers(1, 4))
    for i in range(lines):
        word = "".join(rng.choice(_LETTERS, int(rng.integers(1, 8))))
        y = int(rng.integers(0, DRAW // 3)) + i * DRAW // lines
        draw.text((int(rng.integers(-8, DRAW // 3)), y), word, fill=ink, font=font)
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(1))
    return np.asarray(image.resize((SIZE, SIZE), Image.LANCZOS))


def shuffled_patches(rng: np.random.Generator, source: np.ndarray) -> np.ndarray:
    """A random ``source`` image cut into 8x8 (or 4x4) patches put back in random order:
    CIFAR's colours and local texture without its objects."""
    image = source[rng.integers(0, len(source))]
    p = int(rng.choice([4, 8]))
    n = SIZE // p
    tiles = image.reshape(n, p, n, p, 3).transpose(0, 2, 1, 3, 4).reshape(n * n, p, p, 3)
    tiles = tiles[rng.permutation(n * n)].reshape(n, n, p, p, 3)
    return tiles.transpose(0, 2, 1, 3, 4).reshape(SIZE, SIZE, 3).copy()


FAMILIES: dict[str, Maker] = {
    "noise": noise, "blobs": blobs, "flat": flat, "pixel": pixel, "gradient": gradient,
    "texture": texture, "shapes": shapes, "text": text,
}
PATCHES = "patches"  # the family that needs CIFAR images to cut up


def families(with_patches: bool = True) -> list[str]:
    """The family names, in the order ``generate`` makes them."""
    return [*FAMILIES, *([PATCHES] if with_patches else [])]


def generate(per_family: int, seed: int = 0, source: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """``per_family`` images of every family: uint8 (N, 32, 32, 3) and each image's family
    name (N,). ``source`` (uint8 (M, 32, 32, 3) CIFAR images) adds the shuffled-patch
    family. The same seed gives the same images."""
    if per_family < 0:
        raise ValueError(f"per_family must be at least 0, not {per_family}.")
    images, names = [], []
    for i, name in enumerate(families(source is not None)):
        # One stream per family: adding a family leaves the others' images as they were
        rng = np.random.default_rng([seed, i])
        if name == PATCHES:
            assert source is not None
            made = [shuffled_patches(rng, source) for _ in range(per_family)]
        else:
            made = [FAMILIES[name](rng) for _ in range(per_family)]
        images += made
        names += [name] * per_family
    out = np.stack(images) if images else np.zeros((0, SIZE, SIZE, 3), np.uint8)
    return out, np.array(names)

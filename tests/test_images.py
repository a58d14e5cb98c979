"""Uploaded files -> the 32x32 RGB image the model sees, and one sentence when that fails."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from convattn.files.images import MAX_PIXELS, ImageError, decode_image

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _stripes(w: int, h: int, colours: list[tuple[int, int, int]]) -> Image.Image:
    """Vertical stripes of equal width, left to right."""
    a = np.zeros((h, w, 3), dtype=np.uint8)
    for i, c in enumerate(colours):
        a[:, i * w // len(colours):(i + 1) * w // len(colours)] = c
    return Image.fromarray(a)


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "WEBP", "GIF"])
def test_lossless_formats_give_the_exact_colour(fmt):
    data = _encode(Image.new("RGB", (64, 48), (200, 30, 90)), fmt, **(
        {"lossless": True} if fmt == "WEBP" else {}))
    out = decode_image(data, f"a.{fmt.lower()}")
    assert out.pixels.shape == (32, 32, 3) and out.pixels.dtype == np.uint8
    assert out.format == fmt and out.original_size == (64, 48)
    # GIF stores a palette; every other format keeps the colour exactly.
    expected = np.array([200, 30, 90])
    assert np.abs(out.pixels.astype(int) - expected).max() <= (8 if fmt == "GIF" else 0)


def test_jpeg_grayscale_becomes_three_equal_channels():
    out = decode_image(_encode(Image.new("L", (40, 40), 77), "JPEG"))
    assert out.mode == "L"
    assert (out.pixels == out.pixels[..., :1]).all()
    assert abs(int(out.pixels.mean()) - 77) <= 1


def test_rgba_is_composited_on_white():
    a = np.zeros((32, 32, 4), dtype=np.uint8)
    a[:, :16] = (0, 0, 255, 255)  # opaque blue on the left
    a[:, 16:] = (255, 0, 0, 0)  # fully transparent red on the right
    out = decode_image(_encode(Image.fromarray(a, "RGBA"), "PNG"))
    assert (out.pixels[:, :16] == BLUE).all()
    assert (out.pixels[:, 16:] == (255, 255, 255)).all()


def test_sixteen_bit_grayscale_is_rescaled_not_clipped():
    a = np.full((32, 32), 32768, dtype=np.uint16)
    a[:, 16:] = 1000  # 1000 / 65535 of full scale: nearly black, not white
    out = decode_image(_encode(Image.fromarray(a), "PNG"))
    assert out.mode.startswith("I")
    assert (out.pixels[:, :16] == 128).all()
    assert (out.pixels[:, 16:] == 4).all()


def test_gif_uses_the_first_frame():
    frames = [Image.new("RGB", (32, 32), RED), Image.new("RGB", (32, 32), BLUE)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    out = decode_image(buf.getvalue())
    assert (out.pixels[..., 0] > 240).all() and (out.pixels[..., 2] < 15).all()


def test_exif_orientation_is_applied():
    # Stored 40 wide x 20 high, left half red; orientation 6 says "rotate 90 degrees
    # clockwise to display", which puts the left half on top.
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(_stripes(40, 20, [RED, BLUE]), "JPEG", exif=exif.tobytes(), quality=95)
    out = decode_image(data, fit="resize")
    assert out.original_size == (20, 40)
    assert out.pixels[:12, :, 0].mean() > 200 and out.pixels[:12, :, 2].mean() < 60
    assert out.pixels[20:, :, 2].mean() > 200 and out.pixels[20:, :, 0].mean() < 60


def test_crop_keeps_the_centre_and_resize_keeps_everything():
    data = _encode(_stripes(128, 32, [RED, GREEN, GREEN, BLUE]), "PNG")
    crop = decode_image(data, fit="crop").pixels
    assert (crop == GREEN).all()
    whole = decode_image(data, fit="resize").pixels
    assert (whole[:, 0] == RED).all() and (whole[:, -1] == BLUE).all()
    assert (whole[:, 16] == GREEN).all()


def test_large_jpeg_decodes_and_reports_its_size():
    rng = np.random.default_rng(0)
    big = Image.fromarray(rng.integers(0, 255, (1500, 2000, 3), dtype=np.uint8))
    out = decode_image(_encode(big, "JPEG"))
    assert out.original_size == (2000, 1500) and out.pixels.shape == (32, 32, 3)
    assert max(out.original.shape[:2]) <= 512


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (valid CRCs, few bytes)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [10_000, 40_000])  # 100 MP (our check), 1600 MP (Pillow's)
def test_decompression_bomb_is_refused_before_decoding(side):
    assert side * side > MAX_PIXELS
    with pytest.warns(Image.DecompressionBombWarning) if side == 10_000 else _nothing():
        with pytest.raises(ImageError, match="decompression bomb"):
            decode_image(_png_claiming(side, side), "bomb.png")


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize(("data", "message"), [
    (b"", "bad.png is empty"),
    (b"name,age\nada,36\n", "bad.png is not an image this app can read"),
    (_encode(Image.new("RGB", (8, 8)), "TIFF"), "bad.png is a TIFF image"),
])
def test_unusable_files_get_one_sentence(data, message):
    with pytest.raises(ImageError) as e:
        decode_image(data, "bad.png")
    text = str(e.value)
    assert text.startswith(message) and text.count("\n") == 0 and text.endswith(".")


def test_truncated_image_says_it_could_not_be_decoded():
    rng = np.random.default_rng(1)
    full = _encode(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)), "PNG")
    with pytest.raises(ImageError, match="looks like a PNG image but could not be decoded"):
        decode_image(full[: len(full) // 2], "cut.png")


@pytest.mark.parametrize(("size", "fit", "said"), [
    ((64, 64), "resize", "PNG 64x64 (RGB), resized to 32x32"),
    ((200, 100), "resize", "PNG 200x100 (RGB), squashed to a square (its aspect was 2.00 to 1) "
                           "and resized to 32x32"),
    ((200, 100), "crop", "PNG 200x100 (RGB), center-cropped and resized to 32x32"),
    # Already the model's size: nothing was resized or cropped, and it says so.
    ((32, 32), "resize", "PNG 32x32 (RGB), used at its own size"),
    ((32, 32), "crop", "PNG 32x32 (RGB), used at its own size"),
])
def test_description_says_how_the_picture_was_fitted(size, fit, said):
    data = _encode(Image.new("RGB", size, RED), "PNG")
    assert decode_image(data, "x.png", 32, fit).describe(fit) == said


def _palette(size: tuple[int, int], colour: tuple[int, int, int]) -> Image.Image:
    im = Image.new("P", size, 1)
    im.putpalette([0, 0, 0, *colour] + [0] * 762)
    return im


def _gray_alpha(size: tuple[int, int]) -> Image.Image:
    """LA: opaque gray 77 on the left half, fully transparent on the right."""
    a = np.zeros((size[1], size[0], 2), dtype=np.uint8)
    a[:, : size[0] // 2] = (77, 255)
    return Image.fromarray(a, "LA")


# Every mode the accepted formats decode to: (image, format, colour of the left and of the
# right column of the 32x32 result, tolerance).
MODES = {
    "1": (Image.new("1", (20, 10), 1), "PNG", (255, 255, 255), (255, 255, 255), 0),
    "P": (_palette((20, 10), (200, 30, 90)), "PNG", (200, 30, 90), (200, 30, 90), 0),
    "LA": (_gray_alpha((20, 10)), "PNG", (77, 77, 77), (255, 255, 255), 0),
    "CMYK": (Image.new("CMYK", (20, 10), (0, 255, 255, 0)), "JPEG", RED, RED, 12),
    "I;16": (Image.fromarray(np.full((10, 20), 65535, np.uint16)), "PNG", (255, 255, 255),
             (255, 255, 255), 0),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_every_mode_becomes_rgb_with_the_right_colours(mode):
    im, fmt, left, right, tolerance = MODES[mode]
    out = decode_image(_encode(im, fmt), f"x.{fmt.lower()}")
    assert out.mode == mode and out.pixels.shape == (32, 32, 3)
    assert np.abs(out.pixels[:, 0].astype(int) - left).max() <= tolerance
    assert np.abs(out.pixels[:, -1].astype(int) - right).max() <= tolerance
    assert out.describe("resize").startswith(f"{fmt} 20x10 ({mode}), squashed")


def test_a_float_image_is_refused_in_one_sentence():
    # Pillow decodes 32-bit float ("F") images only from formats the app does not take.
    with pytest.raises(ImageError) as e:
        decode_image(_encode(Image.new("F", (8, 8), 0.5), "TIFF"), "depth.tif")
    assert str(e.value) == ("depth.tif is a TIFF image; upload a PNG, JPEG, WebP, BMP or GIF "
                            "instead.")


@pytest.mark.parametrize(("size", "aspect"), [
    ((4000, 3), "1333.33 to 1"), ((2, 4000), "1 to 2000.00"), ((1, 50), "1 to 50.00"),
    ((50, 1), "50.00 to 1"), ((1, 1), None),
])
def test_extreme_shapes_decode(size, aspect):
    # Red on the left, blue on the right (all red when one pixel wide).
    data = _encode(_stripes(*size, [RED, BLUE] if size[0] > 1 else [RED]), "PNG")
    out = decode_image(data, "thin.png", fit="resize")
    assert out.pixels.shape == (32, 32, 3) and out.original_size == size
    h, w = out.original.shape[:2]
    assert min(h, w) >= 1 and max(h, w) == min(max(size), 512)
    if aspect:
        assert f"(its aspect was {aspect})" in out.describe("resize")
    left, right = out.pixels[:, 0].astype(int), out.pixels[:, -1].astype(int)
    assert (left[:, 0] > 200).all() and (left[:, 2] < 60).all()
    if size[0] > 1:
        assert (right[:, 2] > 200).all() and (right[:, 0] < 60).all()
    crop = decode_image(data, "thin.png", fit="crop")
    assert crop.pixels.shape == (32, 32, 3)
    assert crop.describe("crop").endswith("center-cropped and resized to 32x32")


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_an_animation_says_that_its_first_frame_is_used(fmt):
    frames = [Image.new("RGB", (32, 32), c) for c in (RED, BLUE, GREEN)]
    buf = io.BytesIO()
    frames[0].save(buf, format=fmt, save_all=True, append_images=frames[1:], duration=100,
                   **({"lossless": True} if fmt == "WEBP" else {}))
    out = decode_image(buf.getvalue(), "moving")
    assert out.frames == 3
    assert (out.pixels[..., 0] > 240).all() and (out.pixels[..., 2] < 15).all()
    # 32x32 already: not "resized to 32x32" (it was not), but used at its own size.
    assert (f"{out.mode}, 3 frames: the first is used), used at its own size"
            in out.describe("resize"))
    still = decode_image(_encode(frames[0], fmt), "still")
    assert still.frames == 1 and "frames" not in still.describe("resize")

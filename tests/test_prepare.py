"""One image convention: ``CheckpointInfo.prepare`` takes images as people have them and
returns exactly the model's input; functions that take images (``out_of_distribution``)
take the same; anything that would be silently wrong is refused in one sentence."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from convattn import load_checkpoint, load_sample, out_of_distribution
from convattn.files.data import CIFAR10_MEAN, CIFAR10_STD
from convattn.files.images import ImageError, decode_image
from convattn.files.info import CheckpointInfo
from convattn.trust import ood
from convattn.trust.neighbours import LAYER, private_copy

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints"
INFO = CheckpointInfo("seed", {}, ["a", "b"], CIFAR10_MEAN, CIFAR10_STD)
PIXELS = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)


def _png(pixels: np.ndarray, path: Path, mode: str | None = None) -> Path:
    Image.fromarray(pixels, mode).save(path)
    return path


def _expected(pixels: np.ndarray = PIXELS) -> torch.Tensor:
    return INFO.normalise(pixels)


def test_arrays_and_tensors_either_way_round_give_normalise_exactly():
    chw = PIXELS.transpose(0, 3, 1, 2)
    for images in (PIXELS, chw, torch.from_numpy(PIXELS), torch.from_numpy(chw),
                   list(PIXELS), [torch.from_numpy(p) for p in PIXELS],
                   [PIXELS[:2], PIXELS[2]]):  # a list: each item an image or a batch
        x = INFO.prepare(images)
        assert x.dtype == torch.float32 and x.shape == (3, 3, 32, 32)
        assert torch.equal(x, _expected())
    one = INFO.prepare(PIXELS[1])  # one (H, W, 3) image: a batch of one
    assert torch.equal(one, _expected(PIXELS[1:2]))
    assert torch.equal(INFO.prepare(torch.from_numpy(PIXELS[1])), one)
    # The values are exact: (x / 255 - mean) / std, nothing else.
    mean, std = torch.tensor(CIFAR10_MEAN), torch.tensor(CIFAR10_STD)
    hand = (torch.from_numpy(PIXELS[1]).float() / 255 - mean) / std
    assert torch.allclose(one[0].permute(1, 2, 0), hand, atol=1e-6)


def test_pil_images_and_files_at_32_give_normalise_exactly(tmp_path):
    paths = [_png(p, tmp_path / f"{i}.png") for i, p in enumerate(PIXELS)]
    pil = [Image.fromarray(p) for p in PIXELS]
    for images in (pil, paths, [str(p) for p in paths], [pil[0], paths[1], PIXELS[2]]):
        assert torch.equal(INFO.prepare(images), _expected())
    assert torch.equal(INFO.prepare(pil[2]), _expected(PIXELS[2:]))
    assert torch.equal(INFO.prepare(str(paths[2])), _expected(PIXELS[2:]))
    assert torch.equal(INFO.prepare(paths, fit="crop"), _expected())  # square: no crop


def test_pil_images_files_and_other_sizes_are_fitted_as_uploads_are(tmp_path):
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (30, 47, 4), dtype=np.uint8)
    grey = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    photo = Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8))
    exif = photo.getexif()
    exif[0x0112] = 6  # stored turned by 90 degrees
    jpeg = tmp_path / "turned.jpg"
    photo.save(jpeg, exif=exif, quality=90)
    files = [_png(rgba, tmp_path / "rgba.png", "RGBA"), _png(grey, tmp_path / "grey.png", "L"),
             jpeg]
    for fit in ("resize", "crop"):
        decoded = np.stack([decode_image(f.read_bytes(), f.name, 32, fit).pixels
                            for f in files])
        assert torch.equal(INFO.prepare(files, fit=fit), _expected(decoded))
        opened = [Image.open(f) for f in files]
        assert torch.equal(INFO.prepare(opened, fit=fit), _expected(decoded))
    # An array of another size goes through the same resize as the same image uploaded.
    big = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    uploaded = decode_image(_png(big, tmp_path / "big.png").read_bytes()).pixels
    assert torch.equal(INFO.prepare(big), _expected(uploaded[None]))
    assert torch.equal(INFO.prepare(torch.from_numpy(big).permute(2, 0, 1)[None]),
                       _expected(uploaded[None]))


def test_the_result_goes_where_it_is_asked_to():
    assert INFO.prepare(PIXELS, device="cpu").device.type == "cpu"
    assert INFO.prepare(torch.from_numpy(PIXELS).to("meta")).device.type == "meta"
    assert INFO.input_size == 32


FLOAT = ("images must be uint8 (pixel values 0-255), not float32: scale floats in [0, 1] "
         "by 255, round and cast them to uint8; a tensor already normalised goes to the "
         "model as it is.")
REFUSED = [
    (PIXELS.astype(np.float32) / 255, FLOAT),
    (torch.from_numpy(PIXELS).permute(0, 3, 1, 2).float() / 255, FLOAT),
    (INFO.normalise(PIXELS), FLOAT),  # already the model's input
    (PIXELS.astype(np.float64), FLOAT.replace("float32", "float64")),
    (PIXELS.astype(np.int64), "images must be uint8 (pixel values 0-255), not int64: cast "
     "them to uint8 once their values are 0-255."),
    (PIXELS[..., :1], "images of shape (3, 32, 32, 1) have 1 channel: repeat it 3 times "
     "along axis -1 for grey images, or pass PIL images or image files, which are "
     "converted to RGB."),
    (PIXELS[:, None, :, :, 0], "images of shape (3, 1, 32, 32) have 1 channel: repeat it 3 "
     "times along axis 1 for grey images, or pass PIL images or image files, which are "
     "converted to RGB."),
    (np.concatenate([PIXELS, PIXELS[..., :1]], -1), "images of shape (3, 32, 32, 4) have 4 "
     "channels: keep the first 3 (x[..., :3]) if the fourth is alpha, or pass PIL images "
     "or image files, which put transparent pixels on white."),
    (np.zeros((2, 4, 32, 32), np.uint8), "images of shape (2, 4, 32, 32) have 4 channels: "
     "keep the first 3 (x[:, :3]) if the fourth is alpha, or pass PIL images or image "
     "files, which put transparent pixels on white."),
    (np.zeros((2, 32, 3, 32), np.uint8), "images of shape (2, 32, 3, 32) have no axis of 3 "
     "colour channels: pass (B, H, W, 3) or (B, 3, H, W), or one image (H, W, 3)."),
    (PIXELS[0].transpose(2, 0, 1), "one image must be (H, W, 3); for one channels-first "
     "image of shape (3, 32, 32), add the batch axis with x[None]."),
    (PIXELS[0, :, :, 0], "images must be a batch (B, H, W, 3) or (B, 3, H, W), or one image "
     "(H, W, 3), not an array of shape (32, 32)."),
    (PIXELS[None], "images must be a batch (B, H, W, 3) or (B, 3, H, W), or one image "
     "(H, W, 3), not an array of shape (1, 3, 32, 32, 3)."),
    (PIXELS[:0], "the batch is empty: give at least one image."),
    ([], "the batch is empty: give at least one image."),
    (np.zeros((2, 0, 32, 3), np.uint8), "images of shape (2, 0, 32, 3) have no pixels."),
    (b"\x89PNG", "images must be numpy arrays, torch tensors, PIL images or image file "
     "paths, not bytes."),
    ([[1, 2, 3]], "images must be numpy arrays, torch tensors, PIL images or image file "
     "paths, not list."),
]


@pytest.mark.parametrize("images, sentence", REFUSED)
def test_what_would_be_silently_wrong_is_refused_in_one_sentence(images, sentence):
    with pytest.raises(ImageError) as e:
        INFO.prepare(images)
    assert str(e.value) == sentence


def test_missing_files_and_folders_are_refused(tmp_path):
    with pytest.raises(ImageError) as e:
        INFO.prepare(tmp_path / "nothing.png")
    assert str(e.value) == f"{tmp_path / 'nothing.png'} does not exist."
    with pytest.raises(ImageError) as e:
        INFO.prepare([str(tmp_path)])
    assert str(e.value) == f"{tmp_path} is a folder, not an image file."
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ImageError, match="is not an image this app can read"):
        INFO.prepare(text)  # the upload decoder's own sentence


def test_normalise_refuses_floats_too():
    with pytest.raises(ImageError) as e:
        INFO.normalise(PIXELS / 255)  # cast to uint8 this would have been all zeros
    assert str(e.value) == FLOAT.replace("float32", "float64")


def _scores_as_before(model, info, pixels: np.ndarray) -> torch.Tensor:
    """What out_of_distribution computed when it took floats (B, 3, H, W) in [0, 1]."""
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
    private, seen = private_copy(model, LAYER)
    mean = torch.tensor(info.mean).view(1, 3, 1, 1)
    std = torch.tensor(info.std).view(1, 3, 1, 1)
    with torch.inference_mode():
        logits = private((x - mean) / std).float()
    e = ood.Evidence(logits, seen.pop().flatten(1).float(), ood.image_statistics(x))
    return ood.stored_fit(info).score(e)


def test_out_of_distribution_takes_images_as_prepare_does_and_scores_as_before():
    model, info = load_checkpoint(SHIPPED / "seed.pt")
    red = np.zeros((1, 32, 32, 3), np.uint8)
    red[..., 0] = 255
    pixels = np.concatenate([load_sample().images[:6], red])
    scores, flagged = out_of_distribution(model, info, pixels)
    assert torch.equal(scores, _scores_as_before(model, info, pixels))
    assert flagged[-1].item() and torch.equal(flagged, scores > ood.stored_fit(info).threshold)
    for same in (torch.from_numpy(pixels).permute(0, 3, 1, 2), [Image.fromarray(p)
                                                                for p in pixels]):
        assert torch.equal(out_of_distribution(model, info, same)[0], scores)
    one = out_of_distribution(model, info, pixels[2])[0]  # a batch of one: other kernels
    assert one.shape == (1,) and one.item() == pytest.approx(scores[2].item(), rel=1e-4)
    with pytest.raises(ImageError) as e:
        out_of_distribution(model, info, torch.from_numpy(pixels).permute(0, 3, 1, 2) / 255)
    assert str(e.value) == FLOAT


def test_out_of_distribution_reads_a_png_as_its_pixels(tmp_path):
    model, info = load_checkpoint(SHIPPED / "seed.pt")
    pixels = load_sample().images[:2]
    files = []
    for i, p in enumerate(pixels):
        buf = io.BytesIO()
        Image.fromarray(p).save(buf, "PNG")
        (tmp_path / f"{i}.png").write_bytes(buf.getvalue())
        files.append(tmp_path / f"{i}.png")
    assert torch.equal(out_of_distribution(model, info, files)[0],
                       out_of_distribution(model, info, pixels)[0])

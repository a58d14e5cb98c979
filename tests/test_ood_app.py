"""Inspect says so when the image is out of distribution (appkit/ood_notice.py), for a test
image and for an upload, and says nothing when it is not."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pagedata
import pytest
import torch
from apprun import open_page
from PIL import Image

from appkit import loaded_model, ood_notice
from convattn.files.checkpoint import read_checkpoint, save_checkpoint
from convattn.trust import ood

MESSAGE = "The model can only answer with its 10 classes, so its confidence means little here"


def _with_flag(path: Path, threshold: float) -> Path:
    """A tiny seed checkpoint whose flag is the maximum softmax probability with the given
    threshold: its scores (minus the top probability) lie in [-1, -0.1], so -2 flags every
    image and 0 none."""
    pagedata.checkpoint(path, "seed")
    ckpt = read_checkpoint(path)
    ckpt[ood.KEY] = ood.OODFit("msp", {}, threshold, "made by the test").to_dict()
    return save_checkpoint(ckpt, path)


@pytest.fixture
def flagged_ckpt(tmp_path, monkeypatch) -> Path:
    return _use(_with_flag(tmp_path / "flags-all.pt", -2.0), tmp_path, monkeypatch)


def _use(path: Path, tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("CONVATTN_CHECKPOINT", str(path))
    monkeypatch.setenv("CONVATTN_CHECKPOINTS", str(tmp_path / "none"))
    monkeypatch.delenv("CONVATTN_DATA", raising=False)
    return path


def _warnings(at) -> list[str]:
    return [w.value for w in at.warning if MESSAGE in w.value]


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), (255, 0, 0)).save(buf, format="PNG")
    return buf.getvalue()


def test_a_flagged_test_image_is_said_plainly(flagged_ckpt):
    at = open_page(methods=[])
    assert not at.exception, [e.message for e in at.exception]
    assert at.radio(key="source").value == "Test images"
    assert len(_warnings(at)) == 1
    (small,) = [c.value for c in at.caption if "Out-of-distribution score" in c.value]
    assert "above the threshold -2 that 95% of the test images stay under" in small


def test_a_flagged_upload_is_said_plainly(flagged_ckpt):
    at = open_page(methods=[])
    at.radio(key="source").set_value("Upload").run()
    at.file_uploader(key="upload").upload("red.png", _png(), "image/png")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("PNG 40x40" in c.value for c in at.caption)  # the upload is what is shown
    assert len(_warnings(at)) == 1


def test_an_image_not_flagged_gets_no_notice(tmp_path, monkeypatch):
    _use(_with_flag(tmp_path / "flags-none.pt", 0.0), tmp_path, monkeypatch)
    at = open_page(methods=[])
    assert not at.exception, [e.message for e in at.exception]
    assert not _warnings(at)
    assert not [c for c in at.caption if "Out-of-distribution score" in c.value]


def test_the_notice_uses_the_library_score(tmp_path):
    """check() is out_of_distribution on the image as it is, uint8 (H, W, 3)."""
    path = _with_flag(tmp_path / "c.pt", -0.5)

    loaded = loaded_model.load(str(path))
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    flag = ood_notice.check(loaded, pixels)
    with torch.no_grad():
        probs = loaded.model(loaded.info.normalise(pixels)).softmax(1)
    assert flag is not None and flag.threshold == -0.5
    assert flag.score == pytest.approx(-probs.max().item(), abs=1e-6)
    assert flag.flagged == (flag.score > -0.5)
    assert ood.out_of_distribution(loaded.model, loaded.info, pixels)[0].item() == \
        pytest.approx(flag.score, abs=1e-6)

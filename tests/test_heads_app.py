"""A multi-head checkpoint in the app: Inspect and Compare offer each head and their mean,
Learn steps through one head, and every figure shown is that head's."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from apprun import captions, open_page
from pagedata import CLASSES

from convattn.files.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from convattn.files.data import CIFAR10_MEAN, CIFAR10_STD
from convattn.files.shipped import sample_path
from convattn.nn.models import create_model
from convattn.readout import analysis
from convattn.readout.attention import attention_modules


@pytest.fixture
def mh4(tmp_path, monkeypatch) -> Path:
    """A seed-mh4 checkpoint whose four heads attend sharply and differently."""
    torch.manual_seed(3)
    model = create_model("seed-mh4")
    m = attention_modules(model)["attention"]
    with torch.no_grad():
        m.conv_q.weight.mul_(8)
        m.conv_k.weight.mul_(8)
        m.gamma.fill_(0.5)
    path = save_checkpoint(make_checkpoint(model, "seed-mh4", {}, CLASSES, CIFAR10_MEAN,
                                           CIFAR10_STD, metrics={"test_accuracy": 11.0}),
                           tmp_path / "mh4.pt")
    monkeypatch.setenv("CONVATTN_CHECKPOINT", str(path))
    monkeypatch.setenv("CONVATTN_CHECKPOINTS", str(tmp_path / "none"))
    monkeypatch.delenv("CONVATTN_DATA", raising=False)
    return path


def _strongest_weight(at) -> float:
    (caption,) = [c for c in captions(at) if "attends most to" in c]
    return float(re.search(r"weight (\d\.\d+)", caption).group(1))


def test_inspect_offers_each_head_and_their_mean(mh4):
    at = open_page()
    assert not at.exception, [e.message for e in at.exception]
    head = at.selectbox(key="head_attention")
    assert head.options == ["mean of the 4 heads", "head 1 of 4", "head 2 of 4",
                            "head 3 of 4", "head 4 of 4"]
    model, info = load_checkpoint(mh4)
    result = analysis.analyse(model, np.load(sample_path())["images"][0], info.mean, info.std)
    expected = {t: analysis.query_view(result.view("attention", t), (16, 16)).strongest()[1]
                for t in result.head_choices("attention")}
    assert len({round(v, 4) for v in expected.values()}) == 5  # the heads really differ
    assert _strongest_weight(at) == pytest.approx(expected[None], abs=1e-4)
    for t in (0, 3):
        head.set_value(t).run()
        assert not at.exception
        assert _strongest_weight(at) == pytest.approx(expected[t], abs=1e-4)


def test_learn_steps_through_the_chosen_head(mh4):
    at = open_page("2_Learn.py")
    assert not at.exception, [e.message for e in at.exception]
    head = at.selectbox(key="learn_head_attention")
    assert head.options == ["head 1 of 4", "head 2 of 4", "head 3 of 4", "head 4 of 4"]
    head.set_value(2).run()
    text = " ".join(c.value for c in at.caption)
    assert "this is head 3, with its own C'/h = 16 query and key numbers" in text
    assert not at.exception


def test_compare_offers_heads_for_each_side(mh4, tmp_path):
    at = open_page("1_Compare.py")
    assert not at.exception, [e.message for e in at.exception]
    assert at.selectbox(key="compare_head_a_attention").options[0] == "mean of the 4 heads"

"""Inspect, Compare and Learn on a foreign network opened from a model card, through
AppTest: a BigGAN-style block (keys max-pooled 2x2, no gamma) in a 5-class network taking
48x80 images, so the query grid (24x40), the key grid (12x20) and the image are neither
32x32 nor square. The lens gets the grids and the module's queries and keys; the page
says "no γ"; Learn says in one sentence why it cannot step through it."""

from __future__ import annotations

import base64
import textwrap

import numpy as np
import pytest
import torch
from apprun import lens_data, open_page, switch

from convattn.files.card import open_model
from convattn.readout import analysis

NET = textwrap.dedent('''
    import torch
    import torch.nn.functional as F
    from torch import nn


    class Attention(nn.Module):
        def __init__(self, ch):
            super().__init__()
            self.theta = nn.Conv2d(ch, ch // 8, 1, bias=False)
            self.phi = nn.Conv2d(ch, ch // 8, 1, bias=False)
            self.g = nn.Conv2d(ch, ch // 2, 1, bias=False)
            self.o = nn.Conv2d(ch // 2, ch, 1, bias=False)

        def forward(self, x):
            b, c, h, w = x.shape
            theta = self.theta(x).view(b, -1, h * w)
            phi = F.max_pool2d(self.phi(x), 2).view(b, -1, h * w // 4)
            g = F.max_pool2d(self.g(x), 2).view(b, -1, h * w // 4)
            beta = F.softmax(torch.bmm(theta.transpose(1, 2), phi), -1)
            return x + self.o(torch.bmm(g, beta.transpose(1, 2)).view(b, -1, h, w))


    class Net(nn.Module):
        def __init__(self, n=5):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
                                      nn.MaxPool2d(2))
            self.attn = Attention(16)
            self.head = nn.Linear(16, n)

        def forward(self, x):
            return self.head(self.attn(self.stem(x)).mean((2, 3)))


    def build():
        torch.manual_seed(0)
        return Net()
''')
CARD = textwrap.dedent('''
    factory = "net.py:build"
    weights = "net.pt"
    classes = ["a", "b", "c", "d", "e"]
    image_size = [48, 80]
    mean = [0.5, 0.5, 0.5]
    std = [0.25, 0.25, 0.25]
''')


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    folder = tmp_path_factory.mktemp("card")
    (folder / "net.py").write_text(NET)
    (folder / "card.toml").write_text(CARD)
    ns: dict = {}
    exec(NET, ns)
    torch.save(ns["build"]().state_dict(), folder / "net.pt")
    return folder / "card.toml"


@pytest.fixture
def env(card, monkeypatch, tmp_path):
    monkeypatch.setenv("CONVATTN_MODEL", str(card))
    monkeypatch.setenv("CONVATTN_CHECKPOINTS", str(tmp_path / "none"))
    monkeypatch.setenv("CONVATTN_DATA", "")
    return card


def _lens(at) -> list[dict]:
    return lens_data(at)


def test_inspect_shows_a_pooled_foreign_module_on_a_wide_image(env):
    at = open_page(methods=[])
    assert not at.exception, [e.message for e in at.exception]
    table = next(m.value for m in at.markdown if "| module |" in m.value)
    assert "24x40 \\(keys 12x20\\)" in table and "no γ" in table
    (store,) = [d for d in _lens(at) if d.get("role") == "store"]
    (shown,) = [d for d in _lens(at) if "pinned" in d and d.get("role") != "store"]
    assert (store["grid"], store["keys"], store["input"], store["kind"]) == (
        [24, 40], [12, 20], [48, 80], "qk")
    assert shown["pinned"] == [24, 40]  # the centre of the 48x80 image
    # What was sent is the module's own queries and keys for the image sent with them.
    model, info = open_model(env)
    pixels = np.frombuffer(base64.b64decode(store["image"]), np.uint8).reshape(48, 80, 3)
    view = analysis.analyse(model.eval(), pixels, info.mean, info.std).modules["attn"]
    assert view.key_grid == (12, 20) and store["dtype"] == "float16"
    q = np.frombuffer(base64.b64decode(store["q"]), "<f2").reshape(view.q.shape)
    k = np.frombuffer(base64.b64decode(store["k"]), "<f2").reshape(view.k.shape)
    np.testing.assert_array_equal(q, view.q.astype(np.float16))
    np.testing.assert_array_equal(k, view.k.astype(np.float16))
    assert store["qk_scale"] == 1.0  # no 1/sqrt(d) in this block
    assert store["heads"] == 1 and store["dim"] == 2
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Query points figure (PNG)" in labels
    # The pinned query is point 1; an added point stays when another query is pinned.
    at.button(key="figure_add").click().run()
    at.number_input(key=next(n.key for n in at.number_input if n.label == "Query row")
                    ).set_value(3).run()
    said = next(c.value for c in at.caption if c.value.startswith("Points:"))
    assert said == "Points: 1: row 3, column 40; 2: row 24, column 40 (1 is the pinned query)."
    at.radio(key="figure_format").set_value("svg").run()
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Query points figure (SVG)" in labels
    assert any("on the 12x20 grid of the keys" in c.value for c in at.caption)


def test_compare_and_learn_on_a_foreign_network(env):
    at = open_page(methods=[])
    at = switch(at, "1_Compare.py")
    assert not at.exception, [e.message for e in at.exception]
    at = switch(at, "2_Learn.py")
    assert not at.exception, [e.message for e in at.exception]
    (said,) = [i.value for i in at.info]
    assert said.startswith("The step-through follows one query through the queries, keys "
                           "and values of convattn's own attention modules")

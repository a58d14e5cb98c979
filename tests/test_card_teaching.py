"""Attention statistics, Faithfulness and the Sanity check on a foreign network at 64x64
with 5 classes: a BigGAN-style block (keys max-pooled onto a coarser grid, no convattn
gamma) in the library, each number held to a hand computation from the block's own
weights; and the three pages on a model card (``cardkit``'s SAGAN network)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from apprun import open_page
from cardkit import write_card, write_folder
from torch import nn

from convattn.explain import faithfulness_batched as faithrun
from convattn.explain.faithfulness import FaithfulnessConfig, attention_name
from convattn.explain.sanity import cascading_randomisation
from convattn.readout.grid import Grid
from convattn.readout.stats import attention_statistics

SIDE, CLASSES = 64, 5


class PooledKeys(nn.Module):
    """BigGAN-PyTorch's layers.Attention: keys and values max-pooled 2x2, no scale."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.ch = ch
        self.theta = nn.Conv2d(ch, ch // 8, 1, bias=False)
        self.phi = nn.Conv2d(ch, ch // 8, 1, bias=False)
        self.g = nn.Conv2d(ch, ch // 2, 1, bias=False)
        self.o = nn.Conv2d(ch // 2, ch, 1, bias=False)
        self.scale = nn.Parameter(torch.tensor(0.5))

    def forward(self, x):
        theta = self.theta(x).view(-1, self.ch // 8, x.shape[2] * x.shape[3])
        phi = F.max_pool2d(self.phi(x), [2, 2]).view(-1, self.ch // 8,
                                                     x.shape[2] * x.shape[3] // 4)
        g = F.max_pool2d(self.g(x), [2, 2]).view(-1, self.ch // 2, x.shape[2] * x.shape[3] // 4)
        beta = F.softmax(torch.bmm(theta.transpose(1, 2), phi), -1)
        o = self.o(torch.bmm(g, beta.transpose(1, 2)).view(-1, self.ch // 2, x.shape[2],
                                                           x.shape[3]))
        return self.scale * o + x

    def reference(self, x):
        q = self.theta(x).flatten(2).transpose(1, 2)
        k = F.max_pool2d(self.phi(x), 2).flatten(2)
        return torch.softmax(q @ k, dim=-1)  # (B, Nq, Nk)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4))
        self.attn = PooledKeys(16)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(16, CLASSES))

    def forward(self, x):
        return self.head(self.attn(self.stem(x)))


@pytest.fixture
def net() -> Net:
    torch.manual_seed(0)
    return Net().eval()


def _reference(net: Net, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net.attn.reference(net.stem(x))


def test_statistics_of_a_foreign_block_with_pooled_keys_at_64x64(net):
    x = torch.randn(3, 3, SIDE, SIDE)
    stats = attention_statistics(net, x, torch.tensor([0, 1, 4]))
    (m,) = stats.modules.values()
    assert (m.grid, m.keys, m.image) == ((16, 16), (8, 8), (SIDE, SIDE))
    a = _reference(net, x).double()  # (3, 256, 64)
    entropy = -(a * a.clamp_min(1e-300).log()).sum(-1)
    np.testing.assert_allclose(m.entropy, entropy.view(3, 16, 16).numpy(), rtol=1e-4, atol=1e-5)
    # Distances in pixels of the 64x64 input: a query cell's centre to a key cell's.
    q = torch.from_numpy(Grid.of((16, 16), (SIDE, SIDE)).centres())
    k = torch.from_numpy(Grid.of((8, 8), (SIDE, SIDE)).centres())
    distance = (a * torch.cdist(q, k)[None]).sum(-1)
    np.testing.assert_allclose(m.distance, distance.view(3, 16, 16).numpy(), rtol=1e-4)
    u = a / a.norm(dim=-1, keepdim=True)
    pairs = (u @ u.transpose(1, 2)).sum((1, 2)) - 256
    np.testing.assert_allclose(m.similarity, (pairs / (256 * 255)).numpy(), rtol=1e-4)
    assert m.max_entropy == pytest.approx(np.log(64))
    np.testing.assert_allclose(m.uniform_distance, torch.cdist(q, k).mean(1).view(16, 16),
                               rtol=1e-5)
    # A subset keeps the key grid and the input size (the page's groups).
    part = stats.select(np.array([True, False, True]))
    (p,) = part.modules.values()
    assert (p.keys, p.image, len(p.similarity)) == ((8, 8), (SIDE, SIDE), 2)
    assert p.max_entropy == m.max_entropy


def test_faithfulness_ranks_by_the_foreign_blocks_attention_received(net):
    x = torch.randn(4, 3, SIDE, SIDE)
    got = faithrun.run(net, x, torch.arange(4) % CLASSES, ["saliency"],
                       cfg=FaithfulnessConfig(steps=4), chunk=2)
    name = attention_name("attn")
    assert list(got.curves) == ["saliency", name, "random order"]
    # Column means of the block's own softmax on its 8x8 key grid, each cell 8x8 pixels.
    received = _reference(net, x).mean(dim=1).view(4, 1, 8, 8)
    expect = F.interpolate(received, size=(SIDE, SIDE), mode="nearest")[:, 0]
    np.testing.assert_allclose(got.maps[name], expect.numpy(), rtol=1e-5, atol=1e-8)
    # The curves' ends: the image's own probability of its predicted class, and the
    # fully deleted image's.
    with torch.no_grad():
        p = net(x).softmax(1)
        empty = net(torch.zeros_like(x)).softmax(1)
    target = p.argmax(1)
    np.testing.assert_allclose(got.curves[name].deletion[:, 0],
                               p[torch.arange(4), target].numpy(), rtol=1e-5)
    np.testing.assert_allclose(got.curves[name].deletion[:, -1],
                               empty[torch.arange(4), target].numpy(), rtol=1e-5)
    assert got.curves[name].deletion.shape == (4, 5)


def test_sanity_check_randomises_a_foreign_network_at_64x64(net):
    x = torch.randn(1, 3, SIDE, SIDE)
    got = cascading_randomisation(net, x, ["saliency", "gradcam"])
    # Its convolutions and the head are the units, from the top down.
    assert got.steps[:2] == ["trained model", "head.2"]
    assert got.maps["saliency"].shape == (len(got.steps), SIDE, SIDE)
    assert got.probs.shape == (len(got.steps),) and 0 <= got.target < CLASSES
    assert got.map_similarity["saliency"]["spearman"][0] == pytest.approx(1.0)
    assert got.rows == {}


@pytest.fixture
def card(tmp_path, monkeypatch):
    path = write_card(tmp_path / "model", size=SIDE)
    data = write_folder(tmp_path / "data", size=(SIDE, SIDE), per_class=4)
    monkeypatch.setenv("CONVATTN_MODEL", str(path))
    monkeypatch.setenv("CONVATTN_DATA", str(data))
    monkeypatch.delenv("CONVATTN_CHECKPOINT", raising=False)
    return path


def _text(at) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    return "\n".join(parts + [e.value for e in (*at.info, *at.success, *at.warning)])


def test_the_three_pages_on_a_64x64_five_class_card(card):
    at = open_page("6_Attention_statistics.py", timeout=180, stats_images=20)
    assert not at.exception, [e.message for e in at.exception]
    assert "pixels of the 64x64 image" in _text(at)
    table = at.dataframe[0].value
    assert table["images"].tolist()[0] == 20
    at = open_page("8_Faithfulness.py", timeout=180, faith_images=4, faith_steps=4,
                   faith_methods=["saliency", "gradcam"])
    at.button(key="faith_run").click().run()
    assert not at.exception, [e.message for e in at.exception]
    rankings = at.dataframe[0].value["ranking"].tolist()
    assert rankings == ["Saliency", "Grad-CAM", "attention received (attn)", "random order"]
    at = open_page("9_Sanity_check.py", timeout=180, sanity_methods=["saliency"])
    if any(b.key == "sanity_go_example" for b in at.button):  # a busy machine
        at.button(key="sanity_go_example").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert "not convattn's own attention layers" in _text(at)
    assert at.dataframe[0].value["modules re-initialised"].tolist()[0] == "trained model"

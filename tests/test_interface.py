"""The attention interface with a foreign module: a SAGAN / non-local style block that
pools its keys 2x2 (Nk = Nq / 4), has no gamma and exposes neither queries nor keys. The
readers give its real attention where they can and say in one sentence why not where they
cannot; ConvAttentionModule provides every capability."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convattn import attention_maps, attention_modules, gamma_values, query_row
from convattn.explain.ablation import ablated_copy
from convattn.explain.faithfulness import attention_ranking
from convattn.explain.sanity import cascading_randomisation, randomisation_steps
from convattn.nn.interface import (
    AttentionLayer,
    GatedAttention,
    NormedResidual,
    NotSupported,
    QueryKeyAttention,
    UniformableAttention,
    ValueAttention,
    attention_wanted,
    report,
)
from convattn.nn.self_attention import ConvAttentionModule
from convattn.readout import analysis
from convattn.readout.attention import residual_ratios, run_with_records
from convattn.readout.lens import module_qk_space, module_queries_keys
from convattn.readout.stats import attention_statistics
from convattn.readout.stepthrough import predict_with_gamma, step_through

C = 8  # channels at the attention modules, on an 8x8 grid (32x32 images, stride 4)


class PooledAttention(nn.Module):
    """SAGAN-style self-attention whose keys and values are max-pooled 2x2, as in a
    non-local block: A = softmax(Q K^T) over the (H/2)(W/2) pooled keys, output X + A V,
    no gamma. It implements ``AttentionLayer`` and reports from its forward, nothing more."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.query_conv = nn.Conv2d(channels, channels // 2, 1)
        self.key_conv = nn.Conv2d(channels, channels // 2, 1)
        self.value_conv = nn.Conv2d(channels, channels, 1)
        self.report_attention = True  # False: report only x and z, as a fused kernel would

    def _attention(self, x: Tensor) -> Tensor:
        q = self.query_conv(x).flatten(2).transpose(1, 2)  # (B, Nq, d)
        k = F.max_pool2d(self.key_conv(x), 2).flatten(2)  # (B, d, Nk)
        return (q @ k).softmax(dim=-1)[:, None]  # (B, 1, Nq, Nk)

    def heads(self) -> int:
        return 1

    def weights(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self._attention(x).float()

    def row(self, x: Tensor, query: int) -> Tensor:
        return self.weights(x)[:, :, query]

    def key_grid(self, x: Tensor) -> tuple[int, int]:
        return x.shape[-2] // 2, x.shape[-1] // 2

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        a = self._attention(x)
        v = F.max_pool2d(self.value_conv(x), 2).flatten(2).transpose(1, 2)  # (B, Nk, C)
        z = a[:, 0] @ v  # (B, Nq, C)
        wanted = self.report_attention and attention_wanted()
        report(self, x, attention=a.detach() if wanted else None, z=z.detach())
        return x + z.transpose(1, 2).reshape(b, c, h, w)


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, C, 3, stride=4, padding=1), nn.ReLU(),
                        ConvAttentionModule(C, 4), PooledAttention(C),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(C, 10))
    with torch.no_grad():
        net[2].set_gate_(0.3)
        net[3].query_conv.weight.mul_(6)  # rows far from uniform, so mistakes show
    return net.eval()


@pytest.fixture(scope="module")
def images() -> Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def foreign_input(model: nn.Module, images: Tensor) -> Tensor:
    """The foreign block's input (B, C, 8, 8), layer by layer."""
    with torch.no_grad():
        return model[2](model[1](model[0](images)))


@torch.no_grad()
def reference(block: PooledAttention, x: Tensor) -> Tensor:
    """(B, 64, 16) attention written out: 1x1 convolutions as sums over channels, the 2x2
    max-pool as a max over each block of four cells, softmax of the scores over keys."""
    def conv(layer: nn.Conv2d, t: Tensor) -> Tensor:
        return torch.einsum("oc,bchw->bohw", layer.weight[:, :, 0, 0].double(),
                            t.double()) + layer.bias.double()[None, :, None, None]

    q = conv(block.query_conv, x)  # (B, d, 8, 8)
    k = conv(block.key_conv, x)
    b, d = k.shape[:2]
    k = k.view(b, d, 4, 2, 4, 2).amax(dim=(3, 5))  # (B, d, 4, 4)
    scores = torch.einsum("bdq,bdk->bqk", q.flatten(2), k.flatten(2))
    return scores.softmax(dim=-1)


def test_maps_of_a_foreign_module_with_pooled_keys_match_a_reference(model, images):
    want = reference(model[3], foreign_input(model, images))  # (3, 64, 16)
    maps = attention_maps(model, images)
    assert maps["2"].shape == (3, 64, 64) and maps["3"].shape == (3, 64, 16)
    torch.testing.assert_close(maps["3"].double(), want, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(maps["3"].sum(dim=-1), torch.ones(3, 64), atol=1e-5, rtol=0)
    assert float(want.max()) > 4 / 16  # far from uniform: a wrong key order would show
    assert attention_maps(model, images, per_head=True)["3"].shape == (3, 1, 64, 16)
    torch.testing.assert_close(query_row(model, images, "3", 37).double(), want[:, 37],
                               atol=1e-5, rtol=1e-4)


def test_a_module_that_reports_no_matrix_is_asked_for_its_weights(model, images):
    want = reference(model[3], foreign_input(model, images))
    model[3].report_attention = False
    try:
        _, records = run_with_records(model, images)
        got = attention_maps(model, images)["3"]
    finally:
        model[3].report_attention = True
    assert records["3"].attention.shape == (3, 1, 64, 16)
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-4)


def test_modules_are_found_and_only_the_gated_one_has_a_gamma(model):
    found = attention_modules(model)
    assert list(found) == ["2", "3"] and found["3"] is model[3]
    assert gamma_values(model) == {"2": pytest.approx(0.3)}


def test_conv_attention_module_has_every_capability_and_the_foreign_one_none():
    m = ConvAttentionModule(C, 4, num_heads=2)
    for capability in (AttentionLayer, QueryKeyAttention, ValueAttention, GatedAttention,
                       UniformableAttention, NormedResidual):
        assert isinstance(m, capability), capability.__name__
    foreign = PooledAttention(C)
    assert isinstance(foreign, AttentionLayer)
    for capability in (QueryKeyAttention, ValueAttention, GatedAttention,
                       UniformableAttention, NormedResidual):
        assert not isinstance(foreign, capability), capability.__name__


def sentence(text: str) -> str:
    return "^" + re.escape(text) + "$"


def test_what_the_foreign_module_cannot_do_is_said_in_one_sentence(model, images):
    x = foreign_input(model, images[:1])
    with pytest.raises(NotSupported, match=sentence(
            "Module 3 (PooledAttention) has no residual gate (gamma), which the γ = 0 "
            "ablation needs.")):
        ablated_copy(model, "gamma0")
    with pytest.raises(NotSupported, match=sentence(
            "Module 3 (PooledAttention) cannot be made to attend uniformly, which the "
            "uniform-attention ablation needs.")):
        ablated_copy(model, "uniform", modules=["3"])
    with pytest.raises(NotSupported, match=sentence(
            "Module 3 (PooledAttention) does not expose its queries and keys, which the "
            "step-through needs.")):
        step_through(model[3], x, 5, name="3")
    with pytest.raises(NotSupported, match=sentence(
            "Module 3 (PooledAttention) does not expose its queries and keys, which the "
            "query/key space needs.")):
        module_qk_space(model[3], x, "3")
    with pytest.raises(NotSupported, match="^Module 3 .*gamma.*"):
        residual_ratios(model, images)
    with pytest.raises(NotSupported, match="^Module 3 .*gamma.*"):
        predict_with_gamma(model, images, {"3": 0.0})
    pixels = np.zeros((32, 32, 3), dtype=np.uint8)
    # Inspect reads it all the same: its matrix, on its pooled key grid, with no gamma.
    view = analysis.analyse(model, pixels, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)).modules["3"]
    assert view.key_grid == (4, 4) and view.gamma is None and not view.has_qk()


def test_the_gated_module_is_still_ablated_and_stepped_through(model, images):
    off = ablated_copy(model, "gamma0", modules=["2"])
    assert off[2].gate() == 0.0 and model[2].gate() == pytest.approx(0.3)
    x2 = model[1](model[0](images[:1]))
    s = step_through(model[2], x2, 10, name="2")
    assert s.grid == s.key_grid == (8, 8) and s.max_difference < 1e-4
    q, k = module_queries_keys(model[2], x2, "2")
    assert q.shape == k.shape == (1, 64, 4)
    assert module_qk_space(model[2], x2, "2").points.shape == (128, 2)


def test_statistics_put_pooled_keys_at_the_centres_of_their_cells(model, images):
    a = reference(model[3], foreign_input(model, images))  # (3, 64, 16)
    stats = attention_statistics(model, images, torch.zeros(3, dtype=torch.long))
    m = stats.modules["3"]
    assert m.grid == (8, 8) and m.key_grid == (4, 4)
    assert m.max_entropy == pytest.approx(math.log(16))
    # Query cells are 4 input pixels wide, key cells 8: centres at 2, 6, ... and 4, 12, ...
    qy, qx = np.divmod(np.arange(64), 8)
    ky, kx = np.divmod(np.arange(16), 4)
    dist = np.hypot((qy[:, None] + 0.5) * 4 - (ky[None] + 0.5) * 8,
                    (qx[:, None] + 0.5) * 4 - (kx[None] + 0.5) * 8)  # (64, 16)
    want = (a.numpy() * dist).sum(-1).reshape(3, 8, 8)
    np.testing.assert_allclose(m.distance, want, rtol=1e-4)
    entropy = -(a * a.log()).sum(-1).numpy().reshape(3, 8, 8)
    np.testing.assert_allclose(m.entropy, entropy, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(m.uniform_distance, dist.mean(1).reshape(8, 8), rtol=1e-5)
    assert stats.select(np.array([True, False, True])).modules["3"].key_grid == (4, 4)


def test_attention_received_and_sanity_rows_lie_on_the_key_grid(model, images):
    a = reference(model[3], foreign_input(model, images))  # (3, 64, 16)
    received = attention_ranking(model, images)["3"]  # (3, 32, 32)
    want = a.mean(dim=1).view(3, 4, 4).repeat_interleave(8, 1).repeat_interleave(8, 2)
    torch.testing.assert_close(received.double(), want, atol=1e-6, rtol=1e-5)
    assert ["3"] in randomisation_steps(model)  # the foreign block is randomised as a unit
    result = cascading_randomisation(model, images[:1], [], queries={"3": 9})
    assert result.rows["3"].shape == (len(result.steps), 4, 4)
    np.testing.assert_allclose(result.rows["3"][0], a[0, 9].view(4, 4).numpy(), atol=1e-5)

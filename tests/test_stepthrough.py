"""The Learn page's numbers are the module's real computation, step by step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from convattn.nn.models import create_model
from convattn.nn.self_attention import ConvAttentionModule
from convattn.readout.attention import module_inputs
from convattn.readout.stepthrough import entropy, predict_with_gamma, softmax, step_through
from tests.reference import reference


def _module() -> ConvAttentionModule:
    m = ConvAttentionModule(16, 4).eval()
    with torch.no_grad():
        m.gamma.fill_(0.8)
        m.layer_norm.weight.normal_()
        m.layer_norm.bias.normal_()
    return m


def test_every_step_matches_the_reference_and_the_module_output():
    m = _module()
    x = torch.randn(1, 16, 5, 6)
    s = step_through(m, x, query=13)
    with torch.no_grad():
        y, a, z = reference(m, x)  # (1, C, H, W), (1, N, N), (1, C, N), float64
    assert s.grid == (5, 6) and s.q.shape == (4,) and s.keys.shape == (30, 4)
    np.testing.assert_allclose(s.x, x[0].flatten(1)[:, 13], rtol=1e-6)
    np.testing.assert_allclose(s.scores, s.keys @ s.q, rtol=1e-12)
    assert s.scale == 2.0
    np.testing.assert_allclose(s.scaled, s.scores / 2, rtol=1e-12)
    np.testing.assert_allclose(s.attention, a[0, 13].numpy(), atol=1e-6)
    np.testing.assert_allclose(s.attention.sum(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(softmax(s.scaled), s.attention, rtol=1e-10)
    np.testing.assert_allclose(s.z, z[0, :, 13].numpy(), atol=1e-5)
    np.testing.assert_allclose(s.residual, s.gamma * s.z + s.x, rtol=1e-12)
    np.testing.assert_allclose(s.normalised.mean(), 0, atol=1e-9)
    np.testing.assert_allclose(s.normalised.std(), 1, atol=1e-3)  # eps in the variance
    np.testing.assert_allclose(s.output, y[0].flatten(1)[:, 13].numpy(), atol=1e-5)
    # The LayerNorm step reproduces the module's own (float32, fused) forward pass.
    assert s.max_difference < 1e-4
    np.testing.assert_allclose(s.module_output, m(x)[0].flatten(1)[:, 13].detach(), rtol=0)


def test_step_through_on_a_real_model_input():
    model = create_model("resnet9-attn", width=8).eval()
    with torch.no_grad():
        model.attn2.gamma.fill_(1.5)
    x = module_inputs(model, torch.randn(1, 3, 32, 32))["attn2"]
    s = step_through(model.attn2, x, query=63)
    assert s.grid == (8, 8) and s.gamma == 1.5 and s.max_difference < 1e-4
    with pytest.raises(ValueError, match="outside the 8x8 grid"):
        step_through(model.attn2, x, query=64)


def test_temperature_sharpens_and_flattens():
    scaled = np.array([2.0, 1.0, 0.0, -1.0])
    sharp, normal, flat = (softmax(scaled, t) for t in (0.25, 1.0, 4.0))
    assert entropy(sharp) < entropy(normal) < entropy(flat) < np.log(4)
    assert sharp[0] > 0.97 and np.allclose(softmax(scaled, 1e6), 0.25)
    assert entropy(np.full(8, 1 / 8)) == pytest.approx(np.log(8))
    with pytest.raises(ValueError):
        softmax(scaled, 0)


def test_what_if_gamma_runs_on_a_copy():
    model = create_model("seed").eval()
    with torch.no_grad():
        model.attention.gamma.fill_(0.6)
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        real = model(images).softmax(1)
    same = predict_with_gamma(model, images, {"attention": 0.6})
    np.testing.assert_allclose(same, real, atol=1e-6)
    off = predict_with_gamma(model, images, {"attention": 0.0})
    assert model.attention.gamma.item() == pytest.approx(0.6)  # the model is untouched
    # gamma = 0: the module outputs LayerNorm(X), computed here without it.
    with torch.no_grad():
        h = model.relu(model.bn1(model.conv1(images)))
        h = F.layer_norm(h.permute(0, 2, 3, 1), (64,), model.attention.layer_norm.weight,
                         model.attention.layer_norm.bias).permute(0, 3, 1, 2)
        h = model.relu(model.bn3(model.conv3(model.relu(model.bn2(model.conv2(h))))))
        expect = model.fc(h.mean(dim=(2, 3))).softmax(1)
    np.testing.assert_allclose(off, expect, atol=1e-5)
    assert not torch.allclose(off, real, atol=1e-4)
    with pytest.raises(KeyError, match="nope"):
        predict_with_gamma(model, images, {"nope": 1.0})

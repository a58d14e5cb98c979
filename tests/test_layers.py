"""ConvAttentionModule, SEBlock and CBAM against independent computations of their formulas."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from reference import conv1x1, reference
from torch import Tensor

from convattn.nn.channel_attention import CBAM, SEBlock
from convattn.nn.self_attention import ConvAttentionModule
from convattn.readout.attention import capture

# (C, C', H, W): C' = C and C' != C (both smaller and larger), and H != W so that a
# LayerNorm over the wrong axis or a transposed reshape cannot pass by accident.
SHAPES = [(8, 8, 5, 7), (8, 2, 5, 7), (6, 10, 4, 3)]


def make_module(c: int, c_prime: int, gamma: float = 0.7) -> ConvAttentionModule:
    m = ConvAttentionModule(c, c_prime)
    with torch.no_grad():
        # Weights large enough that attention is far from uniform: a wrong scale
        # (sqrt(C) for sqrt(C')) or a transposed A then changes the output visibly.
        for conv in (m.conv_q, m.conv_k, m.conv_v):
            conv.weight.normal_(0, 0.8)
            conv.bias.normal_(0, 0.3)
        m.gamma.fill_(gamma)
        m.layer_norm.weight.normal_(1, 0.5)
        m.layer_norm.bias.normal_(0, 0.5)
    return m.eval()


def test_parameter_names_match_the_tutorial_module():
    m = ConvAttentionModule(16, 4)
    assert set(m.state_dict()) == {
        "conv_q.weight", "conv_q.bias", "conv_k.weight", "conv_k.bias",
        "conv_v.weight", "conv_v.bias", "gamma", "layer_norm.weight", "layer_norm.bias",
    }
    assert m.conv_q.weight.shape == (4, 16, 1, 1)
    assert m.conv_k.weight.shape == (4, 16, 1, 1)
    assert m.conv_v.weight.shape == (16, 16, 1, 1)  # V keeps C channels
    assert isinstance(m.gamma, torch.nn.Parameter) and m.gamma.shape == (1,)
    assert m.gamma.item() == 0.0
    assert m.layer_norm.normalized_shape == (16,)


@pytest.mark.parametrize("explicit", [False, True], ids=["fused", "explicit"])
@pytest.mark.parametrize("c,c_prime,h,w", SHAPES)
def test_output_equals_the_formula(c, c_prime, h, w, explicit):
    m = make_module(c, c_prime)
    x = torch.randn(3, c, h, w) * 2
    with torch.no_grad():
        y = m(x, explicit=explicit)
    expected, a, _ = reference(m, x)
    assert y.shape == x.shape
    # Sanity of the reference itself: attention is far from uniform, so the test is sharp.
    assert (a.amax(-1) - a.amin(-1)).mean() > 0.2
    torch.testing.assert_close(y.double(), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("explicit", [False, True], ids=["fused", "explicit"])
@pytest.mark.parametrize("c,c_prime,h,w", SHAPES)
def test_gamma_zero_gives_layer_norm_of_input(c, c_prime, h, w, explicit):
    m = make_module(c, c_prime, gamma=0.0)
    x = torch.randn(2, c, h, w) * 3 + 1
    with torch.no_grad():
        y = m(x, explicit=explicit)
    # LayerNorm over channels at each position, via torch's own layer_norm on (B, H, W, C).
    expected = F.layer_norm(x.permute(0, 2, 3, 1), (c,), m.layer_norm.weight,
                            m.layer_norm.bias, m.layer_norm.eps).permute(0, 3, 1, 2)
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("c,c_prime,h,w", SHAPES)
def test_attention_rows_are_distributions_and_are_the_weights_used(c, c_prime, h, w):
    m = make_module(c, c_prime)
    x = torch.randn(2, c, h, w) * 2
    with torch.no_grad(), capture() as records:
        y = m(x)  # default call: the capture makes the module keep A
    n = h * w
    assert records[id(m)].attention.shape == (2, 1, n, n)  # (B, heads, N, N)
    a = records[id(m)].attention[:, 0]
    assert (a >= 0).all()
    torch.testing.assert_close(a.sum(-1), torch.ones(2, n), atol=1e-6, rtol=0)
    # A is the formula's A ...
    _, a_ref, _ = reference(m, x)
    torch.testing.assert_close(a.double(), a_ref, atol=1e-6, rtol=1e-5)
    # ... and the output the module returned is the one this A produces.
    y_from_a, _, _ = reference(m, x, attention=a)
    torch.testing.assert_close(y.double(), y_from_a, atol=1e-5, rtol=1e-5)
    # A different A would give a different output: the check above has teeth.
    y_other, _, _ = reference(m, x, attention=a.flip(-1))
    assert (y_other - y.double()).abs().max() > 1e-2
    # The record also holds the module's input and the attended values Z = A V.
    assert torch.equal(records[id(m)].x, x)
    v = conv1x1(m.conv_v, x).transpose(1, 2)  # (B, N, C)
    torch.testing.assert_close(records[id(m)].z.double(), a.double() @ v, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("c,c_prime,h,w", SHAPES + [(64, 64, 32, 32), (64, 8, 16, 16)])
def test_fused_equals_explicit_forward_and_backward(c, c_prime, h, w):
    # The regime of a network: default init, post-ReLU input, gamma != 0, and Q/K weights
    # that make attention sharp (scores of a few units). With scores in the hundreds fp32
    # is off by ~1e-4 on either path, explicit included, so that regime proves nothing.
    m = ConvAttentionModule(c, c_prime).train()
    with torch.no_grad():
        m.gamma.fill_(0.7)
        m.conv_q.weight.normal_(0, 0.5)
        m.conv_k.weight.normal_(0, 0.5)
    x = torch.randn(2, c, h, w).relu()
    with torch.no_grad():
        q, k, _ = m.project(x)
        # Sharp, not uniform: a typical row's peak is several times 1/N.
        assert m.attention_weights(q, k).amax(-1).mean() > 3 / (h * w)
    target = torch.randn(2, c, h, w)
    outputs, grads = [], []
    for explicit in (False, True):
        xi = x.clone().requires_grad_(True)
        m.zero_grad()
        y = m(xi, explicit=explicit)
        (y * target).sum().backward()
        outputs.append(y.detach())
        grads.append([xi.grad] + [p.grad.clone() for p in m.parameters()])
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-5, rtol=0)
    names = ["x"] + [n for n, _ in m.named_parameters()]
    for name, g_fused, g_explicit in zip(names, grads[0], grads[1], strict=True):
        assert g_fused.abs().max() > 0, name  # gamma != 0: every parameter gets a gradient
        torch.testing.assert_close(g_fused, g_explicit, atol=1e-4, rtol=1e-4, msg=name)


def test_attention_weights_method_matches_formula():
    m = make_module(8, 3)
    x = torch.randn(2, 8, 4, 5)
    with torch.no_grad():
        q, k, v = m.project(x)
        a = m.attention_weights(q, k)
    # (B, heads, N, C'/h) and (B, heads, N, C/h): one head here.
    assert q.shape == (2, 1, 20, 3) and k.shape == (2, 1, 20, 3) and v.shape == (2, 1, 20, 8)
    _, a_ref, _ = reference(m, x)
    torch.testing.assert_close(a[:, 0].double(), a_ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(m.weights(x), a)


def test_se_block_gates_channels_as_in_the_paper():
    se = SEBlock(32, reduction=8).eval()
    x = torch.randn(2, 32, 6, 5)
    with torch.no_grad():
        y = se(x)
        s = x.mean(dim=(2, 3))  # squeeze: (B, C)
        hidden = torch.relu(s @ se.fc1.weight[:, :, 0, 0].T + se.fc1.bias)  # (B, C/r)
        gate = torch.sigmoid(hidden @ se.fc2.weight[:, :, 0, 0].T + se.fc2.bias)  # (B, C)
    assert se.fc1.out_channels == 4
    assert y.shape == x.shape
    torch.testing.assert_close(y, x * gate[:, :, None, None], atol=1e-6, rtol=1e-5)


def test_cbam_channel_then_spatial_gate():
    cbam = CBAM(32, reduction=8).eval()
    x = torch.randn(2, 32, 6, 5)

    def mlp(s: Tensor) -> Tensor:  # (B, C) -> (B, C), the shared MLP
        w1, b1 = cbam.mlp[0].weight[:, :, 0, 0], cbam.mlp[0].bias
        w2, b2 = cbam.mlp[2].weight[:, :, 0, 0], cbam.mlp[2].bias
        return torch.relu(s @ w1.T + b1) @ w2.T + b2

    with torch.no_grad():
        y = cbam(x)
        channel = torch.sigmoid(mlp(x.mean(dim=(2, 3))) + mlp(x.amax(dim=(2, 3))))
        xc = x * channel[:, :, None, None]
        maps = torch.stack([xc.mean(1), xc.amax(1)], dim=1)  # (B, 2, H, W)
        spatial = torch.sigmoid(F.conv2d(maps, cbam.spatial.weight, cbam.spatial.bias,
                                         padding=3))
    assert y.shape == x.shape
    torch.testing.assert_close(y, xc * spatial, atol=1e-6, rtol=1e-5)

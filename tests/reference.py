"""Independent float64 computations of the method, for tests to compare against."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def conv1x1(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """A 1x1 convolution written as W X + b: (B, C_in, H, W) -> (B, C_out, N), float64."""
    w = conv.weight[:, :, 0, 0].double()  # (C_out, C_in)
    out = torch.einsum("oc,bchw->bohw", w, x.double()) + conv.bias.double()[None, :, None, None]
    return out.flatten(2)


def reference(m: nn.Module, x: Tensor, attention: Tensor | None = None
              ) -> tuple[Tensor, Tensor, Tensor]:
    """A ConvAttentionModule's output, attention and attended values, from the definition.

    Q = W_Q X, K = W_K X (C' rows), V = W_V X (C rows), A = softmax(Q^T K / sqrt(C')),
    Z = A V over positions, Y = LayerNorm_C(gamma Z + X). ``attention`` replaces A.
    Returns Y (B, C, H, W), A (B, N, N) and Z (B, C, N), all float64.
    """
    b, c, h, w = x.shape
    q, k, v = conv1x1(m.conv_q, x), conv1x1(m.conv_k, x), conv1x1(m.conv_v, x)
    c_prime = q.shape[1]
    a = torch.softmax(torch.einsum("bci,bcj->bij", q, k) / math.sqrt(c_prime), dim=-1)
    if attention is not None:
        a = attention.double()
    z = torch.einsum("bij,bcj->bci", a, v)  # (B, C, N): position i sums values over j
    y = m.gamma.double() * z + x.double().flatten(2)  # (B, C, N)
    mu = y.mean(dim=1, keepdim=True)
    var = y.var(dim=1, unbiased=False, keepdim=True)
    y = (y - mu) / torch.sqrt(var + m.layer_norm.eps)
    y = y * m.layer_norm.weight.double()[None, :, None] + m.layer_norm.bias.double()[None, :, None]
    return y.reshape(b, c, h, w), a, z


def reference_heads(m: nn.Module, x: Tensor, heads: int) -> tuple[Tensor, Tensor]:
    """A multi-head ConvAttentionModule from the definition, float64: head t takes
    channels [t C'/h, (t+1) C'/h) of Q and K and [t C/h, (t+1) C/h) of V, with
    A_t = softmax(Q_t^T K_t / sqrt(C'/h)); Z is the heads' A_t V_t stacked over channels.
    Returns Y (B, C, H, W) and A (B, h, N, N)."""
    b, c, h, w = x.shape
    q, k, v = conv1x1(m.conv_q, x), conv1x1(m.conv_k, x), conv1x1(m.conv_v, x)
    dq, dv = q.shape[1] // heads, c // heads
    attn, zs = [], []
    for t in range(heads):
        qt, kt = q[:, t * dq:(t + 1) * dq], k[:, t * dq:(t + 1) * dq]
        a = torch.softmax(torch.einsum("bci,bcj->bij", qt, kt) / math.sqrt(dq), dim=-1)
        attn.append(a)
        zs.append(torch.einsum("bij,bcj->bci", a, v[:, t * dv:(t + 1) * dv]))
    z = torch.cat(zs, dim=1)  # (B, C, N)
    y = m.gamma.double() * z + x.double().flatten(2)
    mu = y.mean(dim=1, keepdim=True)
    var = y.var(dim=1, unbiased=False, keepdim=True)
    y = (y - mu) / torch.sqrt(var + m.layer_norm.eps)
    y = y * m.layer_norm.weight.double()[None, :, None] + m.layer_norm.bias.double()[None, :, None]
    return y.reshape(b, c, h, w), torch.stack(attn, dim=1)

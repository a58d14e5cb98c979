"""Attention layers for convolutional networks.

- ConvAttentionModule: self-attention over all H*W positions of a feature map, with a
  zero-initialised residual gate gamma (Zhang et al. 2019, "Self-Attention Generative
  Adversarial Networks", in the form used by the project's source tutorial).
- SEBlock: squeeze-and-excitation channel gating (Hu et al. 2018, "Squeeze-and-Excitation
  Networks").
- CBAM: channel then spatial attention (Woo et al. 2018, "CBAM: Convolutional Block
  Attention Module").
"""

from __future__ import annotations

import math
from contextvars import ContextVar
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class AttentionRecord:
    """What one ConvAttentionModule saw and did during a captured forward pass."""

    x: Tensor  # (B, C, H, W) the module's input
    attention: Tensor | None  # (B, N, N) rows sum to 1; None when only inputs were captured
    z: Tensor | None  # (B, N, C) the attended values A V


@dataclass
class _Capture:
    records: dict[int, AttentionRecord]  # keyed by id(module)
    with_attention: bool


# A ContextVar rather than forward hooks: each thread (and each Streamlit session) sees
# its own capture, so two callers inspecting one shared model never see each other's
# tensors, and nothing is ever attached to the model.
_capture: ContextVar[_Capture | None] = ContextVar("convattn_capture", default=None)


class ConvAttentionModule(nn.Module):
    """Self-attention over the N = H*W positions of a (B, C, H, W) feature map.

    Q = W_Q X and K = W_K X project to C' = ``out_channels``; V = W_V X keeps C channels
    so that Z = A V can be added back to X. A = softmax(Q K^T / sqrt(C')), and the output
    is LayerNorm(gamma * Z + X), normalised over the C channels at each position.
    gamma starts at 0, so a freshly initialised module is LayerNorm(X) and the network
    learns how much attention to mix in.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.conv_q = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.conv_k = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.conv_v = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.layer_norm = nn.LayerNorm(in_channels)

    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Queries, keys and values as sequences: (B, N, C'), (B, N, C'), (B, N, C).

        Made contiguous because the fused attention kernels need a unit-stride last
        dimension and otherwise fall back to the O(N^2)-memory math kernel (free for
        channels_last inputs, which are already laid out this way).
        """
        q = self.conv_q(x).flatten(2).transpose(1, 2).contiguous()  # (B, N, C')
        k = self.conv_k(x).flatten(2).transpose(1, 2).contiguous()  # (B, N, C')
        v = self.conv_v(x).flatten(2).transpose(1, 2).contiguous()  # (B, N, C)
        return q, k, v

    def attention_weights(self, q: Tensor, k: Tensor) -> Tensor:
        """A = softmax(Q K^T / sqrt(C')), computed in fp32 for inspection."""
        scores = q.float() @ k.float().transpose(1, 2) / math.sqrt(self.out_channels)
        return scores.softmax(dim=-1)  # (B, N, N)

    def forward(self, x: Tensor, explicit: bool = False) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.project(x)
        capture = None if torch.compiler.is_compiling() else _capture.get()
        if explicit or (capture is not None and capture.with_attention):
            attn = self.attention_weights(q, k)  # (B, N, N)
            z = (attn @ v.float()).to(v.dtype)  # (B, N, C)
        else:
            attn = None
            # Fused kernel: never materialises the (B, N, N) matrix. Its default scale is
            # 1/sqrt(q.size(-1)) = 1/sqrt(C').
            z = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        if capture is not None:
            capture.records[id(self)] = AttentionRecord(x=x.detach(), attention=attn, z=z)
        x_seq = x.flatten(2).transpose(1, 2)  # (B, N, C)
        y = self.layer_norm(self.gamma * z + x_seq)  # (B, N, C), normalised over C
        return y.transpose(1, 2).reshape(b, c, h, w)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}"


class SEBlock(nn.Module):
    """Squeeze-and-excitation: rescale channels by a gate computed from their means."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1)
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        s = F.adaptive_avg_pool2d(x, 1)  # (B, C, 1, 1)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class CBAM(nn.Module):
    """Channel attention (shared MLP over avg- and max-pooled descriptors) followed by
    spatial attention (7x7 conv over channel-wise avg and max maps)."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, kernel_size=1),
        )
        self.spatial = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        avg = self.mlp(F.adaptive_avg_pool2d(x, 1))
        mx = self.mlp(F.adaptive_max_pool2d(x, 1))
        x = x * torch.sigmoid(avg + mx)  # channel gate, (B, C, 1, 1)
        maps = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(maps))  # spatial gate, (B, 1, H, W)

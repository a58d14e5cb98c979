"""Convolutional self-attention.

ConvAttentionModule: self-attention over all H*W positions of a feature map, with a
  zero-initialised residual gate gamma (Zhang et al. 2019, "Self-Attention Generative
  Adversarial Networks", in the form used by the project's source tutorial).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convattn.nn.interface import attention_wanted, report


class ConvAttentionModule(nn.Module):
    """Self-attention over the N = H*W positions of a (B, C, H, W) feature map, in
    ``num_heads`` heads.

    Q = W_Q X and K = W_K X project to C' = ``out_channels``; V = W_V X keeps C channels
    so that Z = A V can be added back to X. The heads split Q and K into C'/h channels
    each and V into C/h, as in timm's ``Attention(dim, num_heads)``; head t uses
    A_t = softmax(Q_t K_t^T / sqrt(C'/h)) and Z is the heads' A_t V_t side by side. The
    output is LayerNorm(gamma * Z + X), normalised over the C channels at each position.
    gamma starts at 0, so a freshly initialised module is LayerNorm(X) and the network
    learns how much attention to mix in. With one head this is the tutorial's module.

    Everything outside this class reads attention through its methods (``weights``,
    ``row``, ``queries_keys``, ``values``, ``gate``...), the protocols of
    ``convattn.nn.interface``, so a new variant only has to provide them.
    """

    def __init__(self, in_channels: int, out_channels: int, num_heads: int = 1) -> None:
        super().__init__()
        if num_heads < 1 or out_channels % num_heads or in_channels % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide both in_channels="
                             f"{in_channels} and out_channels={out_channels}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_heads = num_heads
        self.conv_q = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.conv_k = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.conv_v = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.layer_norm = nn.LayerNorm(in_channels)

    # --- what the rest of convattn reads -------------------------------------------

    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Queries, keys and values per head: (B, h, N, C'/h), (B, h, N, C'/h),
        (B, h, N, C/h).

        Made contiguous because the fused attention kernels need a unit-stride last
        dimension and otherwise fall back to the O(N^2)-memory math kernel (free for
        channels_last inputs, which are already laid out this way).
        """
        b, h = x.shape[0], self.num_heads

        def split(t: Tensor) -> Tensor:  # (B, c, H, W) -> (B, h, N, c/h)
            return t.reshape(b, h, t.shape[1] // h, -1).transpose(2, 3).contiguous()

        return split(self.conv_q(x)), split(self.conv_k(x)), split(self.conv_v(x))

    def queries_keys(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Queries and keys (B, h, N, C'/h) for the input x, in fp32, without gradients."""
        with torch.no_grad():
            q, k, _ = self.project(x)
        return q.float(), k.float()

    def values(self, x: Tensor) -> Tensor:
        """Values (B, h, N, C/h) for the input x, in fp32, without gradients."""
        with torch.no_grad():
            v = self.conv_v(x)
            b, h = x.shape[0], self.num_heads
            v = v.reshape(b, h, v.shape[1] // h, -1).transpose(2, 3)
        return v.float()

    def attention_weights(self, q: Tensor, k: Tensor) -> Tensor:
        """softmax(Q K^T / sqrt(C'/h)) in fp32: (..., N, d) queries and keys -> (..., N, N)."""
        return attention_matrix(q, k)

    def weights(self, x: Tensor) -> Tensor:
        """Every head's attention matrix on input x: (B, h, N, N), rows summing to 1."""
        q, k = self.queries_keys(x)
        return self.attention_weights(q, k)

    def row(self, x: Tensor, query: int) -> Tensor:
        """One query position's attention row in every head, (B, h, N), in O(N C')."""
        q, k = self.queries_keys(x)
        return attention_row(q, k, query)

    def heads(self) -> int:
        return self.num_heads

    def key_grid(self, x: Tensor) -> tuple[int, int]:
        """Every position is a key: the key grid is the input's (H, W)."""
        return x.shape[-2], x.shape[-1]

    def gate(self) -> float:
        """gamma: how much of what attention gathers is mixed into the features."""
        return float(self.gamma.detach())

    def norm(self, residual: Tensor) -> Tensor:
        """The module's LayerNorm over channels, for residuals (..., C) in any dtype."""
        ln = self.layer_norm
        return F.layer_norm(residual, ln.normalized_shape, ln.weight.to(residual.dtype),
                            ln.bias.to(residual.dtype), ln.eps)

    def norm_eps(self) -> float:
        return float(self.layer_norm.eps)

    # --- changes, made only on private copies (see convattn.ablation) ---------------

    def set_gate_(self, value: float) -> None:
        """Set gamma in place; gamma = 0 switches attention off (output LayerNorm(X))."""
        with torch.no_grad():
            self.gamma.fill_(float(value))

    def make_uniform_(self) -> None:
        """Zero the query and key projections in place: every score is 0 and every query
        attends to all N positions with weight 1/N."""
        with torch.no_grad():
            for conv in (self.conv_q, self.conv_k):
                conv.weight.zero_()
                conv.bias.zero_()

    # --------------------------------------------------------------------------------

    def forward(self, x: Tensor, explicit: bool = False) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.project(x)  # (B, h, N, d), (B, h, N, d), (B, h, N, C/h)
        if explicit or attention_wanted():
            attn = self.attention_weights(q, k)  # (B, h, N, N), fp32 for inspection
            z = (attn @ v.float()).to(v.dtype)  # (B, h, N, C/h)
        else:
            attn = None
            # Fused kernel: never materialises the (B, h, N, N) matrices. Its default
            # scale is 1/sqrt(q.size(-1)) = 1/sqrt(C'/h).
            z = F.scaled_dot_product_attention(q, k, v)
        z = z.transpose(1, 2).reshape(b, h * w, c)  # (B, N, C), heads side by side
        report(self, x, attention=attn, z=z)
        x_seq = x.flatten(2).transpose(1, 2)  # (B, N, C)
        y = self.layer_norm(self.gamma * z + x_seq)  # (B, N, C), normalised over C
        return y.transpose(1, 2).reshape(b, c, h, w)

    def extra_repr(self) -> str:
        heads = f", num_heads={self.num_heads}" if self.num_heads > 1 else ""
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}{heads}"


def attention_matrix(q: Tensor, k: Tensor) -> Tensor:
    """softmax(Q K^T / sqrt(d)) in fp32 from (..., N, d) queries and keys: (..., N, N)."""
    scores = q.float() @ k.float().transpose(-1, -2) / math.sqrt(q.shape[-1])
    return scores.softmax(dim=-1)


def attention_row(q: Tensor, k: Tensor, query: int) -> Tensor:
    """Attention row of one query position: softmax(q_i . K / sqrt(d)).

    ``q`` and ``k`` are (..., N, d), e.g. (B, N, C') or (B, h, N, C'/h); returns (..., N).
    Costs O(N d) instead of the O(N^2 d) of forming every row.
    """
    scores = k @ q[..., query, :, None] / math.sqrt(q.shape[-1])  # (..., N, 1)
    return scores[..., 0].softmax(dim=-1)



"""A small SAGAN-style classifier for 32x32 CIFAR-10 images, written as such networks are
written outside convattn: a ``Self_Attn`` block in the form of the SAGAN reference code
(query_conv / key_conv / value_conv, a learned ``gamma``, ``bmm`` and a softmax), and a
``build`` factory that ``card.toml`` names.
"""

import torch
from torch import nn


class Self_Attn(nn.Module):
    """Self-attention over the positions of a feature map (Zhang et al., SAGAN)."""

    def __init__(self, in_dim):
        super().__init__()
        self.chanel_in = in_dim
        self.query_conv = nn.Conv2d(in_dim, in_dim // 8, kernel_size=1)
        self.key_conv = nn.Conv2d(in_dim, in_dim // 8, kernel_size=1)
        self.value_conv = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x):
        m_batchsize, C, width, height = x.size()
        proj_query = self.query_conv(x).view(m_batchsize, -1, width * height).permute(0, 2, 1)
        proj_key = self.key_conv(x).view(m_batchsize, -1, width * height)
        energy = torch.bmm(proj_query, proj_key)  # (B, N, N)
        attention = self.softmax(energy)
        proj_value = self.value_conv(x).view(m_batchsize, -1, width * height)
        out = torch.bmm(proj_value, attention.permute(0, 2, 1))
        out = out.view(m_batchsize, C, width, height)
        out = self.gamma * out + x
        return out, attention


def block(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SAGANClassifier(nn.Module):
    def __init__(self, num_classes=10, width=32):
        super().__init__()
        self.stem = nn.Sequential(block(3, width), nn.MaxPool2d(2))        # 16x16
        self.mid = nn.Sequential(block(width, 2 * width), nn.MaxPool2d(2))  # 8x8
        self.attn = Self_Attn(2 * width)
        self.head = nn.Sequential(block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(1),
                                  nn.Flatten(), nn.Linear(4 * width, num_classes))

    def forward(self, x):
        x = self.mid(self.stem(x))
        x, _ = self.attn(x)
        return self.head(x)


def build(num_classes=10):
    return SAGANClassifier(num_classes)

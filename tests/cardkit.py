"""What the card tests share: a tiny SAGAN-style network written as people write it outside
convattn (a module file beside its card), random weights saved with ``torch.save``, its
model card, and folders of PNG images made with PIL at any size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

CLASSES = ("ant", "bee", "cow", "dog", "elk")

NET = '''
import torch
from torch import nn


class Self_Attn(nn.Module):
    """SAGAN's block as its reference code writes it."""

    def __init__(self, in_dim):
        super().__init__()
        self.query_conv = nn.Conv2d(in_dim, in_dim // 8, kernel_size=1)
        self.key_conv = nn.Conv2d(in_dim, in_dim // 8, kernel_size=1)
        self.value_conv = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x):
        b, c, h, w = x.size()
        q = self.query_conv(x).view(b, -1, h * w).permute(0, 2, 1)
        k = self.key_conv(x).view(b, -1, h * w)
        attention = self.softmax(torch.bmm(q, k))
        v = self.value_conv(x).view(b, -1, h * w)
        out = torch.bmm(v, attention.permute(0, 2, 1)).view(b, c, h, w)
        return self.gamma * out + x, attention


class Net(nn.Module):
    def __init__(self, channels=3, num_classes=5):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(),
                                  nn.MaxPool2d(4))
        self.attn = Self_Attn(16)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(16, num_classes))

    def forward(self, x):
        x, _ = self.attn(self.stem(x))
        return self.head(x)


def build(channels=3, num_classes=5):
    return Net(channels, num_classes)
'''


def write_card(folder: Path, classes=CLASSES, size: int | tuple[int, int] = 64,
               grey: bool = False, seed: int = 0) -> Path:
    """A model card for the network above, with random weights (gamma 0.5, so attention
    changes the answers); returns the card's path."""
    import importlib.util

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "net.py").write_text(NET)
    spec = importlib.util.spec_from_file_location(f"cardkit_net_{seed}", folder / "net.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(seed)
    channels = 1 if grey else 3
    model = module.build(channels, len(classes))
    with torch.no_grad():
        model.attn.gamma.fill_(0.5)
    torch.save(model.state_dict(), folder / "net.pt")
    mean = [0.5] if grey else [0.5, 0.5, 0.5]
    std = [0.25] if grey else [0.25, 0.25, 0.25]
    side = list(size) if isinstance(size, tuple) else size
    names = ", ".join(f'"{c}"' for c in classes)
    card = folder / "card.toml"
    card.write_text(f'factory = "net.py:build"\nweights = "net.pt"\nclasses = [{names}]\n'
                    f"image_size = {side}\nmean = {mean}\nstd = {std}\n"
                    f"kwargs = {{ channels = {channels}, num_classes = {len(classes)} }}\n")
    return card


def write_folder(root: Path, classes=CLASSES, size: tuple[int, int] = (64, 64),
                 per_class: int = 2, split: str | None = "test", seed: int = 0) -> Path:
    """PNG images of ``size`` (H, W), ``per_class`` per class folder, under
    ``root/split/<class>`` (or ``root/<class>`` when ``split`` is None)."""
    rng = np.random.default_rng(seed)
    for c, cls in enumerate(classes):
        folder = root / split / cls if split else root / cls
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            base = np.zeros(3)
            base[c % 3] = 120
            pixels = np.clip(rng.normal(base + 60, 50, size=(*size, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i:04d}.png")
    return root

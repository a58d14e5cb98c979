"""Named CIFAR-10 networks. Every network takes (B, 3, 32, 32) normalised images.

``create_model(name)`` builds one from the registry; checkpoints store the name and the
keyword arguments so a model is always rebuilt, never guessed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from convattn.nn.channel_attention import CBAM, SEBlock
from convattn.nn.self_attention import ConvAttentionModule
from convattn.registry import Registry

# What can fill the attention slot of ConvAttentionNet: (channels, C', heads) -> module.
SLOTS: dict[str, Callable[[int, int, int], nn.Module]] = {
    "conv": ConvAttentionModule,
    "none": lambda channels, qk, heads: nn.Identity(),
    "se": lambda channels, qk, heads: SEBlock(channels),
    "cbam": lambda channels, qk, heads: CBAM(channels),
}
ATTENTION_SLOTS = tuple(SLOTS)


def _slot(kind: str, channels: int, qk_channels: int, num_heads: int) -> nn.Module:
    if kind not in SLOTS:
        raise ValueError(f"unknown attention kind {kind!r}; expected one of {ATTENTION_SLOTS}")
    return SLOTS[kind](channels, qk_channels, num_heads)


class ConvAttentionNet(nn.Module):
    """The source tutorial's network: conv-BN-ReLU (64 ch, 32x32), an attention slot,
    two stride-2 conv-BN-ReLU stages (128, 256 ch), global average pool, linear.

    ``attention`` picks what fills the slot: the convolutional self-attention module
    ("conv", the tutorial's choice, in ``num_heads`` heads), nothing ("none", the
    control), SE or CBAM.
    """

    def __init__(self, num_classes: int = 10, attention: str = "conv", qk_channels: int = 64,
                 num_heads: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1)
        self.bn1 = nn.BatchNorm2d(64)
        self.attention = _slot(attention, 64, qk_channels, num_heads)
        self.conv2 = nn.Conv2d(64, 128, 3, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(128)
        self.conv3 = nn.Conv2d(128, 256, 3, stride=2, padding=1)
        self.bn3 = nn.BatchNorm2d(256)
        self.fc = nn.Linear(256, num_classes)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # (B, 64, 32, 32)
        x = self.attention(x)
        x = self.relu(self.bn2(self.conv2(x)))  # (B, 128, 16, 16)
        x = self.relu(self.bn3(self.conv3(x)))  # (B, 256, 8, 8)
        return self.fc(x.mean(dim=(2, 3)))


def _conv_bn(c_in: int, c_out: int, pool: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    layers += [nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_bn(channels, channels), _conv_bn(channels, channels))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResNet9(nn.Module):
    """A ResNet-9 (Page 2018, the DAWNBench CIFAR-10 network) with optional
    ConvAttentionModule blocks after the 16x16 and 8x8 stages.

    Attention at 16x16 (N = 256) and 8x8 (N = 64) is cheap next to the convolutions; the
    query/key width is C/8 as in SAGAN.
    """

    def __init__(self, num_classes: int = 10, attention: bool = True, width: int = 64,
                 num_heads: int = 1):
        super().__init__()
        w1, w2, w3 = 2 * width, 4 * width, 8 * width

        def attn(c: int) -> nn.Module:
            return ConvAttentionModule(c, c // 8, num_heads) if attention else nn.Identity()

        self.prep = _conv_bn(3, width)
        self.layer1 = nn.Sequential(_conv_bn(width, w1, pool=True), Residual(w1))
        self.attn1 = attn(w1)
        self.layer2 = _conv_bn(w1, w2, pool=True)
        self.attn2 = attn(w2)
        self.layer3 = nn.Sequential(_conv_bn(w2, w3, pool=True), Residual(w3))
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(w3, num_classes, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.prep(x)  # (B, w, 32, 32)
        x = self.attn1(self.layer1(x))  # (B, 2w, 16, 16)
        x = self.attn2(self.layer2(x))  # (B, 4w, 8, 8)
        x = self.layer3(x)  # (B, 8w, 4, 4)
        # Scaling the logits down keeps early training stable without a warm-up of BN.
        return self.fc(self.pool(x).flatten(1)) * 0.125


@dataclass(frozen=True)
class ModelSpec:
    """One named network. ``control`` is the same network without attention, the one an
    attention network is measured against; ``baselines`` are the other networks it is
    compared with (other attention mechanisms, fewer heads)."""

    name: str
    description: str
    build: Callable[..., nn.Module]
    control: str | None = None
    baselines: tuple[str, ...] = ()


REGISTRY: Registry[ModelSpec] = Registry("model", [
        ModelSpec("seed",
                  "A small 3-layer CNN where, after the first layer, every pixel attends to "
                  "every other (self-attention over 32x32 positions; the tutorial's network)",
                  lambda **kw: ConvAttentionNet(attention="conv", **kw),
                  control="seed-noattn", baselines=("seed-se", "seed-cbam")),
        ModelSpec("seed-mh4",
                  "The tutorial's small CNN with 4-head self-attention: four independent "
                  "attention patterns over 32x32 positions, each on a quarter of the channels",
                  lambda **kw: ConvAttentionNet(attention="conv", **{"num_heads": 4, **kw}),
                  control="seed-noattn", baselines=("seed",)),
        ModelSpec("seed-noattn",
                  "The same small CNN with no attention layer (the control for seed)",
                  lambda **kw: ConvAttentionNet(attention="none", **kw)),
        ModelSpec("seed-se",
                  "The same small CNN with squeeze-and-excitation, which re-weights "
                  "channels, in place of self-attention",
                  lambda **kw: ConvAttentionNet(attention="se", **kw)),
        ModelSpec("seed-cbam",
                  "The same small CNN with CBAM, which re-weights channels and then "
                  "positions, in place of self-attention",
                  lambda **kw: ConvAttentionNet(attention="cbam", **kw)),
        ModelSpec("resnet9-attn",
                  "A ResNet-9 (a strong CIFAR-10 network) with self-attention over 16x16 "
                  "and 8x8 positions",
                  lambda **kw: ResNet9(attention=True, **kw), control="resnet9"),
        ModelSpec("resnet9",
                  "The same ResNet-9 without attention (the control for resnet9-attn)",
                  lambda **kw: ResNet9(attention=False, **kw)),
])


def list_models() -> list[str]:
    """Names accepted by ``create_model``."""
    return REGISTRY.names()


def describe_model(name: str) -> str:
    return _spec(name).description


def comparisons() -> list[tuple[str, str]]:
    """(attention network, network it is compared with) pairs, control first."""
    return [(s.name, other) for s in REGISTRY
            for other in (s.control, *s.baselines) if other]


def twin(name: str) -> str | None:
    """The network ``name`` is best seen beside: an attention network's control, or the
    attention network that a control is the control of."""
    spec = _spec(name)
    if spec.control:
        return spec.control
    return next((s.name for s in REGISTRY if s.control == name), None)


def _spec(name: str) -> ModelSpec:
    return REGISTRY.get(name)


def create_model(name: str, num_classes: int = 10, **config: object) -> nn.Module:
    """Build a registered network with freshly initialised weights."""
    return _spec(name).build(num_classes=num_classes, **config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

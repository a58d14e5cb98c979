"""The model registry: every name builds and runs, and each network is what it says."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convattn.nn.channel_attention import CBAM, SEBlock
from convattn.nn.models import ConvAttentionNet, ResNet9, create_model, list_models
from convattn.nn.self_attention import ConvAttentionModule
from convattn.registry import UnknownName

REQUIRED = ["seed", "seed-noattn", "seed-se", "seed-cbam", "resnet9-attn", "resnet9"]


def kinds(model: nn.Module) -> list[type]:
    return [type(m) for m in model.modules()
            if isinstance(m, (ConvAttentionModule, SEBlock, CBAM))]


def test_registry_lists_the_required_models():
    assert set(REQUIRED) <= set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_forward_pass_of_every_registered_model(name):
    model = create_model(name).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()
    # Different images give different logits: the input reaches the output.
    assert not torch.allclose(logits[0], logits[1])


@pytest.mark.parametrize("name", ["seed", "resnet9-attn"])
def test_num_classes(name):
    with torch.no_grad():
        assert create_model(name, num_classes=3).eval()(torch.randn(1, 3, 32, 32)).shape == (1, 3)


def test_unknown_model_raises_one_sentence_naming_the_known_ones():
    with pytest.raises(UnknownName) as err:
        create_model("nope")
    message = str(err.value)
    assert "nope" in message
    for name in REQUIRED:  # the message says what would have worked
        assert name in message


def test_seed_is_the_tutorial_network():
    model = create_model("seed")
    assert isinstance(model, ConvAttentionNet)
    assert isinstance(model.attention, ConvAttentionModule)
    assert (model.attention.in_channels, model.attention.out_channels) == (64, 64)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    shapes = [(m.in_channels, m.out_channels, m.kernel_size, m.stride) for m in
              (model.conv1, model.conv2, model.conv3)]
    assert shapes == [(3, 64, (3, 3), (1, 1)), (64, 128, (3, 3), (2, 2)),
                      (128, 256, (3, 3), (2, 2))]
    assert model.fc.in_features == 256
    assert len(convs) == 6  # 3 convolutions + the module's conv_q, conv_k, conv_v


def test_attention_slot_variants():
    assert kinds(create_model("seed")) == [ConvAttentionModule]
    assert kinds(create_model("seed-noattn")) == []
    assert isinstance(create_model("seed-noattn").attention, nn.Identity)
    assert kinds(create_model("seed-se")) == [SEBlock]
    assert kinds(create_model("seed-cbam")) == [CBAM]


def test_seed_variants_share_everything_but_the_slot():
    seed = create_model("seed").state_dict()
    for name in ("seed-noattn", "seed-se", "seed-cbam"):
        other = create_model(name).state_dict()
        outside = {k: v.shape for k, v in other.items() if not k.startswith("attention.")}
        assert outside == {k: v.shape for k, v in seed.items() if not k.startswith("attention.")}


def test_resnet9_twins():
    with_attn, without = create_model("resnet9-attn"), create_model("resnet9")
    assert isinstance(with_attn, ResNet9) and isinstance(without, ResNet9)
    modules = {n: (m.in_channels, m.out_channels) for n, m in with_attn.named_modules()
               if isinstance(m, ConvAttentionModule)}
    assert modules == {"attn1": (128, 16), "attn2": (256, 32)}
    assert kinds(without) == []
    a = {k: v.shape for k, v in with_attn.state_dict().items() if not k.startswith("attn")}
    assert a == {k: v.shape for k, v in without.state_dict().items()}


def test_every_registry_answers_an_unknown_name_with_the_same_error():
    """One lookup and one error type for networks, attribution methods, ablations and
    out-of-distribution scores."""
    from convattn.explain import ablation, attribution
    from convattn.nn import models
    from convattn.trust import ood

    for registry in (models.REGISTRY, attribution.REGISTRY, ablation.REGISTRY, ood.REGISTRY):
        names = registry.names()
        assert len(set(names)) == len(names) == len(registry) and names
        assert [e.name for e in registry] == names
        assert registry.get(names[0]).name == names[0]
        with pytest.raises(UnknownName) as err:
            registry.get("nope")
        assert str(err.value) == (f"Unknown {registry.kind} 'nope'; expected one of "
                                  f"{', '.join(names)}.")

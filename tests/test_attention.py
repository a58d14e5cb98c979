"""Reading attention out of a model: the right matrices, nothing left behind, thread-safe."""

from __future__ import annotations

import threading

import pytest
import torch
import torch.nn.functional as F
from concurrency import run_together
from reference import conv1x1, reference
from torch import Tensor, nn

from convattn.nn import interface
from convattn.nn import self_attention as layers
from convattn.nn.models import create_model
from convattn.nn.self_attention import attention_row
from convattn.readout.attention import (
    attention_maps,
    attention_modules,
    gamma_values,
    module_inputs,
    query_row,
    residual_ratios,
    run_with_records,
)


def sharpen(model: nn.Module, gammas: dict[str, float], factor: float) -> nn.Module:
    """Non-zero gammas and Q/K weights that make attention far from uniform, so that a
    wrong matrix, a wrong row or a mixed-up input shows in the numbers."""
    with torch.no_grad():
        for name, m in attention_modules(model).items():
            m.gamma.fill_(gammas[name])
            m.conv_q.weight.mul_(factor)
            m.conv_k.weight.mul_(factor)
    return model.eval()


@pytest.fixture(scope="module")
def seed_model() -> nn.Module:
    torch.manual_seed(0)
    return sharpen(create_model("seed"), {"attention": 0.8}, factor=4)


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return sharpen(create_model("resnet9-attn", width=16), {"attn1": 0.5, "attn2": -0.3},
                   factor=8)


def seed_features(model: nn.Module, images: Tensor) -> Tensor:
    """The input of the seed network's attention module, computed layer by layer."""
    return torch.relu(model.bn1(model.conv1(images)))  # (B, 64, 32, 32)


def seed_head(model: nn.Module, y: Tensor) -> Tensor:
    """The seed network after its attention module."""
    y = torch.relu(model.bn2(model.conv2(y)))
    y = torch.relu(model.bn3(model.conv3(y)))
    return model.fc(y.mean(dim=(2, 3)))


def resnet_inputs(model: nn.Module, images: Tensor) -> dict[str, Tensor]:
    """The inputs of ResNet9's two attention modules, computed layer by layer."""
    x1 = model.layer1(model.prep(images))  # (B, 32, 16, 16)
    x2 = model.layer2(model.attn1(x1))  # (B, 64, 8, 8)
    return {"attn1": x1, "attn2": x2}


def hook_state(model: nn.Module) -> list[tuple[str, str, int]]:
    """Every non-empty hook registry on the model's modules and in torch's globals."""
    found = [(name, attr, len(value)) for name, m in model.named_modules()
             for attr, value in vars(m).items()
             if "hook" in attr and isinstance(value, dict) and len(value)]
    found += [("<global>", attr, len(value))
              for attr, value in vars(torch.nn.modules.module).items()
              if "hook" in attr and isinstance(value, dict) and len(value)]
    return found


def test_maps_of_the_seed_model_are_the_formulas_and_produce_its_logits(seed_model):
    images = torch.randn(2, 3, 32, 32)
    maps = attention_maps(seed_model, images)
    assert list(maps) == ["attention"]
    a = maps["attention"]
    assert a.shape == (2, 1024, 1024) and a.dtype == torch.float32
    assert (a >= 0).all()
    torch.testing.assert_close(a.sum(-1), torch.ones(2, 1024), atol=1e-5, rtol=0)
    assert a.amax(-1).mean() > 5 / 1024  # a sharp map (peaks > 5x uniform): checks bite

    with torch.no_grad():
        x = seed_features(seed_model, images)
        _, a_ref, _ = reference(seed_model.attention, x)
        torch.testing.assert_close(a.double(), a_ref, atol=1e-5, rtol=1e-4)
        # The model's real logits are those that this very A produces.
        y, _, _ = reference(seed_model.attention, x, attention=a)
        logits_from_a = seed_head(seed_model, y.float())
        logits = seed_model(images)  # plain (fused) forward
    torch.testing.assert_close(logits_from_a, logits, atol=1e-4, rtol=1e-4)


def test_maps_of_resnet_match_reference_per_module(resnet):
    images = torch.randn(3, 3, 32, 32)
    maps = attention_maps(resnet, images)
    assert list(maps) == list(attention_modules(resnet)) == ["attn1", "attn2"]
    assert maps["attn1"].shape == (3, 256, 256)
    assert maps["attn2"].shape == (3, 64, 64)
    with torch.no_grad():
        inputs = resnet_inputs(resnet, images)
    for name, a in maps.items():
        _, a_ref, _ = reference(getattr(resnet, name), inputs[name])
        torch.testing.assert_close(a.double(), a_ref, atol=1e-5, rtol=1e-4, msg=name)
        torch.testing.assert_close(a.sum(-1), torch.ones(a.shape[:2]), atol=1e-5, rtol=0)


def test_captured_forward_gives_the_same_logits_as_a_plain_one(resnet):
    images = torch.randn(2, 3, 32, 32)
    logits, records = run_with_records(resnet, images, with_attention=True)
    with torch.no_grad():
        plain = resnet(images)
    torch.testing.assert_close(logits, plain, atol=1e-5, rtol=1e-5)
    assert set(records) == {"attn1", "attn2"}
    assert records["attn2"].attention.shape == (2, 1, 64, 64)


def test_models_without_conv_attention_have_no_maps():
    for name in ("seed-noattn", "seed-se", "resnet9"):
        model = create_model(name).eval()
        assert attention_maps(model, torch.randn(1, 3, 32, 32)) == {}


def snapshot(model: nn.Module) -> tuple[dict[str, Tensor], dict[str, bool], bool]:
    return ({k: v.clone() for k, v in model.state_dict().items()},
            {n: p.requires_grad for n, p in model.named_parameters()}, model.training)


def assert_unchanged(model: nn.Module, before: tuple) -> None:
    state, grads, training = before
    assert model.training is training
    assert {n: p.requires_grad for n, p in model.named_parameters()} == grads
    after = model.state_dict()
    assert list(after) == list(state)
    for k, v in state.items():
        assert torch.equal(after[k], v), k


def test_inspection_leaves_the_model_untouched():
    model = create_model("resnet9-attn", width=16).eval()
    before = snapshot(model)
    assert hook_state(model) == []
    images = torch.randn(2, 3, 32, 32)
    attention_maps(model, images)
    query_row(model, images, "attn1", 5)
    residual_ratios(model, images)
    module_inputs(model, images)
    gamma_values(model)
    assert hook_state(model) == []
    assert not interface.attention_wanted()  # the capture is closed again
    assert_unchanged(model, before)


def test_a_model_in_training_mode_is_refused_not_mutated():
    # In training mode BatchNorm would update its running stats on every inspection.
    model = create_model("resnet9-attn", width=16).train()
    before = snapshot(model)
    images = torch.randn(2, 3, 32, 32)
    for inspect in (lambda: attention_maps(model, images),
                    lambda: query_row(model, images, "attn1", 5),
                    lambda: residual_ratios(model, images),
                    lambda: module_inputs(model, images)):
        with pytest.raises(ValueError, match="eval"):
            inspect()
    assert_unchanged(model, before)
    assert hook_state(model) == []


def test_capture_is_closed_even_when_the_forward_fails(resnet):
    with pytest.raises(RuntimeError):
        attention_maps(resnet, torch.randn(1, 5, 32, 32))  # wrong channel count
    assert not interface.attention_wanted()
    assert hook_state(resnet) == []


def test_two_threads_on_one_shared_model(resnet):
    inputs = [torch.randn(2, 3, 32, 32), torch.rand(2, 3, 32, 32) * 4 - 2]
    expected = [attention_maps(resnet, x) for x in inputs]
    rows = [query_row(resnet, x, "attn2", 10) for x in inputs]
    ratios = [residual_ratios(resnet, x) for x in inputs]
    # The two inputs' maps differ by far more than the tolerance: a mix-up would show.
    for name in ("attn1", "attn2"):
        assert (expected[0][name] - expected[1][name]).abs().max() > 1e-2

    errors: list[str] = []
    start = threading.Barrier(2)

    def worker(i: int) -> None:
        start.wait()
        for step in range(25):
            got = attention_maps(resnet, inputs[i])
            if list(got) != ["attn1", "attn2"]:
                errors.append(f"thread {i} step {step}: keys {list(got)}")
            for name, a in got.items():
                if not torch.allclose(a, expected[i][name], atol=1e-6, rtol=1e-5):
                    errors.append(f"thread {i} step {step}: {name} differs")
            if not torch.allclose(query_row(resnet, inputs[i], "attn2", 10), rows[i],
                                  atol=1e-6, rtol=1e-5):
                errors.append(f"thread {i} step {step}: query_row differs")
            got_ratios = residual_ratios(resnet, inputs[i])
            if any(not torch.allclose(got_ratios[n], ratios[i][n], rtol=1e-5) for n in got_ratios):
                errors.append(f"thread {i} step {step}: residual_ratios differ")

    run_together(lambda: worker(0), lambda: worker(1))
    assert errors == []
    assert hook_state(resnet) == []


@pytest.mark.parametrize("name,queries", [("attn1", [0, 17, 255]), ("attn2", [0, 33, 63])])
def test_one_query_row_equals_the_row_of_the_full_map(resnet, name, queries):
    images = torch.randn(2, 3, 32, 32)
    full = attention_maps(resnet, images)[name]
    for query in queries:
        row = query_row(resnet, images, name, query)
        assert row.shape == (2, full.shape[-1])
        torch.testing.assert_close(row, full[:, query], atol=1e-6, rtol=1e-5)
    # attention_row works from the module's queries and keys directly.
    module = attention_modules(resnet)[name]
    x = module_inputs(resnet, images)[name]
    q, k = module.queries_keys(x)
    assert q.dtype == torch.float32 and q.shape[-1] == module.out_channels
    assert q.shape[:2] == (2, 1)  # (B, heads, N, C'/h)
    torch.testing.assert_close(attention_row(q, k, queries[1])[:, 0], full[:, queries[1]],
                               atol=1e-6, rtol=1e-5)


def test_query_row_of_the_seed_model(seed_model):
    images = torch.randn(1, 3, 32, 32)
    full = attention_maps(seed_model, images)["attention"]
    for query in (0, 31, 32 * 16 + 5, 1023):  # corners and the middle, row-major over H x W
        torch.testing.assert_close(query_row(seed_model, images, "attention", query),
                                   full[:, query], atol=1e-6, rtol=1e-5)


def test_module_inputs_are_the_feature_maps_the_modules_see(resnet, seed_model):
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = resnet_inputs(resnet, images)
        seed_x = seed_features(seed_model, images)
    got = module_inputs(resnet, images)
    for name in ("attn1", "attn2"):
        torch.testing.assert_close(got[name], expected[name], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(module_inputs(seed_model, images)["attention"], seed_x)


def test_residual_ratios_match_a_reference(resnet, seed_model):
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        inputs = {("resnet", n): x for n, x in resnet_inputs(resnet, images).items()}
        inputs[("seed", "attention")] = seed_features(seed_model, images)
    got = {("resnet", n): r for n, r in residual_ratios(resnet, images).items()}
    got |= {("seed", n): r for n, r in residual_ratios(seed_model, images).items()}
    assert set(got) == set(inputs)
    models = {"resnet": resnet, "seed": seed_model}
    for (model_name, name), x in inputs.items():
        module = getattr(models[model_name], name)
        _, _, z = reference(module, x)  # (B, C, N)
        gz = module.gamma.double() * z
        expected = gz.flatten(1).norm(dim=1) / x.double().flatten(1).norm(dim=1)
        assert got[(model_name, name)].shape == (3,)
        assert (expected > 1e-3).all()  # non-trivial: gamma != 0
        torch.testing.assert_close(got[(model_name, name)].double(), expected,
                                   atol=1e-6, rtol=1e-4)


def test_residual_ratio_is_zero_when_gamma_is_zero():
    model = create_model("seed").eval()
    ratios = residual_ratios(model, torch.randn(2, 3, 32, 32))
    assert torch.equal(ratios["attention"], torch.zeros(2))


def test_gamma_values(resnet, seed_model):
    assert gamma_values(resnet) == pytest.approx({"attn1": 0.5, "attn2": -0.3})
    assert gamma_values(seed_model) == pytest.approx({"attention": 0.8})
    assert gamma_values(create_model("seed-se")) == {}
    fresh = gamma_values(create_model("resnet9-attn", width=16))
    assert fresh == {"attn1": 0.0, "attn2": 0.0}


def test_values_used_by_the_module_are_its_own_v(resnet):
    """The record's Z is A V with the module's own value projection."""
    images = torch.randn(2, 3, 32, 32)
    _, records = run_with_records(resnet, images, with_attention=True)
    for name, rec in records.items():
        v = conv1x1(getattr(resnet, name).conv_v, rec.x)  # (B, C, N)
        expected = torch.einsum("bij,bcj->bic", rec.attention[:, 0].double(), v)  # (B, N, C)
        torch.testing.assert_close(rec.z.double(), expected, atol=1e-5, rtol=1e-5)


def test_layer_norm_reference_is_over_channels():
    """Guard the guard: the reference's LayerNorm is torch's LayerNorm over channels."""
    m = layers.ConvAttentionModule(6, 3)
    x = torch.randn(2, 6, 3, 5)
    y, _, _ = reference(m, x)  # gamma = 0
    expected = F.layer_norm(x.permute(0, 2, 3, 1), (6,), m.layer_norm.weight,
                            m.layer_norm.bias).permute(0, 3, 1, 2)
    torch.testing.assert_close(y.float(), expected, atol=1e-6, rtol=1e-6)

"""Captum attributions: right values, and a shared model left exactly as it was, even when
two threads use it at once."""

from __future__ import annotations

import copy
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from concurrency import run_together
from torch import nn

from convattn.explain.attribution import (
    EXPLAIN,
    METHODS,
    REGISTRY,
    AttributionConfig,
    attribute,
    get_method,
    hookable_copy,
    to_map,
)
from convattn.nn.models import create_model, list_models
from convattn.readout import analysis
from convattn.readout.attention import attention_modules, query_row

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _model(name: str, seed: int = 0) -> nn.Module:
    """A registry model with non-trivial BatchNorm statistics and gamma, in eval mode."""
    torch.manual_seed(seed)
    model = create_model(name)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
        for m in attention_modules(model).values():
            m.gamma.fill_(0.7)
    return model.eval()


def _snapshot(model: nn.Module) -> dict:
    """Everything a caller could change on a model."""
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [p.grad for p in model.parameters()],
        "training": [m.training for m in model.modules()],
        "inplace": [getattr(m, "inplace", None) for m in model.modules()],
        "hooks": [len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
                  + len(getattr(m, "_backward_pre_hooks", {})) for m in model.modules()],
        "modules": [id(m) for m in model.modules()],
    }


def _assert_unchanged(model: nn.Module, before: dict) -> None:
    after = _snapshot(model)
    assert after["state"].keys() == before["state"].keys()
    assert all(torch.equal(after["state"][k], before["state"][k]) for k in before["state"])
    for key in ("requires_grad", "training", "inplace", "hooks", "modules"):
        assert after[key] == before[key], key
    assert all(g is None for g in after["grads"])


@pytest.mark.parametrize("name", list_models())
def test_hookable_copy_computes_the_same_with_one_fresh_relu_per_call(name):
    model = _model(name)
    before = _snapshot(model)
    private = hookable_copy(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(private(x), model(x), rtol=1e-5, atol=1e-5)
    calls: dict[str, int] = {}
    relus = {n: m for n, m in private.named_modules() if isinstance(m, nn.ReLU)}
    handles = [m.register_forward_hook(lambda m, i, o, n=n: calls.__setitem__(
        n, calls.get(n, 0) + 1)) for n, m in relus.items()]
    with torch.no_grad():
        private(x)
    for h in handles:
        h.remove()
    assert relus and all(not m.inplace for m in relus.values())
    assert calls == dict.fromkeys(relus, 1)  # every ReLU module is called exactly once
    _assert_unchanged(model, before)


def test_every_method_leaves_the_shared_model_untouched():
    model = _model("resnet9-attn")  # inplace ReLUs and two attention modules
    before = _snapshot(model)
    x = torch.randn(1, 3, 32, 32)
    for method in METHODS:
        a = attribute(model, x, 3, method, AttributionConfig(ig_steps=8, smoothgrad_samples=4))
        assert a.shape == ((1, 1, 32, 32) if method == "gradcam" else (1, 3, 32, 32))
        assert torch.isfinite(a).all() and a.abs().sum() > 0
    _assert_unchanged(model, before)


def test_saliency_is_the_absolute_input_gradient():
    model = _model("seed")
    x = torch.randn(2, 3, 32, 32)
    xg = x.clone().requires_grad_(True)
    model(xg)[:, 4].sum().backward()
    expected = xg.grad.abs()
    model.zero_grad(set_to_none=True)
    torch.testing.assert_close(attribute(model, x, 4, "saliency"), expected)


def test_deeplift_and_integrated_gradients_add_up_to_the_score_difference():
    # Without attention the network is piecewise linear, where DeepLift's rescale rule
    # is exact; Integrated Gradients with 50 steps comes close.
    model = _model("seed-noattn")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        diff = model(x)[:, 2] - model(torch.zeros_like(x))[:, 2]  # (B,)
    deeplift = attribute(model, x, 2, "deeplift").sum(dim=(1, 2, 3))
    torch.testing.assert_close(deeplift, diff, rtol=1e-4, atol=1e-4)
    ig = attribute(model, x, 2, "integrated_gradients").sum(dim=(1, 2, 3))
    assert (ig - diff).abs().max() < 0.02 * diff.abs().max() + 1e-3


def test_occlusion_of_the_corner_is_the_score_drop_of_its_window():
    model = _model("seed")
    x = torch.randn(1, 3, 32, 32)
    cfg = AttributionConfig(occlusion_window=4, occlusion_stride=2)
    a = attribute(model, x, 7, "occlusion", cfg)
    covered = x.clone()
    covered[:, :, :4, :4] = 0  # only the window at (0, 0) covers pixel (0, 0)
    with torch.no_grad():
        drop = model(x)[0, 7] - model(covered)[0, 7]
    torch.testing.assert_close(a[0, :, 0, 0], drop.expand(3), rtol=1e-4, atol=1e-5)


def test_gradcam_matches_its_definition_on_the_attention_output():
    model = _model("seed")
    x = torch.randn(1, 3, 32, 32)
    private = copy.deepcopy(model)
    store = {}
    private.attention.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    score = private(x)[0, 5]
    act = store["a"]  # (1, C, 32, 32)
    (grad,) = torch.autograd.grad(score, act)
    weights = grad.mean(dim=(2, 3), keepdim=True)  # (1, C, 1, 1)
    expected = F.relu((weights * act).sum(dim=1, keepdim=True)).detach()
    got = attribute(model, x, 5, "gradcam", AttributionConfig(gradcam_layer="attention"))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


class _GuidedReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g.clamp_min(0) * (x > 0)


class _GuidedModule(nn.Module):
    def forward(self, x):
        return _GuidedReLU.apply(x)


def test_guided_backprop_passes_only_positive_gradients_through_relus():
    model = _model("seed-cbam")  # a shared ReLU, an inplace ReLU called twice, F.relu
    x = torch.randn(1, 3, 32, 32)
    reference = hookable_copy(model)
    for name, m in list(reference.named_children()):
        if isinstance(m, nn.ReLU):
            setattr(reference, name, _GuidedModule())
    xg = x.clone().requires_grad_(True)
    reference(xg)[0, 1].backward()
    torch.testing.assert_close(attribute(model, x, 1, "guided_backprop"), xg.grad)


def test_threads_sharing_one_model_get_their_own_results():
    model = _model("seed")
    before = _snapshot(model)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(2)]
    cfg = AttributionConfig(ig_steps=8)
    hooked = ["guided_backprop", "deeplift", "gradcam", "integrated_gradients", "saliency"]

    def attributions(pixels, target):
        return {m: analysis.attribution_map(model, pixels, MEAN, STD, target, m, cfg)
                for m in hooked}

    def attention(pixels):
        result = analysis.analyse(model, pixels, MEAN, STD)
        view = result.modules["attention"]
        rows = [analysis.query_view(view, (r, r)).row for r in (0, 9, 31)]
        return result.probs, view.received, rows

    ref_attr = attributions(images[0], 3)
    ref_attn = attention(images[1])
    # The rows also match the library's own single-query path.
    x1 = analysis.normalise(images[1], MEAN, STD)
    torch.testing.assert_close(torch.from_numpy(ref_attn[2][1]).flatten(),
                               query_row(model, x1, "attention", 9 * 32 + 9)[0])

    results: dict[str, list] = {"attr": [], "attn": []}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run(kind, fn):
        try:
            start.wait()
            for _ in range(3):
                results[kind].append(fn())
        except BaseException as e:  # reported in the main thread
            errors.append(e)

    run_together(lambda: run("attr", lambda: attributions(images[0], 3)),
                 lambda: run("attn", lambda: attention(images[1])))
    assert not errors, errors
    assert len(results["attr"]) == 3 and len(results["attn"]) == 3
    for got in results["attr"]:
        for m in hooked:
            np.testing.assert_allclose(got[m], ref_attr[m], rtol=1e-4, atol=1e-6, err_msg=m)
    for probs, received, rows in results["attn"]:
        np.testing.assert_allclose(probs, ref_attn[0], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(received, ref_attn[1], rtol=1e-5, atol=1e-9)
        for row, ref in zip(rows, ref_attn[2]):
            np.testing.assert_allclose(row, ref, rtol=1e-5, atol=1e-9)
            assert abs(row.sum() - 1) < 1e-5
    _assert_unchanged(model, before)


def test_to_map_sums_channels():
    a = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    torch.testing.assert_close(to_map(a), a[:, 0] + a[:, 1] + a[:, 2])


def test_the_registry_is_the_one_list_of_methods():
    """Menus, explanations and dispatch all come from REGISTRY: one entry per method."""
    names = [m.name for m in REGISTRY]
    assert len(set(names)) == len(names)
    assert list(METHODS) == names and list(EXPLAIN) == names
    assert all(m.label and m.explanation for m in REGISTRY)
    # Methods that attach hooks are the ones that need a private copy.
    assert {m.name for m in REGISTRY if m.hooks} == {"guided_backprop", "deeplift", "gradcam"}
    with pytest.raises(ValueError, match="Unknown attribution method 'nope'"):
        get_method("nope")

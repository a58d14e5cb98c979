"""The attention interface with heads: the multi-head module is the definition, one head is
exactly the tutorial's module, and everything that reads attention follows the heads."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from reference import reference, reference_heads
from torch import Tensor, nn

from appkit import downloads
from convattn.explain.ablation import REGISTRY as ABLATION_REGISTRY
from convattn.explain.ablation import ablated_copy
from convattn.explain.faithfulness import attention_ranking
from convattn.files.checkpoint import load_checkpoint
from convattn.files.shipped import sample_path
from convattn.nn.models import comparisons, create_model, list_models, twin
from convattn.nn.self_attention import ConvAttentionModule
from convattn.readout import analysis, stats
from convattn.readout.attention import attention_maps, attention_modules, module_inputs, query_row
from convattn.readout.stepthrough import step_through

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = sample_path()
MEAN, STD = (0.49, 0.48, 0.45), (0.2, 0.2, 0.2)


def sharp_module(c: int, c_prime: int, heads: int, seed: int = 0) -> ConvAttentionModule:
    """A module whose heads attend sharply and differently, with gamma != 0."""
    torch.manual_seed(seed)
    m = ConvAttentionModule(c, c_prime, heads)
    with torch.no_grad():
        m.conv_q.weight.normal_(0, 0.7)
        m.conv_k.weight.normal_(0, 0.7)
        m.gamma.fill_(0.8)
    return m.eval()


def sharp_mh4() -> nn.Module:
    torch.manual_seed(1)
    model = create_model("seed-mh4").eval()
    m = attention_modules(model)["attention"]
    with torch.no_grad():
        m.conv_q.weight.mul_(6)
        m.conv_k.weight.mul_(6)
        m.gamma.fill_(0.9)
    return model


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_multi_head_module_is_the_definition(heads):
    m = sharp_module(8, 8, heads)
    x = torch.randn(2, 8, 5, 6)
    with torch.no_grad():
        y_fused, y_explicit = m(x), m(x, explicit=True)
    y_ref, a_ref = reference_heads(m, x, heads)
    torch.testing.assert_close(y_fused.double(), y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y_explicit.double(), y_ref, atol=1e-5, rtol=1e-5)
    a = m.weights(x)
    assert a.shape == (2, heads, 30, 30)
    torch.testing.assert_close(a.double(), a_ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(a.sum(-1), torch.ones(2, heads, 30), atol=1e-6, rtol=0)
    # One query's row in every head, without the matrix.
    torch.testing.assert_close(m.row(x, 17), a[:, :, 17], atol=1e-6, rtol=1e-5)
    if heads > 1:  # the heads really differ, so mixing them up would show
        assert (a[:, 0] - a[:, 1]).abs().max() > 0.05


def test_fused_and_explicit_agree_in_the_backward_pass_with_heads():
    m = sharp_module(8, 8, 4).train()
    x = torch.randn(2, 8, 4, 4).relu()
    grads = []
    for explicit in (False, True):
        xi = x.clone().requires_grad_(True)
        m.zero_grad()
        (m(xi, explicit=explicit) * torch.linspace(-1, 1, 128).view(1, 8, 4, 4)).sum().backward()
        grads.append([xi.grad] + [p.grad.clone() for p in m.parameters()])
    for g_fused, g_explicit in zip(*grads, strict=True):
        torch.testing.assert_close(g_fused, g_explicit, atol=1e-4, rtol=1e-4)


def _pre_heads_forward(m: ConvAttentionModule, x: Tensor) -> Tensor:
    """The module's forward as it was before heads existed (one (B, N, C') attention)."""
    b, c, h, w = x.shape
    q = m.conv_q(x).flatten(2).transpose(1, 2).contiguous()
    k = m.conv_k(x).flatten(2).transpose(1, 2).contiguous()
    v = m.conv_v(x).flatten(2).transpose(1, 2).contiguous()
    z = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
    y = m.layer_norm(m.gamma * z + x.flatten(2).transpose(1, 2))
    return y.transpose(1, 2).reshape(b, c, h, w)


def test_one_head_is_exactly_the_tutorial_module():
    m = sharp_module(16, 4, 1)
    assert [n for n, _ in m.named_parameters()] == [
        "gamma", "conv_q.weight", "conv_q.bias", "conv_k.weight", "conv_k.bias",
        "conv_v.weight", "conv_v.bias", "layer_norm.weight", "layer_norm.bias"]
    x = torch.randn(3, 16, 6, 6)
    with torch.no_grad():
        assert torch.equal(m(x), _pre_heads_forward(m, x))
    y_ref, _, _ = reference(m, x)  # the single-head formula of the tutorial
    torch.testing.assert_close(m(x).detach().double(), y_ref, atol=1e-5, rtol=1e-5)


def test_heads_must_divide_the_channels():
    with pytest.raises(ValueError, match="num_heads=3"):
        ConvAttentionModule(8, 8, 3)
    with pytest.raises(ValueError, match="num_heads=0"):
        ConvAttentionModule(8, 8, 0)


@pytest.mark.parametrize("name", [n for n in list_models()
                                  if Path(ROOT / "checkpoints" / f"{n}.pt").is_file()])
def test_shipped_checkpoints_give_the_answers_they_shipped_with(name):
    """Each shipped checkpoint loads unchanged (strict state dict) and reproduces the
    fp32 probabilities its predictions file stored before heads existed."""
    model, info = load_checkpoint(ROOT / "checkpoints" / f"{name}.pt")
    with np.load(SAMPLE) as f:
        pick = np.arange(0, len(f["names"]), 25)  # 40 images, 4 per class
        pixels, names = f["images"][pick], [str(n) for n in f["names"][pick]]
    with np.load(ROOT / "checkpoints" / f"{name}.predictions.npz") as f:
        row = {str(n): i for i, n in enumerate(f["names"])}
        shipped = f["probs"][[row[n] for n in names]]
    with torch.no_grad():
        probs = model(info.normalise(pixels)).softmax(dim=1).numpy()
    np.testing.assert_allclose(probs, shipped, atol=2e-5, rtol=0)


def test_attention_maps_keep_b_n_n_and_give_heads_on_request():
    model = sharp_mh4()
    images = torch.randn(2, 3, 32, 32)
    per_head = attention_maps(model, images, per_head=True)["attention"]
    mean = attention_maps(model, images)["attention"]
    assert per_head.shape == (2, 4, 1024, 1024) and mean.shape == (2, 1024, 1024)
    torch.testing.assert_close(mean, per_head.mean(dim=1))
    x = module_inputs(model, images)["attention"]
    _, a_ref = reference_heads(attention_modules(model)["attention"], x, 4)
    torch.testing.assert_close(per_head.double(), a_ref, atol=1e-6, rtol=1e-4)
    # One query's row: per head, and the heads' mean by default.
    for head in (0, 3):
        torch.testing.assert_close(query_row(model, images, "attention", 500, head),
                                   per_head[:, head, 500], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(query_row(model, images, "attention", 500), mean[:, 500],
                               atol=1e-6, rtol=1e-5)
    # A one-head model still gives (B, N, N) by default and (B, 1, N, N) on request.
    seed = create_model("seed").eval()
    assert attention_maps(seed, images)["attention"].shape == (2, 1024, 1024)
    assert attention_maps(seed, images, per_head=True)["attention"].shape == (2, 1, 1024, 1024)


def test_step_through_follows_one_head_to_the_module_output():
    model = sharp_mh4()
    images = torch.randn(1, 3, 32, 32)
    x = module_inputs(model, images)["attention"]
    module = attention_modules(model)["attention"]
    rows = module.row(x, 300)[0]  # (h, N)
    for head in range(4):
        s = step_through(module, x, 300, head)
        assert s.heads == 4 and s.q.shape == (16,) and s.values.shape == (1024, 16)
        np.testing.assert_allclose(s.attention, rows[head].numpy(), atol=1e-6)
        np.testing.assert_allclose(s.z_head, s.z[16 * head:16 * (head + 1)], atol=1e-9)
        assert s.max_difference < 1e-4  # every step together is the module's own output
        assert s.scale == pytest.approx(4.0)  # sqrt(C'/h) = sqrt(64 / 4)
    with pytest.raises(ValueError, match="head 4"):
        step_through(module, x, 300, 4)


def test_ablations_apply_to_every_head():
    model = sharp_mh4()
    images = torch.randn(2, 3, 32, 32)
    assert [a.name for a in ABLATION_REGISTRY] == ["gamma0", "uniform"]
    uniform = ablated_copy(model, "uniform")
    a = attention_maps(uniform, images, per_head=True)["attention"]
    torch.testing.assert_close(a, torch.full_like(a, 1 / 1024))
    off = ablated_copy(model, "gamma0")
    assert attention_modules(off)["attention"].gate() == 0.0
    assert attention_modules(model)["attention"].gate() == pytest.approx(0.9)  # untouched


def test_statistics_and_rankings_average_the_heads():
    model = sharp_mh4()
    images = torch.randn(3, 3, 32, 32)
    per_head = attention_maps(model, images, per_head=True)["attention"]  # (B, h, N, N)
    _, found = stats.batch_statistics(model, images)
    entropy = stats.row_entropy(per_head.flatten(0, 1)).view(3, 4, 32, 32).mean(dim=1)
    np.testing.assert_allclose(found["attention"].entropy, entropy.numpy(), rtol=1e-5)
    received = attention_ranking(model, images)["attention"]
    np.testing.assert_allclose(received.numpy(),
                               per_head.mean(dim=(1, 2)).view(3, 32, 32).numpy(), rtol=1e-5)


def test_the_page_analysis_offers_each_head_and_their_mean():
    model = sharp_mh4()
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    result = analysis.analyse(model, pixels, MEAN, STD)
    assert result.head_choices("attention") == [None, 0, 1, 2, 3]
    images = analysis.normalise(pixels, MEAN, STD)
    per_head = attention_maps(model, images, per_head=True)["attention"][0]  # (h, N, N)
    for head in result.head_choices("attention"):
        view = result.view("attention", head)
        a = per_head.mean(dim=0) if head is None else per_head[head]
        q = analysis.query_view(view, (9, 20))  # cell 9 * 32 + 20
        np.testing.assert_allclose(q.row.ravel(), a[9 * 32 + 20].numpy(), atol=1e-6)
        np.testing.assert_allclose(view.received.ravel(), a.mean(dim=0).numpy(), atol=1e-6)
        assert view.max_weight == pytest.approx(float(a.max()), rel=1e-5)
        spread = -(a * a.clamp_min(1e-12).log()).sum(1) / math.log(1024)
        np.testing.assert_allclose(view.spread.ravel(), spread.numpy(), atol=1e-5)
        saved = np.load(__import__("io").BytesIO(downloads.attention_npz(pixels, view, q)))
        np.testing.assert_allclose(saved["attention"], a.numpy(), atol=1e-6)
    assert analysis.head_label(None, 4) == "mean of the 4 heads"
    assert analysis.head_label(2, 4) == "head 3 of 4"
    # A one-head model offers only its head.
    seed = analysis.analyse(create_model("seed").eval(), pixels, MEAN, STD)
    assert seed.head_choices("attention") == [None]


def test_registry_names_the_pairs_that_are_compared():
    assert create_model("seed-mh4").attention.heads() == 4
    pairs = comparisons()
    assert pairs[0] == ("seed", "seed-noattn")  # the tutorial's claim comes first
    assert {("seed", "seed-se"), ("seed", "seed-cbam"), ("resnet9-attn", "resnet9"),
            ("seed-mh4", "seed-noattn"), ("seed-mh4", "seed")} <= set(pairs)
    assert all(a in list_models() and b in list_models() for a, b in pairs)
    assert twin("seed") == "seed-noattn" and twin("seed-noattn") == "seed"
    assert twin("resnet9-attn") == "resnet9" and twin("resnet9") == "resnet9-attn"
    assert twin("seed-se") is None

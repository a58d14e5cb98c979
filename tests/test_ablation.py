"""convattn.ablation: attention switched off on a private copy, checked against the formulas."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from concurrency import run_together
from reference import reference
from torch import nn

from convattn.cli.ablation import main
from convattn.explain.ablation import (
    OUTCOMES,
    ablate_images,
    ablated_copy,
    flip_counts,
    load_ablation,
    normalise,
    outcomes,
    predict_images,
)
from convattn.files.checkpoint import make_checkpoint, save_checkpoint
from convattn.files.data import CIFAR10_MEAN, CIFAR10_STD
from convattn.nn.models import create_model

MEAN, STD = CIFAR10_MEAN, CIFAR10_STD


def sharp_seed(gamma: float = 1.5) -> nn.Module:
    """A seed network whose attention is far from uniform and strongly mixed in, so that
    either ablation changes its outputs visibly."""
    torch.manual_seed(0)
    model = create_model("seed")
    m = model.attention
    with torch.no_grad():
        m.conv_q.weight.normal_(0, 0.5)
        m.conv_k.weight.normal_(0, 0.5)
        m.gamma.fill_(gamma)
        model.fc.weight.normal_(0, 1.0)  # confident outputs: changes show in probabilities
    return model.eval()


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_untouched(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    assert not model.training
    after = model.state_dict()
    for k, v in before.items():
        assert torch.equal(after[k], v), k
    assert all(p.requires_grad for p in model.parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def seed_logits_with(model: nn.Module, x: torch.Tensor, attention: torch.Tensor | None,
                     gamma: float | None) -> torch.Tensor:
    """The seed network's logits computed layer by layer, its attention module replaced
    by the reference formula with the given attention matrix and gamma (float64)."""
    with torch.no_grad():
        f = torch.relu(model.bn1(model.conv1(x)))  # (B, 64, 32, 32)
        m = model.attention
        if gamma == 0.0:  # LayerNorm(X) over channels, from the definition
            seq = f.double().flatten(2)  # (B, C, N)
            mu, var = seq.mean(1, keepdim=True), seq.var(1, unbiased=False, keepdim=True)
            y = (seq - mu) / torch.sqrt(var + m.layer_norm.eps)
            y = (y * m.layer_norm.weight.double()[None, :, None]
                 + m.layer_norm.bias.double()[None, :, None]).reshape(f.shape)
        else:
            y, _, _ = reference(m, f, attention=attention)
        y = torch.relu(model.bn2(model.conv2(y.float())))
        y = torch.relu(model.bn3(model.conv3(y)))
        return model.fc(y.mean(dim=(2, 3)))


def test_gamma0_is_layer_norm_of_x_and_leaves_the_model_alone():
    model = sharp_seed()
    before = snapshot(model)
    pixels = images(4)
    probs = ablate_images(model, pixels, MEAN, STD)
    x = normalise(pixels, MEAN, STD)
    expected = seed_logits_with(model, x, None, gamma=0.0).softmax(dim=1).numpy()
    np.testing.assert_allclose(probs["gamma0"], expected, atol=1e-5)
    real = model(x).softmax(dim=1).detach().numpy()
    np.testing.assert_allclose(probs["real"], real, atol=1e-6)
    # The ablation really changes the answer's probabilities, so the check above bites.
    assert np.abs(probs["gamma0"] - probs["real"]).max() > 0.05
    assert_untouched(model, before)
    assert model.attention.gamma.item() == 1.5


def test_uniform_attention_weights_every_position_one_over_n():
    model = sharp_seed()
    before = snapshot(model)
    pixels = images(3, seed=1)
    probs = ablate_images(model, pixels, MEAN, STD, kinds=["uniform"])
    assert list(probs) == ["real", "uniform"]
    x = normalise(pixels, MEAN, STD)
    uniform = torch.full((3, 1024, 1024), 1 / 1024, dtype=torch.float64)
    expected = seed_logits_with(model, x, uniform, gamma=None).softmax(dim=1).numpy()
    np.testing.assert_allclose(probs["uniform"], expected, atol=1e-5)
    assert np.abs(probs["uniform"] - probs["real"]).max() > 0.05
    assert_untouched(model, before)


def test_only_the_named_module_is_ablated():
    torch.manual_seed(0)
    model = create_model("resnet9-attn", width=8).eval()
    with torch.no_grad():
        model.attn1.gamma.fill_(0.7)
        model.attn2.gamma.fill_(0.9)
    copy = ablated_copy(model, "gamma0", modules=["attn2"])
    assert copy is not model and not copy.training
    assert copy.attn1.gamma.item() == pytest.approx(0.7) and copy.attn2.gamma.item() == 0.0
    assert model.attn2.gamma.item() == pytest.approx(0.9)
    flat = ablated_copy(model, "uniform", modules=["attn1"])
    assert flat.attn1.conv_q.weight.abs().sum() == 0 and flat.attn1.conv_k.bias.abs().sum() == 0
    assert torch.equal(flat.attn2.conv_q.weight, model.attn2.conv_q.weight)
    with pytest.raises(ValueError, match="no attention module named attn3"):
        ablated_copy(model, "gamma0", modules=["attn3"])
    with pytest.raises(ValueError, match="Unknown ablation"):
        ablated_copy(model, "half")


def test_progress_counts_every_pass_and_training_mode_is_refused():
    model = sharp_seed()
    seen: list[tuple[int, int]] = []
    ablate_images(model, images(5), MEAN, STD, batch_size=2,
                  progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (15, 15) and len(seen) == 9  # 3 passes of 3 batches
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    model.train()
    with pytest.raises(ValueError, match="eval mode"):
        predict_images(model, images(2), MEAN, STD)
    assert model.training  # refused, not switched


def test_two_threads_ablating_one_shared_model():
    model = sharp_seed()
    before = snapshot(model)
    inputs = [images(2, seed=3), images(2, seed=4)]
    expected = [ablate_images(model, x, MEAN, STD) for x in inputs]
    assert np.abs(expected[0]["gamma0"] - expected[1]["gamma0"]).max() > 1e-3
    errors: list[str] = []
    start = threading.Barrier(2)

    def worker(i: int) -> None:
        start.wait()
        for step in range(4):
            got = ablate_images(model, inputs[i], MEAN, STD)
            for k, v in got.items():
                if not np.allclose(v, expected[i][k], atol=1e-6):
                    errors.append(f"thread {i} step {step}: {k} differs")
            real = predict_images(model, inputs[i], MEAN, STD)
            if not np.allclose(real, expected[i]["real"], atol=1e-6):
                errors.append(f"thread {i} step {step}: the shared model changed")

    run_together(lambda: worker(0), lambda: worker(1))
    assert errors == []
    assert_untouched(model, before)


def test_outcomes_and_flip_counts():
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    real = np.array([0, 0, 1, 2, 1, 1, 0, 0])
    ablated = np.array([1, 0, 0, 2, 2, 1, 0, 2])
    assert outcomes(labels, real, ablated).tolist() == [
        "fixed", "both_right", "broken", "same_wrong", "other_wrong",
        "both_right", "same_wrong", "other_wrong"]
    counts = flip_counts(labels, real, ablated, num_classes=3)
    assert list(counts) == list(OUTCOMES)
    assert counts["fixed"].tolist() == [1, 0, 0]
    assert counts["broken"].tolist() == [1, 0, 0]
    assert counts["both_right"].tolist() == [1, 1, 0]
    assert sum(counts.values()).tolist() == [5, 3, 0]  # every image counted once


def test_command_line_writes_an_ablation_file(tiny_folder, tmp_path, capsys):
    model = sharp_seed()
    classes = ["cat", "dog", "frog"]
    model.fc = nn.Linear(256, 3)
    path = save_checkpoint(make_checkpoint(model, "seed", {}, classes, MEAN, STD),
                           tmp_path / "tiny.pt")
    assert main([str(path), "--data", str(tiny_folder), "--batch-size", "5"]) == 0
    data = load_ablation(tmp_path / "tiny.ablation.npz")
    assert len(data["names"]) == 12 and data["names"][0] == "test/cat/0000.png"
    assert [str(c) for c in data["classes"]] == classes
    for v in ("real", "gamma0", "uniform"):
        np.testing.assert_array_equal(data[f"pred_{v}"], data[f"probs_{v}"].argmax(1))
        np.testing.assert_allclose(data[f"probs_{v}"].astype(np.float32).sum(1), 1, atol=5e-3)
    out = capsys.readouterr().out
    assert "12 images: accuracy real" in out and "attention fixes" in out
    noattn = save_checkpoint(make_checkpoint(create_model("seed-noattn", num_classes=3),
                                             "seed-noattn", {}, classes, MEAN, STD),
                             tmp_path / "plain.pt")
    assert main([str(noattn), "--data", str(tiny_folder)]) == 2
    assert "has no attention module to ablate" in capsys.readouterr().err

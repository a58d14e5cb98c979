"""The out-of-distribution flag (convattn.trust.ood): methods against hand computations, the
threshold, evaluate's fitting step, and the shipped checkpoints carrying it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_CLASSES

from convattn import out_of_distribution
from convattn.cli.evaluate import format_report
from convattn.cli.evaluate import main as evaluate_main
from convattn.files.checkpoint import (
    load_checkpoint,
    make_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from convattn.files.data import CIFAR10_MEAN, CIFAR10_STD, load_split
from convattn.jobs.evaluation import EvalConfig, evaluate_checkpoint
from convattn.nn.models import create_model
from convattn.trust import ood
from convattn.trust.ood_images import families, generate

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints"


def _evidence(features, labels=None, logits=None, stats=None) -> ood.Evidence:
    features = torch.as_tensor(features, dtype=torch.float32)
    n = len(features)
    return ood.Evidence(torch.zeros(n, 3) if logits is None else logits, features,
                        torch.zeros(n, 2) if stats is None else stats,
                        None if labels is None else torch.as_tensor(labels))


def test_auroc_against_pairs_counted_by_hand():
    inside, outside = [0.1, 0.4, 0.35, 0.8], [0.9, 0.4, 0.5]
    # 0.9 beats all 4; 0.4 beats 0.1 and 0.35 and ties 0.4 (half); 0.5 beats 3 of 4
    assert ood.auroc(inside, outside) == pytest.approx((4 + 2.5 + 3) / 12)
    assert ood.auroc([0, 1], [2, 3]) == 1.0 and ood.auroc([2, 3], [0, 1]) == 0.0


def test_threshold_leaves_exactly_95_percent_unflagged():
    scores = torch.randperm(200).float()
    t = ood.threshold_for(scores)
    assert (scores > t).sum() == 10 and (scores <= t).sum() == 190
    assert ood.threshold_for([3.0]) == 3.0


def test_mahalanobis_matches_the_closed_form():
    # Each class: its mean +- a along every axis, so the shared covariance is a^2/D I
    # exactly (and the shrinkage towards trace/D I leaves it so): distance D/a^2 |x - mu|^2.
    d, a = 4, 2.0
    means = torch.tensor([[0.0, 0, 0, 0], [10, 0, 0, 0], [0, 0, 10, 5]])
    eye = torch.eye(d)
    x = torch.cat([m + s * a * eye for m in means for s in (1, -1)])
    y = torch.arange(3).repeat_interleave(2 * d)
    fitted = ood.fit(_evidence(x, y), "mahalanobis")
    q = torch.tensor([[1.0, 1, 0, 0], [9, 0, 0, 3], [0, 0, 7, 5]])
    expected = (d / a**2) * torch.cdist(q, means).pow(2).min(1).values
    assert torch.allclose(fitted.score(_evidence(q)), expected, rtol=1e-4)


def test_knn_is_the_kth_nearest_cosine_distance():
    # 12 unit vectors 30 degrees apart; from a query on one of them the 10th nearest is
    # 150 degrees away (0, 30, 30, 60, 60, ..., 150, 150, 180).
    angles = torch.arange(12) * math.pi / 6
    bank = torch.stack([angles.cos(), angles.sin()], 1) * 3  # lengths do not matter
    fitted = ood.fit(_evidence(bank, torch.zeros(12, dtype=torch.long)), "knn")
    assert fitted.statistics["bank"].dtype == torch.float16 and fitted.statistics["k"] == 10
    score = fitted.score(_evidence([[5.0, 0.0]]))
    assert score.item() == pytest.approx(1 - math.cos(5 * math.pi / 6), abs=1e-3)


def test_msp_and_energy_against_their_formulas():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    e = _evidence(torch.zeros(2, 2), logits=logits)
    msp = ood.get_method("msp").score(e, {})
    assert msp.tolist() == pytest.approx([-math.e**2 / (math.e**2 + 2), -1 / 3])
    energy = ood.get_method("energy").score(e, {})
    assert energy.tolist() == pytest.approx([-math.log(math.e**2 + 2), -math.log(3)])


def test_every_registered_method_fits_and_scores():
    g = torch.Generator().manual_seed(0)
    train = ood.Evidence(torch.randn(60, 3, generator=g), torch.randn(60, 8, generator=g),
                         torch.randn(60, 5, generator=g), torch.arange(60) % 3)
    query = train.take(torch.arange(7))
    for method in ood.REGISTRY:
        fitted = ood.fit(train, method.name)
        scores = fitted.score(query)
        assert scores.shape == (7,) and torch.isfinite(scores).all(), method.name
    # The combination's parts are z-scored on images they were not fitted on.
    stats = ood.fit(train, "combined").statistics
    assert stats["parts"] == ["knn", "pixels"] and stats["std"].shape == (2,)


def test_image_statistics_put_a_flat_image_far_from_photos_like_noise():
    g = torch.Generator().manual_seed(0)
    photos = (0.5 + 0.15 * torch.randn(200, 3, 32, 32, generator=g)).clamp(0, 1)
    train = ood.Evidence(torch.zeros(200, 3), torch.zeros(200, 2),
                         ood.image_statistics(photos))
    fitted = ood.fit(train, "pixels")
    flat = torch.ones(1, 3, 32, 32) * torch.tensor([1.0, 0, 0]).view(1, 3, 1, 1)
    inside = fitted.score(train.take(torch.arange(50, 60)))
    outside = fitted.score(ood.Evidence(torch.zeros(1, 3), torch.zeros(1, 2),
                                        ood.image_statistics(flat)))
    assert outside.item() > 100 * inside.max().item()


def test_generated_set_is_deterministic_and_has_every_family():
    source = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    images, names = generate(3, seed=7, source=source)
    again, _ = generate(3, seed=7, source=source)
    other, _ = generate(3, seed=8, source=source)
    assert images.shape == (3 * len(families()), 32, 32, 3) and images.dtype == np.uint8
    assert np.array_equal(images, again) and not np.array_equal(images, other)
    assert list(dict.fromkeys(names)) == families()
    flat = images[names == "flat"]
    assert (flat == flat[:, :1, :1]).all()  # one colour each
    patches = images[names == "patches"]  # the source's pixels, rearranged
    assert any(sorted(p.reshape(-1, 3).tolist()) == sorted(s.reshape(-1, 3).tolist())
               for p in patches[:1] for s in source)


@pytest.fixture
def tiny_checkpoint(tmp_path) -> Path:
    model = create_model("seed", num_classes=3)
    ckpt = make_checkpoint(model.eval(), "seed", {}, sorted(TINY_CLASSES), CIFAR10_MEAN,
                           CIFAR10_STD)
    return save_checkpoint(ckpt, tmp_path / "tiny.pt")


def test_a_checkpoint_without_the_flag_fails_in_one_sentence(tiny_checkpoint):
    model, info = load_checkpoint(tiny_checkpoint)
    with pytest.raises(ood.OODError) as e:
        out_of_distribution(model, info, np.zeros((1, 32, 32, 3), np.uint8))
    assert str(e.value) == (f"{tiny_checkpoint} carries no out-of-distribution statistics: "
                            "run python -m convattn.evaluate --fit-ood on it to add them.")


def test_evaluate_fits_the_flag_into_the_checkpoint(tiny_checkpoint, tiny_folder):
    before = read_checkpoint(tiny_checkpoint)
    result = evaluate_checkpoint(tiny_checkpoint, EvalConfig(
        data=str(tiny_folder), device="cpu", batch_size=5, fit_ood=True), progress=False)
    after = torch.load(tiny_checkpoint, weights_only=True)  # plain tensors and dicts only
    assert set(after) == set(before) | {"ood"}
    assert all(torch.equal(after["state_dict"][k], v) for k, v in before["state_dict"].items())
    model, info = load_checkpoint(tiny_checkpoint)
    fitted = ood.stored_fit(info)
    assert fitted is not None and fitted.method == "combined"
    assert "fitted on 24 training images" in fitted.note
    # The threshold is the test scores' 95th percentile: with 12 images, the largest.
    test = load_split(tiny_folder, "test")
    scores, flagged = out_of_distribution(model, info, test.images)
    assert fitted.threshold == pytest.approx(scores.max().item(), rel=1e-5)
    assert not flagged.any() and result["ood"]["flagged"] == 0.0
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 255
    assert out_of_distribution(model, info, red)[1].item()  # a flat colour is flagged
    assert "out-of-distribution flag (kNN distance + image statistics, fitted on 24 " \
        "training images)" in format_report(result)
    assert f"the checkpoint with the flag written to {tiny_checkpoint} (--fit-ood)" in \
        format_report(result)


def test_evaluate_leaves_the_checkpoint_alone_unless_asked(tiny_checkpoint, tiny_folder,
                                                           tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CONVATTN_CHECKPOINTS", str(tiny_checkpoint.parent.resolve()))
    monkeypatch.chdir(tmp_path)
    original = tiny_checkpoint.read_bytes()
    assert evaluate_main([str(tiny_checkpoint), "--data", str(tiny_folder), "--device", "cpu",
                          "--out", str(tmp_path / "p.npz")]) == 0
    report = capsys.readouterr().out
    assert tiny_checkpoint.read_bytes() == original
    assert not (tmp_path / "runs").exists()  # no copy of the checkpoint either
    assert "out-of-distribution flag (" not in report
    assert ("the checkpoint was left unchanged (--fit-ood also fits the out-of-distribution "
            "flag into it)") in report.splitlines()
    # On another split, or with --tta-flip, there is no flag to fit: no hint, and asking for
    # it is one sentence before any work.
    assert evaluate_main([str(tiny_checkpoint), "--data", str(tiny_folder), "--device", "cpu",
                          "--split", "train", "--out", str(tmp_path / "q.npz")]) == 0
    assert "--fit-ood" not in capsys.readouterr().out
    for flags in (["--split", "train"], ["--tta-flip"]):
        assert evaluate_main([str(tiny_checkpoint), "--data", str(tiny_folder), "--device",
                              "cpu", "--fit-ood", *flags]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [
            "error: --fit-ood sets the flag's threshold on the plain model's test "
            "predictions: use it with --split test and without --tta-flip."]
    assert tiny_checkpoint.read_bytes() == original


def test_evaluate_writes_a_shipped_checkpoint_only_when_told(tiny_checkpoint, tiny_folder,
                                                            tmp_path, monkeypatch):
    monkeypatch.setenv("CONVATTN_CHECKPOINTS", str(tiny_checkpoint.parent.resolve()))
    monkeypatch.chdir(tmp_path)
    original = tiny_checkpoint.read_bytes()
    cfg = EvalConfig(data=str(tiny_folder), device="cpu", out=str(tmp_path / "p.npz"),
                     fit_ood=True)
    result = evaluate_checkpoint(tiny_checkpoint, cfg, progress=False)
    assert tiny_checkpoint.read_bytes() == original
    assert result["ood"]["checkpoint"] == str(Path("runs") / "tiny.pt")
    assert "ood" in read_checkpoint(tmp_path / "runs" / "tiny.pt")
    cfg.overwrite_shipped = True
    evaluate_checkpoint(tiny_checkpoint, cfg, progress=False)
    assert "ood" in read_checkpoint(tiny_checkpoint)


@pytest.mark.parametrize("name", ["seed.pt", "seed-mh4.pt", "resnet9-attn.pt"])
def test_shipped_checkpoints_carry_the_flag_and_catch_the_issues_images(name):
    model, info = load_checkpoint(SHIPPED / name)
    fitted = ood.stored_fit(info)
    assert fitted is not None and fitted.method in ood.METHODS
    assert math.isfinite(fitted.threshold)
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 255
    dot = np.zeros((32, 32, 3), np.uint8)
    dot[16, 16, 1] = 255  # one green pixel
    _, flagged = out_of_distribution(model, info, np.stack([red, dot]))
    assert flagged.tolist() == [True, True]

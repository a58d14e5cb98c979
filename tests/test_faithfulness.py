"""Deletion and insertion curves on a toy model whose answer is known; map agreement."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from convattn.explain.faithfulness import (
    Curves,
    FaithfulnessConfig,
    FaithfulnessResult,
    attention_ranking,
    auc,
    average_ranks,
    baseline_images,
    perturbation_curves,
    pixel_ranks,
    random_ranking,
    rank_correlation,
    topk_overlap,
)
from convattn.explain.verdict import RANDOM, against_random
from convattn.nn.models import create_model
from convattn.readout.attention import attention_maps

W = 0.1  # the toy's logit per evidence pixel


class Toy(nn.Module):
    """Class 0's logit is W times the sum of channel 0 over the top-left 8x8 square;
    class 1's is 0. Only those 64 pixels matter."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))  # gives the model a device

    def forward(self, x):
        evidence = W * x[:, 0, :8, :8].sum(dim=(1, 2))
        return torch.stack([evidence, torch.zeros_like(evidence)], dim=1)


def _sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def test_deletion_and_insertion_on_a_toy_whose_answer_is_known():
    images = torch.ones(1, 3, 32, 32)
    good = torch.zeros(1, 32, 32)
    good[0, :8, :8] = 1  # the 64 evidence pixels first
    cfg = FaithfulnessConfig(steps=32)  # 32 pixels per step
    curves = perturbation_curves(Toy(), images, torch.tensor([0]),
                                 {"good": good, "reversed": -good,
                                  "random": random_ranking((1, 32, 32))}, cfg)
    k = np.round(np.linspace(0, 1, 33) * 1024)  # pixels removed or added at each point
    g, r = curves["good"], curves["reversed"]
    np.testing.assert_allclose(g.fractions, k / 1024)
    # Deleting the evidence first: the logit falls by W per evidence pixel removed.
    np.testing.assert_allclose(g.deletion[0], [_sigmoid(W * (64 - min(n, 64))) for n in k],
                               atol=1e-6)
    np.testing.assert_allclose(g.insertion[0], [_sigmoid(W * min(n, 64)) for n in k],
                               atol=1e-6)
    # The reversed order removes the evidence last.
    np.testing.assert_allclose(r.deletion[0], [_sigmoid(W * min(1024 - n, 64)) for n in k],
                               atol=1e-6)
    assert g.deletion_auc[0] < curves["random"].deletion_auc[0] < r.deletion_auc[0]
    assert g.insertion_auc[0] > curves["random"].insertion_auc[0] > r.insertion_auc[0]
    assert g.deletion_auc[0] == pytest.approx(auc(g.fractions, g.deletion)[0])
    # Both curves end where the other starts: the full image and the baseline.
    assert g.deletion[0, 0] == g.insertion[0, -1] == pytest.approx(_sigmoid(6.4))
    assert g.deletion[0, -1] == g.insertion[0, 0] == pytest.approx(0.5)


def test_auc_is_the_trapezoid_rule():
    x = np.linspace(0, 1, 5)
    np.testing.assert_allclose(auc(x, np.array([x, 1 - x, np.ones(5)])), [0.5, 0.5, 1.0])


def test_pixel_ranks_put_the_largest_first_and_keep_row_major_ties():
    ranking = torch.tensor([[[0.1, 0.9], [0.5, 0.9]]])
    assert pixel_ranks(ranking).tolist() == [[3, 0, 2, 1]]


def test_blurred_baseline_keeps_a_constant_image_and_smooths_an_edge():
    flat = torch.full((1, 3, 32, 32), 0.7)
    cfg = FaithfulnessConfig(baseline="blur")
    np.testing.assert_allclose(baseline_images(flat, cfg), 0.7, atol=1e-6)
    edge = torch.zeros(1, 3, 32, 32)
    edge[..., 16:] = 1
    blurred = baseline_images(edge, cfg)
    assert 0.3 < blurred[0, 0, 5, 16] < 0.7 and blurred[0, 0, 5, 0] < 0.05
    assert (baseline_images(edge, FaithfulnessConfig()) == 0).all()
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_images(edge, FaithfulnessConfig(baseline="noise"))


def test_attention_ranking_is_the_attention_received_per_input_pixel():
    model = create_model("resnet9-attn", width=8).eval()
    images = torch.randn(2, 3, 32, 32)
    maps = attention_maps(model, images)
    ranking = attention_ranking(model, images)
    received = maps["attn2"].mean(dim=1).view(2, 8, 8)  # column means at 8x8
    assert ranking["attn2"].shape == (2, 32, 32)
    np.testing.assert_allclose(ranking["attn2"][:, 4 * 3 + 1, 4 * 5 + 2], received[:, 3, 5],
                               rtol=1e-6)


def test_rank_correlation_is_spearman():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 50)), rng.normal(size=(3, 50))
    d = np.argsort(np.argsort(a)) - np.argsort(np.argsort(b))
    expect = 1 - 6 * (d**2).sum(axis=1) / (50 * (50**2 - 1))  # no ties
    np.testing.assert_allclose(rank_correlation(a, b), expect, atol=1e-12)
    np.testing.assert_allclose(rank_correlation(a, 2 * a + 1), 1.0)
    np.testing.assert_allclose(rank_correlation(a, -a), -1.0)
    assert average_ranks(np.array([[5.0, 1.0, 5.0, 3.0]])).tolist() == [[2.5, 0, 2.5, 1]]
    assert np.isnan(rank_correlation(np.ones((1, 4)), a[:1, :4]))[0]


def test_topk_overlap_counts_shared_top_pixels():
    a = np.arange(100.0)[None]
    assert topk_overlap(a, a, 0.1)[0] == 1.0
    assert topk_overlap(a, -a, 0.1)[0] == 0.0
    b = a.copy()
    b[0, 95:] = -1  # five of the top ten fall out
    assert topk_overlap(a, b, 0.1)[0] == 0.5
    rng = np.random.default_rng(1)
    unrelated = topk_overlap(rng.random((400, 100)), rng.random((400, 100)), 0.1)
    assert unrelated.mean() == pytest.approx(0.1, abs=0.02)


def test_evaluate_ranks_by_attributions_attention_and_random_in_chunks():
    from convattn.explain.faithfulness import auc_table, evaluate, merge
    from convattn.explain.verdict import RANDOM

    model = create_model("seed").eval()
    with torch.no_grad():
        model.attention.gamma.fill_(0.5)
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    cfg = FaithfulnessConfig(steps=2)
    whole = evaluate(model, images, labels, ["saliency"], np.arange(10, 14), cfg)
    name = "attention received (attention)"
    assert set(whole.curves) == {"saliency", name, RANDOM}
    with torch.no_grad():
        probs = model(images).softmax(1)
    np.testing.assert_array_equal(whole.predicted, probs.argmax(1).numpy())
    np.testing.assert_allclose(whole.curves["saliency"].deletion[:, 0], probs.max(1).values,
                               rtol=1e-5)
    np.testing.assert_array_equal(whole.maps[RANDOM][2],
                                  random_ranking((32, 32), seed=12).numpy())
    np.testing.assert_allclose(whole.agreement[("attention", "saliency")]["spearman"],
                               rank_correlation(whole.maps[name], whole.maps["saliency"]))
    # Images are independent: two chunks merged give the same numbers as one run.
    parts = merge([evaluate(model, images[:1], labels[:1], ["saliency"], np.array([10]), cfg),
                   evaluate(model, images[1:], labels[1:], ["saliency"],
                            np.arange(11, 14), cfg)])
    for k in whole.curves:
        np.testing.assert_allclose(parts.curves[k].deletion, whole.curves[k].deletion,
                                   atol=1e-5)
        np.testing.assert_allclose(parts.curves[k].insertion, whole.curves[k].insertion,
                                   atol=1e-5)
    table = {r["ranking"]: r for r in auc_table(whole)}
    assert table["saliency"]["images"] == 4
    assert table["saliency"]["deletion_auc"] == pytest.approx(
        whole.curves["saliency"].deletion_auc.mean())
    assert "beats_random_deletion" not in table[RANDOM]
    assert 0 <= table[name]["beats_random_insertion"] <= 1


def _result(deletion: dict[str, list[float]], insertion: dict[str, list[float]]
            ) -> FaithfulnessResult:
    """A result whose rankings have the given per-image AUCs: with two points, a curve's
    AUC is the mean of its ends."""
    curves = {}
    for name in deletion:
        d = np.asarray(deletion[name], dtype=float)[:, None]
        i = np.asarray(insertion[name], dtype=float)[:, None]
        curves[name] = Curves(np.array([0.0, 1.0]), np.hstack([d, d]), np.hstack([i, i]))
    n = len(next(iter(deletion.values())))
    return FaithfulnessResult(np.arange(n), np.zeros(n, int), np.zeros(n, int), {}, curves, {})


def test_against_random_is_a_paired_test_per_measure_with_two_standard_errors():
    deletion = {RANDOM: [0.3, 0.5, 0.4, 0.6],
                "good": [0.1, 0.3, 0.19, 0.41],  # 0.2 lower than random on every image
                "noisy": [0.9, 0.1, 0.8, 0.2]}  # -0.6, +0.4, -0.4, +0.4 vs random
    insertion = {RANDOM: [0.3, 0.5, 0.4, 0.6],
                 "good": [0.2, 0.4, 0.3, 0.52],  # about 0.1 lower: worse on insertion
                 "noisy": [0.3, 0.5, 0.4, 0.6]}
    by = {r["ranking"]: r for r in against_random(_result(deletion, insertion))}
    assert set(by) == {"good", "noisy"}
    assert by["good"]["deletion"]["verdict"] == "better"
    assert by["good"]["insertion"]["verdict"] == "worse"  # the two tests can disagree
    diff = np.array([-0.6, 0.4, -0.4, 0.4])
    assert by["noisy"]["deletion"]["margin"] == pytest.approx(diff.mean())
    assert by["noisy"]["deletion"]["stderr"] == pytest.approx(diff.std(ddof=1) / 2)
    assert by["noisy"]["deletion"]["verdict"] == "undecided"
    # One image has no spread to judge by.
    (only,) = against_random(_result({RANDOM: [0.5], "x": [0.1]}, {RANDOM: [0.5], "x": [0.9]}))
    assert only["deletion"]["verdict"] == only["insertion"]["verdict"] == "undecided"
    mask = np.array([True, False, True, False])
    (masked,) = against_random(_result({RANDOM: deletion[RANDOM], "g": deletion["good"]},
                                       {RANDOM: insertion[RANDOM], "g": insertion["good"]}),
                               mask)
    assert masked["images"] == 2
    assert masked["deletion"]["margin"] == pytest.approx(np.mean([0.2, 0.21]))


def _reference_curves(model, images, target, ranking, steps):
    """Deletion and insertion the slow, obvious way: one image, one step, one forward pass
    at a time."""
    b, _, h, w = images.shape
    fractions = np.linspace(0, 1, steps + 1)
    dele, ins = np.zeros((b, steps + 1)), np.zeros((b, steps + 1))
    for i in range(b):
        order = torch.sort(ranking[i].flatten(), descending=True, stable=True).indices
        for s, f in enumerate(fractions):
            top = torch.zeros(h * w, dtype=torch.bool)
            top[order[:round(f * h * w)]] = True
            top = top.view(1, 1, h, w)
            x = images[i:i + 1]
            with torch.no_grad():
                pd = model(torch.where(top, torch.zeros_like(x), x)).softmax(1)[0, target[i]]
                pi = model(torch.where(top, x, torch.zeros_like(x))).softmax(1)[0, target[i]]
            dele[i, s], ins[i, s] = float(pd), float(pi)
    return dele, ins


def test_batched_runner_equals_the_one_image_at_a_time_reference():
    from convattn.explain.faithfulness_batched import run

    torch.manual_seed(0)
    model = create_model("seed").eval()
    with torch.no_grad():
        model.attention.gamma.fill_(0.5)
    images, labels = torch.randn(5, 3, 32, 32), torch.tensor([0, 1, 2, 3, 4])
    cfg = FaithfulnessConfig(steps=4, batch_size=7)  # batches cut across images and steps
    got = run(model, images, labels, ["saliency", "gradcam"], np.arange(20, 25), cfg, chunk=2)
    with torch.no_grad():
        target = model(images).argmax(1)
    np.testing.assert_array_equal(got.predicted, target.numpy())
    assert list(got.curves) == ["saliency", "gradcam", "attention received (attention)",
                                RANDOM]
    for name, curves in got.curves.items():
        dele, ins = _reference_curves(model, images, target, torch.from_numpy(got.maps[name]),
                                      4)
        np.testing.assert_allclose(curves.deletion, dele, atol=1e-5)
        np.testing.assert_allclose(curves.insertion, ins, atol=1e-5)
    np.testing.assert_array_equal(got.maps[RANDOM][3], random_ranking((32, 32), 23).numpy())
    # The same maps as the reference evaluate (whole batch, one call per method).
    from convattn.explain.faithfulness import evaluate

    ref = evaluate(model, images, labels, ["saliency", "gradcam"], np.arange(20, 25), cfg)
    for name in ref.maps:
        np.testing.assert_allclose(got.maps[name], ref.maps[name], atol=1e-6)
    np.testing.assert_allclose(got.agreement[("attention", "gradcam")]["spearman"],
                               ref.agreement[("attention", "gradcam")]["spearman"], atol=1e-4)


def test_batched_runner_reports_progress_and_skips_attention_and_random_on_request():
    from convattn.explain.faithfulness_batched import run

    calls = []
    got = run(Toy().eval(), torch.ones(5, 3, 32, 32), torch.zeros(5, dtype=torch.long), [],
              cfg=FaithfulnessConfig(steps=2), attention=False, chunk=2,
              progress=lambda d, t: calls.append((d, t)))
    assert calls == [(2, 5), (4, 5), (5, 5)]
    assert list(got.curves) == [RANDOM]
    got = run(Toy().eval(), torch.ones(2, 3, 32, 32), torch.zeros(2, dtype=torch.long), [],
              cfg=FaithfulnessConfig(steps=2), random=False)
    assert got.curves == {}
    with pytest.raises(ValueError, match="no images"):
        run(Toy().eval(), torch.ones(0, 3, 32, 32), torch.zeros(0, dtype=torch.long), [])


def test_the_verdict_bar_is_students_t_corrected_for_every_test_read():
    from scipy import stats

    from convattn.explain.verdict import critical_value, t_quantile

    # 4 images, 3 rankings (6 tests): t with 3 degrees of freedom at 1 - 0.05 / 12.
    assert critical_value(4, 6) == pytest.approx(stats.t.ppf(1 - 0.05 / 12, 3), rel=1e-6)
    for df in (1, 2, 5, 29, 30, 99, 999):
        for p in (0.975, 0.999):
            assert t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=2e-4)
    assert critical_value(10**6, 1) == pytest.approx(1.96, abs=1e-3)
    assert critical_value(1, 2) == float("inf")
    # A margin of 2.5 standard errors on 4 images was "better" under the old bar of 2.
    diff = np.array([1.0, 2.0, 3.0, 4.0]) * 0.01
    d = np.array([0.5, 0.5, 0.5, 0.5])
    rand = (d + 2.5 * diff.std(ddof=1) / 2 + (diff - diff.mean())).tolist()
    (row,) = against_random(_result({RANDOM: rand, "x": d.tolist()},
                                    {RANDOM: d.tolist(), "x": d.tolist()}))
    v = row["deletion"]
    assert v["margin"] / v["stderr"] == pytest.approx(2.5)
    assert v["half_width"] == pytest.approx(critical_value(4, 2) * v["stderr"])
    assert v["verdict"] == "undecided"
    # How many images would tell: (z * sd / margin)^2 with z for that many images.
    sd = v["stderr"] * 2
    assert v["needed"] == np.ceil((critical_value(10**6, 2) * sd / v["margin"]) ** 2)
    assert row["insertion"]["needed"] == float("inf")  # no margin at all

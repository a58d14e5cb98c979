"""Attention statistics: entropy, attention distance, row similarity, over a set."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from convattn.nn.models import create_model
from convattn.readout.attention import attention_maps
from convattn.readout.stats import (
    attention_statistics,
    balanced_order,
    mean_distance,
    position_distances,
    row_entropy,
    row_similarity,
    summary,
)


def test_uniform_row_has_entropy_log_n_and_one_hot_row_zero():
    n = 64
    uniform = torch.full((1, n, n), 1 / n)
    np.testing.assert_allclose(row_entropy(uniform), math.log(n), rtol=1e-6)
    one_hot = torch.eye(n)[None]
    np.testing.assert_allclose(row_entropy(one_hot), 0.0, atol=1e-6)


def test_one_hot_row_distance_is_the_query_key_distance_in_pixels():
    grid = (4, 8)  # cells of 8 x 4 input pixels
    n = 32
    keys = torch.randperm(n)  # query i looks only at key keys[i]
    attention = torch.zeros(1, n, n)
    attention[0, torch.arange(n), keys] = 1
    got = mean_distance(attention, position_distances(grid))[0]
    for i in range(n):
        (qr, qc), (kr, kc) = divmod(i, 8), divmod(int(keys[i]), 8)
        expect = math.hypot((qr - kr) * 32 / 4, (qc - kc) * 32 / 8)
        assert got[i].item() == pytest.approx(expect, abs=1e-4)


def test_row_similarity_matches_the_pairwise_definition():
    same = torch.softmax(torch.randn(1, 1, 16), -1).expand(1, 16, 16)
    assert row_similarity(same).item() == pytest.approx(1.0, abs=1e-6)
    disjoint = torch.eye(16)[None]  # every query looks somewhere else
    assert row_similarity(disjoint).item() == pytest.approx(0.0, abs=1e-6)
    a = torch.softmax(3 * torch.randn(2, 10, 10), -1)
    u = a / a.norm(dim=-1, keepdim=True)
    cos = u @ u.transpose(1, 2)  # (2, 10, 10)
    expect = (cos.sum(dim=(1, 2)) - 10) / 90  # mean over the off-diagonal pairs
    np.testing.assert_allclose(row_similarity(a), expect, atol=1e-5)


def test_statistics_over_a_set_match_the_attention_and_split_by_group():
    model = create_model("seed").eval()
    with torch.no_grad():
        model.attention.gamma.fill_(0.5)
    images = torch.randn(7, 3, 32, 32)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    calls = []
    stats = attention_statistics(model, images, labels, indices=np.arange(10, 17),
                                 batch_size=3, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(3, 7), (6, 7), (7, 7)]
    with torch.no_grad():
        predicted = model(images).argmax(1).numpy()
    np.testing.assert_array_equal(stats.predicted, predicted)
    np.testing.assert_array_equal(stats.indices, np.arange(10, 17))
    m = stats.modules["attention"]
    assert m.grid == (32, 32) and m.entropy.shape == (7, 32, 32)
    a = attention_maps(model, images)["attention"].double()  # (7, N, N)
    entropy = -(a * a.log()).sum(-1).view(7, 32, 32)
    np.testing.assert_allclose(m.entropy, entropy.numpy(), rtol=1e-4, atol=1e-5)
    assert m.entropy.max() <= m.max_entropy + 1e-4
    # A query's mean distance lies between 0 and the farthest pixel, sqrt(2) * 31.
    assert 0 < m.distance.min() and m.distance.max() < 31 * math.sqrt(2)
    # Random weights barely focus: every row is close to uniform, so rows are similar.
    assert m.similarity.min() > 0.5
    wrong = stats.select(~stats.correct)
    assert len(wrong) == int((predicted != labels.numpy()).sum())
    np.testing.assert_array_equal(wrong.modules["attention"].entropy,
                                  m.entropy[~stats.correct])
    table = summary(m)
    assert table["images"] == 7
    assert table["entropy_fraction"] == pytest.approx(m.entropy.mean() / math.log(1024))


def test_uniform_distance_is_smallest_in_the_middle():
    m = create_model("resnet9-attn", width=8).eval()
    stats = attention_statistics(m, torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))
    assert set(stats.modules) == {"attn1", "attn2"}
    assert stats.modules["attn2"].grid == (8, 8)
    uniform = stats.modules["attn2"].uniform_distance
    assert uniform[3:5, 3:5].max() < uniform[0, 0] == pytest.approx(uniform[7, 7])


def test_balanced_order_keeps_classes_in_balance_in_every_prefix():
    labels = np.repeat(np.arange(4), [5, 5, 5, 2])
    order = balanced_order(labels, seed=3)
    assert sorted(order) == list(range(len(labels)))
    assert sorted(labels[order[:4]]) == [0, 1, 2, 3]
    assert sorted(labels[order[8:]]) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    np.testing.assert_array_equal(order, balanced_order(labels, seed=3))

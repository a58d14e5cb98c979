"""Penultimate features, their on-disk cache, and nearest neighbours by cosine distance."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_image_folder
from torch import nn

from convattn.files.checkpoint import CheckpointError, make_checkpoint, save_checkpoint
from convattn.files.data import CIFAR10_MEAN, CIFAR10_STD, load_split
from convattn.files.images import ImageError
from convattn.files.info import CheckpointInfo
from convattn.nn.models import create_model
from convattn.readout.attention import attention_modules
from convattn.trust import neighbours
from convattn.trust.neighbours import (
    cache_dir,
    cached_features,
    features_key,
    image_features,
    nearest,
    train_features,
)

CLASSES = ["cat", "dog", "frog"]
INFO = CheckpointInfo(arch="seed", model_config={}, classes=CLASSES, mean=CIFAR10_MEAN,
                      std=CIFAR10_STD)


def random_model(arch: str, seed: int = 0, **config) -> nn.Module:
    """An untrained network whose attention is on and whose BatchNorms are not identities."""
    torch.manual_seed(seed)
    model = create_model(arch, num_classes=len(CLASSES), **config)
    with torch.no_grad():
        for m in attention_modules(model).values():
            m.gamma.fill_(0.5)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def random_images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def by_hand(arch: str, model: nn.Module, images: np.ndarray) -> np.ndarray:
    """The network's layers up to its global pool, called one by one, L2-normalised."""
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - mean) / std
    m = model
    with torch.no_grad():
        if arch == "seed":
            x = m.attention(m.relu(m.bn1(m.conv1(x))))
            x = m.relu(m.bn3(m.conv3(m.relu(m.bn2(m.conv2(x))))))
            f = x.mean(dim=(2, 3))
        else:
            x = m.attn2(m.layer2(m.attn1(m.layer1(m.prep(x)))))
            f = m.pool(m.layer3(x)).flatten(1)
    return (f / f.norm(dim=1, keepdim=True)).numpy()


@pytest.mark.parametrize("arch, config", [("seed", {}), ("resnet9-attn", {"width": 8})])
def test_features_are_the_network_up_to_the_pool(arch, config):
    model = random_model(arch, **config)
    images = random_images(7)
    seen = []
    features = image_features(model, INFO, images, batch_size=3,
                              progress=lambda done, total: seen.append((done, total)))
    expected = by_hand(arch, model, images)
    assert features.dtype == np.float32 and features.shape == expected.shape
    np.testing.assert_allclose(features, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1, atol=1e-6)
    assert seen == [(3, 7), (6, 7), (7, 7)]
    assert train_features is image_features


def test_the_model_is_left_untouched():
    model = random_model("seed").train()  # a shared model in any mode stays in it
    before = {k: v.clone() for k, v in model.state_dict().items()}
    image_features(model, INFO, random_images(4), batch_size=2)
    assert model.training
    assert not model.fc._forward_pre_hooks and not model.fc._forward_hooks
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="no module named 'head'"):
        image_features(model, INFO, random_images(1), layer="head")
    with pytest.raises(ImageError, match="must be uint8"):
        image_features(model, INFO, random_images(1).astype(np.float32))


def test_nearest_of_a_training_image_is_itself():
    features = image_features(random_model("seed"), INFO, random_images(12))
    queries = [2, 5, 11]
    idx, dist = nearest(features, features[queries], k=4)
    np.testing.assert_array_equal(idx[:, 0], queries)
    np.testing.assert_allclose(dist[:, 0], 0, atol=1e-6)
    reference = 1 - features.astype(np.float64) @ features[queries].astype(np.float64).T
    for q in range(len(queries)):
        np.testing.assert_array_equal(idx[q], np.argsort(reference[:, q])[:4])
        np.testing.assert_allclose(dist[q], np.sort(reference[:, q])[:4], atol=1e-6)
    half = features.astype(np.float16)  # the cache's dtype, widened in chunks
    idx16, dist16 = nearest(half, features[5], k=2, chunk=5)
    assert idx16.shape == (1, 2) and idx16[0, 0] == 5 and dist16[0, 0] < 1e-3
    with pytest.raises(ValueError, match="k must be"):
        nearest(features, features[0], k=13)


@pytest.fixture
def setup(tmp_path: Path):
    ckpt = make_checkpoint(random_model("seed"), "seed", {}, CLASSES, CIFAR10_MEAN,
                           CIFAR10_STD)
    checkpoint = save_checkpoint(ckpt, tmp_path / "tiny.pt")
    data = make_image_folder(tmp_path / "data", train_per_class=3, test_per_class=1)
    return checkpoint, data, tmp_path / "cache"


def counting(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = neighbours.image_features

    def wrapped(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(neighbours, "image_features", wrapped)
    return calls


def test_cache_round_trips_and_misses_on_change(setup, monkeypatch):
    checkpoint, data, cache = setup
    calls = counting(monkeypatch)
    first = cached_features(checkpoint, data, directory=cache)
    expected = image_features(random_model("seed"), INFO, load_split(data, "train").images)
    assert first.dtype == np.float16
    np.testing.assert_array_equal(first, expected.astype(np.float16))
    again = cached_features(checkpoint, data, directory=cache)
    np.testing.assert_array_equal(again, first)
    assert len(calls) == 1 and len(list(cache.iterdir())) == 1

    # Another checkpoint at the same path: a new key, computed afresh.
    other = make_checkpoint(random_model("seed", seed=1), "seed", {}, CLASSES,
                            CIFAR10_MEAN, CIFAR10_STD)
    save_checkpoint(other, checkpoint)
    changed = cached_features(checkpoint, data, directory=cache)
    assert len(calls) == 2 and not np.array_equal(changed, first)

    # A touched image file changes the data's identity.
    key = features_key(checkpoint, data)
    image = next((data / "train" / "cat").iterdir())
    os.utime(image, ns=(1, 1))
    assert features_key(checkpoint, data) != key
    assert features_key(checkpoint, data, split="test") != features_key(checkpoint, data)

    # An entry added beside the weights (as evaluate adds the out-of-distribution flag)
    # changes the file but not the features: the key stays, nothing is recomputed.
    key = features_key(checkpoint, data)
    cached_features(checkpoint, data, directory=cache)  # computed for the touched data
    assert len(calls) == 3
    grown = torch.load(checkpoint, weights_only=True)
    grown["ood"] = {"method": "knn", "threshold": 1.0}
    save_checkpoint(grown, checkpoint)
    assert features_key(checkpoint, data) == key
    cached_features(checkpoint, data, directory=cache)
    assert len(calls) == 3


def test_a_corrupt_cache_file_is_recomputed(setup, monkeypatch):
    checkpoint, data, cache = setup
    calls = counting(monkeypatch)
    first = cached_features(checkpoint, data, directory=cache)
    path = cache / f"{features_key(checkpoint, data)}.npy"
    path.write_bytes(path.read_bytes()[:100])  # truncated
    np.testing.assert_array_equal(cached_features(checkpoint, data, directory=cache), first)
    np.save(path, first.astype(np.float32))  # readable, but not what the cache writes
    np.testing.assert_array_equal(cached_features(checkpoint, data, directory=cache), first)
    assert len(calls) == 3
    assert np.load(path).dtype == np.float16


def test_cache_location_and_unwritable_cache(setup, monkeypatch, tmp_path):
    checkpoint, data, _ = setup
    monkeypatch.setenv("CONVATTN_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" / "features"
    monkeypatch.delenv("CONVATTN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "convattn" / "features"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "convattn" / "features"
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    with pytest.warns(UserWarning, match="not cached"):
        features = cached_features(checkpoint, data, directory=blocked / "cache")
    assert features.shape == (9, 256)
    with pytest.raises(CheckpointError, match="does not exist"):
        cached_features(tmp_path / "missing.pt", data, directory=tmp_path)


def test_features_take_images_as_prepare_does_and_refuse_floats():
    torch.manual_seed(0)
    model = create_model("seed", num_classes=3).eval()
    info = CheckpointInfo(arch="seed", model_config={}, classes=["a", "b", "c"],
                          mean=tuple(CIFAR10_MEAN), std=tuple(CIFAR10_STD))
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    want = neighbours.image_features(model, info, pixels, batch_size=2)
    channels_first = torch.from_numpy(pixels).permute(0, 3, 1, 2)
    assert np.allclose(neighbours.image_features(model, info, channels_first), want, atol=1e-6)
    assert np.allclose(np.linalg.norm(want, axis=1), 1, atol=1e-5)
    with pytest.raises(ImageError, match="must be uint8"):
        neighbours.image_features(model, info, pixels / 255.0)

"""Datasets read from disk, and the in-memory loader's batches, crops and shards."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_CLASSES, TRAIN_PER_CLASS, make_image_folder
from PIL import Image
from torch import Tensor

import convattn.cli.data as data_cli
import convattn.files.data as data_module
from convattn.cli.data import main
from convattn.errors import DataError
from convattn.files.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    ImageSet,
    cache_dir,
    default_data,
    load_split,
    pack_folder,
    resolve_data,
    unpack,
)
from convattn.files.loader import TensorLoader
from convattn.files.shipped import load_sample

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def identity_set(n: int, seed: int = 0) -> ImageSet:
    """Random images whose label is their index, so every batch says where it came from."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(1, 256, (n, 32, 32, 3), generator=gen, dtype=torch.uint8)
    return ImageSet(images, torch.arange(n), [str(i) for i in range(n)],
                    [f"train/{i}.png" for i in range(n)])


def pixels(loader: TensorLoader, x: Tensor) -> Tensor:
    """Undo the loader's normalisation: (B, 3, 32, 32) float -> (B, 32, 32, 3) uint8."""
    mean = torch.tensor(loader_mean(loader)).view(1, 3, 1, 1)
    std = torch.tensor(loader_std(loader)).view(1, 3, 1, 1)
    raw = (x * std + mean) * 255
    assert (raw - raw.round()).abs().max() < 1e-3  # the values really are pixels
    return raw.round().to(torch.uint8).permute(0, 2, 3, 1)


def loader_mean(loader: TensorLoader) -> tuple[float, ...]:
    return tuple(loader.mean)


def loader_std(loader: TensorLoader) -> tuple[float, ...]:
    return tuple(loader.std)


def crop_of(image: Tensor, crop: Tensor) -> list[tuple[int, int, bool]]:
    """Every (row, col, flipped) window of the 40x40 zero-padded image equal to crop."""
    padded = F.pad(image, (0, 0, 4, 4, 4, 4))  # (40, 40, 3)
    return [(r, c, flip) for r in range(9) for c in range(9) for flip in (False, True)
            if torch.equal(padded[r:r + 32, c:c + 32].flip(1) if flip
                           else padded[r:r + 32, c:c + 32], crop)]


def test_load_split_reads_an_image_folder(tiny_folder):
    data = load_split(tiny_folder, "train")
    n = TRAIN_PER_CLASS * len(TINY_CLASSES)
    assert len(data) == n
    assert data.images.shape == (n, 32, 32, 3) and data.images.dtype == np.uint8
    assert data.labels.dtype == np.int64
    assert data.classes == sorted(TINY_CLASSES)
    assert data.labels.tolist() == [c for c in range(3) for _ in range(TRAIN_PER_CLASS)]
    assert data.names[0] == "train/cat/0000.png"
    assert data.names[-1] == f"train/frog/{TRAIN_PER_CLASS - 1:04d}.png"
    for i in (0, 9, n - 1):  # the pixels are the files' pixels, in the order of names
        with Image.open(tiny_folder / data.names[i]) as im:
            expected = np.array(im.convert("RGB"))
        np.testing.assert_array_equal(data.images[i], expected)
        assert data.names[i].split("/")[1] == data.classes[data.labels[i]]
    test = load_split(tiny_folder, "test")
    assert len(test) == 12 and test.names[0] == "test/cat/0000.png"


def test_odd_images_are_converted_and_other_files_ignored(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), train_per_class=1,
                             test_per_class=1)
    Image.fromarray(np.full((40, 48), 200, np.uint8), mode="L").save(root / "train/a/big.jpg")
    (root / "train/a/readme.txt").write_text("not an image")
    data = load_split(root, "train")
    assert data.names == ["train/a/0000.png", "train/a/big.jpg", "train/b/0000.png"]
    big = data.images[1]
    assert big.shape == (32, 32, 3)
    assert np.abs(big.astype(int) - 200).max() <= 2  # grey, resized to 32x32, as RGB


def test_a_missing_folder_is_one_clear_error(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="does not exist") as err:
        load_split(missing, "train")
    assert str(missing) in str(err.value)


def test_a_folder_without_train_is_one_clear_error(tmp_path):
    root = tmp_path / "d"
    (root / "test" / "cat").mkdir(parents=True)
    with pytest.raises(DataError) as err:
        load_split(root, "train")
    assert str(root / "train") in str(err.value) and "ImageFolder" in str(err.value)


def test_an_empty_split_is_one_clear_error(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), train_per_class=1,
                             test_per_class=1)
    for f in (root / "test").rglob("*.png"):
        f.unlink()
    with pytest.raises(DataError, match="holds no images") as err:
        load_split(root, "test")
    assert str(root / "test") in str(err.value)


def test_an_unreadable_image_is_one_clear_error(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=("a",), train_per_class=2,
                             test_per_class=1)
    bad = root / "train" / "a" / "0001.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(DataError) as err:
        load_split(root, "train")
    assert str(bad) in str(err.value)


def test_unknown_split():
    with pytest.raises(DataError, match="valid"):
        load_split(".", "valid")


def test_pack_round_trip_equals_the_folder(tiny_folder, tmp_path):
    pack = pack_folder(tiny_folder, tmp_path / "tiny.npz")
    for split in ("train", "test"):
        packed, folder = load_split(pack, split), load_split(tiny_folder, split)
        np.testing.assert_array_equal(packed.images, folder.images)
        np.testing.assert_array_equal(packed.labels, folder.labels)
        assert packed.classes == folder.classes
        assert packed.names == folder.names


def test_unpack_restores_every_file_byte_for_byte(tiny_folder, tmp_path):
    pack = pack_folder(tiny_folder, tmp_path / "tiny.npz")
    out = unpack(pack, tmp_path / "restored")
    originals = sorted(p.relative_to(tiny_folder) for p in tiny_folder.rglob("*.png"))
    assert originals and sorted(p.relative_to(out) for p in out.rglob("*.png")) == originals
    for rel in originals:
        assert (out / rel).read_bytes() == (tiny_folder / rel).read_bytes()


def test_unpack_of_a_file_that_is_not_a_pack_is_one_clear_error(tmp_path, capsys):
    text = tmp_path / "notes.npz"
    text.write_text("not a pack")
    with pytest.raises(DataError, match="not a convattn dataset pack"):
        unpack(text, tmp_path / "out")
    assert main(["unpack", str(text), str(tmp_path / "out")]) == 2
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert len(err_lines) == 1 and str(text) in err_lines[0]
    assert not (tmp_path / "out").exists()


def test_pack_errors(tmp_path, capsys):
    with pytest.raises(DataError, match="does not exist"):
        load_split(tmp_path / "missing.npz", "train")
    not_a_pack = tmp_path / "other.npz"
    np.savez(not_a_pack, x=np.zeros(3))
    with pytest.raises(DataError) as err:
        load_split(not_a_pack, "train")
    assert str(not_a_pack) in str(err.value)
    assert main(["pack", str(tmp_path / "nowhere"), str(tmp_path / "x.npz")]) == 2
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert len(err_lines) == 1 and err_lines[0].startswith("error: ")
    assert str(tmp_path / "nowhere") in err_lines[0]


def test_evaluation_batches_are_normalised_in_order():
    data = identity_set(10)
    loader = TensorLoader(data, 4, MEAN, STD)
    batches = list(loader)
    assert len(loader) == len(batches) == 3  # the last, partial batch is kept
    x = torch.cat([b for b, _ in batches])
    assert torch.equal(torch.cat([y for _, y in batches]), torch.arange(10))
    assert x.shape == (10, 3, 32, 32) and x.dtype == torch.float32
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    expected = (data.images.permute(0, 3, 1, 2).float() / 255 - mean) / std
    torch.testing.assert_close(x, expected, atol=1e-5, rtol=1e-5)


def test_cifar_constants():
    loader = TensorLoader(identity_set(2), 2, CIFAR10_MEAN, CIFAR10_STD)
    x, _ = next(iter(loader))
    assert torch.equal(pixels(loader, x), identity_set(2).images)


def train_epoch(loader: TensorLoader, epoch: int) -> tuple[Tensor, Tensor]:
    xs, ys = zip(*loader.epoch(epoch), strict=True)
    return torch.cat(xs), torch.cat(ys)


def test_training_batches_are_deterministic_per_seed_and_epoch():
    data = identity_set(24)
    a = TensorLoader(data, 8, MEAN, STD, train=True, seed=5)
    b = TensorLoader(data, 8, MEAN, STD, train=True, seed=5)
    for epoch in (0, 3):
        xa, ya = train_epoch(a, epoch)
        xb, yb = train_epoch(b, epoch)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    x0, y0 = train_epoch(a, 0)
    x1, y1 = train_epoch(a, 1)
    assert not torch.equal(y0, y1)  # another order
    assert not torch.equal(x0[y0.argsort()], x1[y1.argsort()])  # other crops and flips
    other_seed, _ = train_epoch(TensorLoader(data, 8, MEAN, STD, train=True, seed=6), 0)
    assert not torch.equal(other_seed, x0)
    assert torch.equal(next(iter(a))[0], next(a.epoch(0))[0])


def test_training_batches_are_crops_of_the_zero_padded_images():
    data = identity_set(24)
    loader = TensorLoader(data, 8, MEAN, STD, train=True, seed=1)
    windows = []
    for epoch in range(2):
        x, y = train_epoch(loader, epoch)
        assert sorted(y.tolist()) == list(range(24))  # each image once per epoch
        for crop, i in zip(pixels(loader, x), y.tolist(), strict=True):
            found = crop_of(data.images[i], crop)
            assert found, f"epoch {epoch}: batch element from image {i} is no crop of it"
            windows.append(found[0])
    # The augmentation really happens: varied offsets, both orientations, some padding.
    assert len({(r, c) for r, c, _ in windows}) > 10
    assert {flip for _, _, flip in windows} == {False, True}
    assert any((r, c) != (4, 4) for r, c, _ in windows)


def test_a_partial_last_training_batch_is_dropped():
    loader = TensorLoader(identity_set(27), 8, MEAN, STD, train=True)
    _, y = train_epoch(loader, 0)
    assert len(loader) == 3 and len(y) == 24 and len(set(y.tolist())) == 24


@pytest.mark.parametrize("n", [24, 27])
def test_ranks_take_disjoint_shares_that_cover_the_epoch(n):
    data = identity_set(n)
    shards = []
    for rank in (0, 1):
        loader = TensorLoader(data, 4, MEAN, STD, train=True, seed=2, rank=rank, world=2)
        x, y = train_epoch(loader, epoch=1)
        assert len(loader) == 3  # both ranks run the same number of steps
        assert all(len(b) == 4 for _, b in loader.epoch(1))
        for crop, i in zip(pixels(loader, x), y.tolist(), strict=True):
            assert crop_of(data.images[i], crop)
        shards.append(set(y.tolist()))
    assert not shards[0] & shards[1]
    assert len(shards[0] | shards[1]) == 24  # everything the global batch of 8 can hold
    # The same images as a single process taking global batches of 8 would see.
    _, single = train_epoch(TensorLoader(data, 8, MEAN, STD, train=True, seed=2), epoch=1)
    assert shards[0] | shards[1] == set(single.tolist())


def test_evaluation_shards_cover_everything():
    data = identity_set(11)
    seen = [torch.cat([y for _, y in TensorLoader(data, 4, MEAN, STD, rank=r, world=2)])
            for r in (0, 1)]
    assert sorted(torch.cat(seen).tolist()) == list(range(11))


# The decoded-data cache and the default dataset.

@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private cache folder, used for sets of any size."""
    monkeypatch.setenv("CONVATTN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(data_module, "CACHE_MIN_IMAGES", 0)
    return tmp_path / "cache" / "decoded"


def no_decoding(monkeypatch):
    monkeypatch.setattr(data_module, "_decode",
                        lambda *a, **k: pytest.fail("decoded an image the cache holds"))


def assert_same_set(a: ImageSet, b: ImageSet) -> None:
    np.testing.assert_array_equal(a.images, b.images)
    assert a.images.dtype == b.images.dtype == np.uint8
    assert a.labels.dtype == b.labels.dtype == np.int64
    np.testing.assert_array_equal(a.labels, b.labels)
    assert (a.classes, a.names) == (b.classes, b.names)


def test_a_decoded_folder_is_read_back_from_the_cache(tmp_path, cache, monkeypatch):
    root = make_image_folder(tmp_path / "d")
    first = load_split(root, "train")
    assert len(list(cache.glob("*.npz"))) == 1  # one file per folder and split
    load_split(root, "test")
    assert len(list(cache.glob("*.npz"))) == 2
    with monkeypatch.context() as m:
        no_decoding(m)
        assert_same_set(load_split(root, "train"), first)


def test_a_changed_file_is_decoded_again(tmp_path, cache):
    root = make_image_folder(tmp_path / "d")
    before = load_split(root, "train")
    changed = root / before.names[5]
    Image.fromarray(np.full((32, 32, 3), 7, np.uint8)).save(changed)
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    after = load_split(root, "train")
    assert (after.images[5] == 7).all() and not (before.images[5] == 7).all()
    assert len(list(cache.glob("*.npz"))) == 1  # replaced, not added to
    (root / before.names[0]).unlink()  # a file fewer
    assert load_split(root, "train").names == before.names[1:]


@pytest.mark.parametrize("damage", [b"", b"not an npz at all", b"PK\x03\x04truncated"])
def test_a_corrupt_cache_is_ignored_and_rebuilt(tmp_path, cache, damage):
    root = make_image_folder(tmp_path / "d")
    good = load_split(root, "train")
    (cached,) = cache.glob("*.npz")
    cached.write_bytes(damage)
    assert_same_set(load_split(root, "train"), good)
    with np.load(cached) as f:  # rewritten whole
        np.testing.assert_array_equal(f["images"], good.images)


def test_an_unwritable_cache_still_loads(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("the cache folder cannot be made under a file")
    monkeypatch.setenv("CONVATTN_CACHE", str(blocker / "cache"))
    monkeypatch.setattr(data_module, "CACHE_MIN_IMAGES", 0)
    root = make_image_folder(tmp_path / "d")
    with pytest.warns(UserWarning, match="the decoded images were not cached"):
        data = load_split(root, "train")
    assert len(data) == TRAIN_PER_CLASS * len(TINY_CLASSES)


def test_a_pack_is_cached_too(tiny_folder, tmp_path, cache, monkeypatch):
    pack = pack_folder(tiny_folder, tmp_path / "tiny.npz")
    first = load_split(pack, "test")
    with monkeypatch.context() as m:
        no_decoding(m)
        assert_same_set(load_split(pack, "test"), first)
    assert_same_set(first, load_split(tiny_folder, "test"))


def test_small_sets_are_not_cached(tiny_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("CONVATTN_CACHE", str(tmp_path / "cache"))
    assert data_module.CACHE_MIN_IMAGES > TRAIN_PER_CLASS * len(TINY_CLASSES)
    load_split(tiny_folder, "train")
    assert not (tmp_path / "cache").exists()


def test_where_the_cache_and_the_default_data_are(tmp_path, monkeypatch):
    for var in ("CONVATTN_CACHE", "XDG_CACHE_HOME", "CONVATTN_DATA"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "convattn"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "convattn"
    monkeypatch.setenv("CONVATTN_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    assert default_data() == tmp_path / "mine" / "cifar10"
    monkeypatch.setenv("CONVATTN_DATA", str(tmp_path / "c10"))
    assert default_data() == tmp_path / "c10"


def test_resolve_data(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVATTN_CACHE", str(tmp_path))
    monkeypatch.delenv("CONVATTN_DATA", raising=False)
    assert resolve_data("given/folder") == "given/folder"
    with pytest.raises(DataError, match="--download") as err:
        resolve_data("")
    assert str(tmp_path / "cifar10") in str(err.value)
    assert resolve_data("", download=True) == str(tmp_path / "cifar10")
    (tmp_path / "cifar10").mkdir()
    assert resolve_data("") == str(tmp_path / "cifar10")


def test_download_fetches_into_the_default_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CONVATTN_CACHE", str(tmp_path))
    monkeypatch.delenv("CONVATTN_DATA", raising=False)
    calls = []

    def fake_load(root, split, download=False):
        calls.append((root, split, download))
        return identity_set(5 if split == "train" else 2)

    monkeypatch.setattr(data_cli, "load_split", fake_load)
    assert main(["download"]) == 0
    root = str(tmp_path / "cifar10")
    assert calls == [(root, "train", True), (root, "test", True)]
    assert capsys.readouterr().out == f"CIFAR-10 is in {root} (5 train, 2 test images)\n"


def test_an_offline_download_is_one_sentence_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    """The CLIs' download goes through the same safe download as the app's button."""
    import socket
    import urllib.error

    import torchvision.datasets.cifar

    def offline(url, root, filename, md5):  # as torchvision fails without a network
        Path(root).mkdir(parents=True, exist_ok=True)
        (Path(root) / filename).write_bytes(b"\x1f\x8b partial")
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", offline)
    target = tmp_path / "new" / "cifar10"
    assert main(["download", str(target)]) == 2
    assert capsys.readouterr().err == (
        "error: Could not download CIFAR-10: no internet connection (www.cs.toronto.edu "
        "cannot be reached). Nothing was written.\n")
    assert not (tmp_path / "new").exists()


def test_sample_names_the_bundled_training_and_test_samples():
    """--data sample: 2,000 training images (200 per class) and the app's 1,000 test
    images, bundled with the package, so every command runs with no dataset."""
    train, test = load_split("sample", "train"), load_split("sample", "test")
    assert train.images.shape == (2000, 32, 32, 3) and train.images.dtype == np.uint8
    assert np.bincount(train.labels).tolist() == [200] * 10
    assert train.classes == list(data_module.CIFAR10_CLASSES) == test.classes
    assert train.names[0] == "train/airplane/0000.jpg"
    assert train.names[-1] == "train/truck/0199.jpg"
    assert all(n.startswith("train/") for n in train.names)
    assert not set(train.names) & set(test.names)
    assert train.images.std() > 40  # real photographs, not a blank placeholder
    # The test half is the bundled sample the app opens on.
    sample = load_sample()
    assert np.array_equal(test.images, sample.images) and test.names == sample.names
    assert np.bincount(test.labels).tolist() == [100] * 10
    assert (test.key, train.key) == ("sample", "sample:train")
    assert train.title == "bundled sample: 2,000 train images (200 per class)"


def test_sample_is_the_word_and_a_folder_named_sample_is_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_image_folder(tmp_path / "sample")
    assert len(load_split("./sample", "train")) == 3 * TRAIN_PER_CLASS
    assert len(load_split(Path("sample"), "train")) == 3 * TRAIN_PER_CLASS
    assert len(load_split("sample", "train")) == 2000
    # --download has nothing to fetch for the bundled samples (and nothing is fetched).
    assert len(load_split("sample", "test", download=True)) == 1000
    assert list((tmp_path / "sample").iterdir()) != []  # untouched
    monkeypatch.setenv("CONVATTN_DATA", "sample")
    assert resolve_data("") == "sample"


def test_make_sample_decodes_as_load_split_does(tiny_folder, tmp_path):
    from scripts.make_sample import make_sample

    out = make_sample(tiny_folder, tmp_path / "s.npz", per_class=3, split="train")
    made = load_sample(out)
    full = load_split(tiny_folder, "train")
    first = [i for c in range(3) for i in np.flatnonzero(full.labels == c)[:3]]
    assert made.names == [full.names[i] for i in first]
    assert np.array_equal(made.images, full.images[first])
    assert made.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert made.classes == sorted(TINY_CLASSES)
    assert made.title == "bundled sample: 9 train images (3 per class)"
    with pytest.raises(SystemExit, match="fewer than 9 images in cat, dog, frog"):
        make_sample(tiny_folder, tmp_path / "t.npz", per_class=9, split="train")

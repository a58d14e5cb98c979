"""The app on a model card: the operator names it (``--model``, $CONVATTN_MODEL), the
sidebar opens it first, image folders of any size are read at its size and mapped onto its
classes, uploads are fitted to it, and the pages 3, 4, 5, 7 and 10 work on it or say in
one sentence why they cannot. The card and its images are written here (``cardkit``)."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from apprun import open_page
from cardkit import CLASSES, write_card, write_folder
from PIL import Image

from appkit import gallery, loaded_model
from appkit.roots import named_model
from convattn.errors import DataError
from convattn.files import data as data_module
from convattn.files.card import open_model
from convattn.files.checkpoint import CheckpointError
from convattn.files.data import load_split
from convattn.files.images import _fit, as_grey, decode_image
from convattn.files.info import normalise

MIS, ABL, LIE = "4_Misclassifications.py", "5_Ablation.py", "7_Likely_label_errors.py"
GUESS, TRAIN = "3_Predict_then_reveal.py", "10_Training.py"


# The operator names the model: flags and environment.
@pytest.mark.parametrize("argv, env, expected", [
    (["--model", "a.toml"], {}, "a.toml"),
    (["--model=b.toml", "--data-root", "/x"], {}, "b.toml"),
    (["--model", "a.toml", "--model", "c.toml"], {"CONVATTN_MODEL": "e.toml"}, "c.toml"),
    ([], {"CONVATTN_MODEL": "e.toml"}, "e.toml"),
    (["--data-root", "/x"], {"CONVATTN_MODEL": "  "}, None),
    (["--model"], {}, None),  # a flag with no value names nothing
])
def test_named_model(argv, env, expected):
    found = named_model(argv, env)
    assert (str(found) if found else None) == expected


@pytest.fixture
def card(tmp_path, monkeypatch) -> Path:
    path = write_card(tmp_path / "model")
    monkeypatch.setenv("CONVATTN_MODEL", str(path))
    monkeypatch.delenv("CONVATTN_CHECKPOINT", raising=False)
    return path


def test_card_is_listed_first_and_loads(card):
    options = loaded_model.checkpoint_options()
    assert options[0] == str(card)
    assert any(o.endswith("seed.pt") for o in options[1:])  # the shipped ones stay
    loaded = loaded_model.load(str(card))
    assert loaded.is_card and loaded.name == "card.toml"
    assert loaded.classes == list(CLASSES)
    assert loaded_model.checkpoint_label(str(card)) == "card.toml (model card)"
    pixels = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    model, info = open_model(card)
    with torch.no_grad():
        assert torch.equal(loaded.model(loaded.inputs(pixels)), model(info.prepare(pixels)))
    # A card has no twin or partner in the registry, and no predictions file.
    assert loaded_model.twin_checkpoint(str(card), options) is None


def test_cache_key_changes_with_the_weights(card):
    first = loaded_model.load(str(card))
    assert loaded_model.load(str(card)) is not first  # a new Loaded, the same model...
    assert loaded_model.load(str(card)).model is first.model  # ...from the cache
    state = {k: v + 1 if v.is_floating_point() else v
             for k, v in torch.load(card.parent / "net.pt").items()}
    torch.save(state, card.parent / "net.pt")
    later = time.time() + 5
    os.utime(card.parent / "net.pt", (later, later))
    second = loaded_model.load(str(card))
    assert second.key != first.key and second.model is not first.model
    assert torch.equal(second.model.head[2].bias, state["head.2.bias"])


def test_broken_card_is_one_sentence(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('factory = "net.py:build"\n')
    with pytest.raises(CheckpointError) as e:
        loaded_model.load(str(bad))
    assert str(e.value).endswith("(a card needs factory, weights, classes, image_size, "
                                 "mean, std).")
    assert "\n" not in str(e.value)


def test_a_folder_or_missing_file_named_as_the_model_is_one_sentence(tmp_path):
    with pytest.raises(CheckpointError, match=r"is a folder, not a checkpoint \(\.pt\) or "
                                              r"model card \(\.toml\)\.$"):
        loaded_model.load(str(tmp_path))
    with pytest.raises(CheckpointError, match=r"nope\.toml does not exist\.$"):
        loaded_model.load(str(tmp_path / "nope.toml"))


# Image folders at the card's size.
def _reference(path: Path, size: tuple[int, int]) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB").resize((size[1], size[0]),
                                                   Image.Resampling.LANCZOS,
                                                   reducing_gap=3.0))


@pytest.mark.parametrize("split", ["test", None])
@pytest.mark.parametrize("size", [(64, 64), (48, 80)])
def test_folder_read_at_the_cards_size(tmp_path, split, size):
    root = write_folder(tmp_path / "data", size=(50, 70), split=split)
    found = load_split(root, "test", size=size)
    assert found.images.shape == (len(CLASSES) * 2, *size, 3)
    assert found.classes == sorted(CLASSES)
    first = root / (split or "") / "ant" / "0000.png"
    assert found.names[0] == str(first.relative_to(root))
    assert np.array_equal(found.images[0], _reference(first, size))
    # As the card's prepare fits the same file.
    assert np.array_equal(found.images[0], np.asarray(_fit(Image.open(first).convert("RGB"),
                                                          size, "resize")))


def test_decoded_cache_keys_on_size(tmp_path, monkeypatch):
    monkeypatch.setattr(data_module, "CACHE_MIN_IMAGES", 1)
    root = write_folder(tmp_path / "data", size=(40, 40))
    small = load_split(root, "test")
    large = load_split(root, "test", size=64)
    assert small.images.shape[1:3] == (32, 32) and large.images.shape[1:3] == (64, 64)
    assert len(list((data_module.cache_dir() / "decoded").glob("*.npz"))) == 2
    again = load_split(root, "test", size=64)  # read back from the cache
    assert np.array_equal(again.images, large.images)


def test_class_folders_map_onto_the_cards_classes(tmp_path):
    root = write_folder(tmp_path / "data", classes=("elk", "ant"), size=(64, 64))
    found = load_split(root, "test", size=64)
    assert found.classes == ["ant", "elk"]
    mapped = found.onto(CLASSES)
    assert mapped.classes == list(CLASSES)
    names = [CLASSES[i] for i in mapped.labels]
    assert names == [n.split("/")[1] for n in found.names]  # each image keeps its class
    assert found.onto(["ant", "elk"]) is found
    with pytest.raises(DataError) as e:
        found.onto(["ant", "bee"])
    assert str(e.value) == ("the class folder 'elk' of these images is not one of the "
                            "model's 2 classes (ant, bee).")


def test_upload_fitted_to_the_cards_size_and_grey():
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    out = decode_image(buf.getvalue(), "x.png", (48, 80), "resize")
    assert out.pixels.shape == (48, 80, 3)
    assert np.array_equal(out.pixels, np.asarray(Image.fromarray(pixels).resize(
        (80, 48), Image.Resampling.LANCZOS, reducing_gap=3.0)))
    assert out.describe("resize") == "PNG 120x90 (RGB), squashed to 80:48 (its aspect was " \
                                     "1.33 to 1) and resized to 80x48"
    grey = as_grey(out.pixels)
    expected = np.asarray(Image.fromarray(out.pixels).convert("L"))
    assert np.array_equal(grey[..., 0], expected) and np.array_equal(grey[..., 2], expected)
    # A grey network sees the grey image exactly as it sees the colour one.
    assert torch.equal(normalise(grey, [0.5], [0.25]), normalise(out.pixels, [0.5], [0.25]))


# Readable at 100 classes.
def test_confusion_focus_and_worst_classes():
    k = 100
    counts = np.diag(np.full(k, 5))
    counts[3, 70] = 4  # 3 taken for 70
    counts[42, 7] = 2
    shown = gallery.focus(counts, n=4)
    assert list(shown) == [3, 7, 42, 70]
    assert list(gallery.focus(counts[:4, :4])) == [0, 1, 2, 3]
    per_class = np.linspace(100, 0, k)
    present = np.ones(k, dtype=bool)
    present[-1] = False
    assert list(gallery.worst(per_class, present, n=3)) == [96, 97, 98]
    assert gallery.thumbnail(np.zeros((224, 224, 3), np.uint8)).shape == (96, 96, 3)
    assert gallery.thumbnail(np.zeros((32, 32, 3), np.uint8)).shape == (96, 96, 3)
    assert gallery.thumbnail(np.zeros((20, 40, 3), np.uint8)).shape == (40, 80, 3)


# The pages on a 5-class 64x64 card.
@pytest.fixture
def served(tmp_path, monkeypatch) -> Path:
    card = write_card(tmp_path / "model")
    folder = write_folder(tmp_path / "data", size=(80, 80), per_class=3)
    monkeypatch.setenv("CONVATTN_MODEL", str(card))
    monkeypatch.setenv("CONVATTN_DATA", str(folder))
    monkeypatch.delenv("CONVATTN_CHECKPOINT", raising=False)
    return card


def _ok(at) -> None:
    assert not at.exception, [e.message for e in at.exception]


def _probs(card: Path, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    model, info = open_model(card)
    images = load_split(folder, "test", size=info.image_size).onto(info.classes)
    with torch.no_grad():
        probs = model(info.prepare(images.images)).softmax(1).numpy()
    return probs, images.labels


def test_misclassifications_on_a_card(served):
    at = open_page(MIS)
    _ok(at)
    assert at.selectbox(key="checkpoint").value == str(served)
    probs, labels = _probs(served, Path(os.environ["CONVATTN_DATA"]))
    right = int((probs.argmax(1) == labels).sum())
    assert any(f"holds the {right:,} correct answers" in c.value for c in at.caption)
    assert at.selectbox(key="mis_true").options == ["any class", *CLASSES]
    assert "64x64 RGB images" in " ".join(m.value for m in at.markdown)


def test_ablation_on_a_card_says_why(served):
    at = open_page(ABL)
    _ok(at)
    assert [i.value for i in at.info] == [
        "Module attn of card\\.toml has no γ that convattn can set: its attention is read "
        "from your code, not switched off in it, so ablation works on convattn's own "
        "attention modules only."]


def test_label_errors_on_a_card(served):
    at = open_page(LIE)
    _ok(at)
    assert at.selectbox(key="lie_class").options == ["any class", *CLASSES]
    assert any("images** as likely mislabelled" in m.value or "of the 15 images" in m.value
               for m in at.markdown)


def test_training_on_a_card_says_why(served):
    at = open_page(TRAIN)
    _ok(at)
    assert at.info[0].value.startswith("card\\.toml is a model card: this page shows the "
                                       "training of convattn's own networks only")
    assert str(served) not in at.multiselect(key="train_checkpoints").options


def test_predict_then_reveal_on_a_card(served):
    at = open_page(GUESS)
    _ok(at)
    assert at.slider(key="guess_radius").max == 16  # 64-pixel images: a quarter of a side
    assert any("Image 1 of 5" in m.value for m in at.markdown)


def test_folder_of_other_classes_says_which(served, tmp_path, monkeypatch):
    other = write_folder(tmp_path / "other", classes=("ant", "yak"), size=(64, 64))
    monkeypatch.setenv("CONVATTN_DATA", str(other))
    at = open_page(MIS)
    _ok(at)
    sentence = ("The class folder 'yak' of these images is not one of the model's 5 classes "
                "(ant, bee, cow, dog, elk).")
    warned = [w.value.replace("\\", "") for w in at.sidebar.warning]
    assert warned == [f"{sentence} Their true classes mean nothing to this model."]
    assert [e.value.replace("\\", "") for e in at.error] == [sentence]  # the page stops


def test_broken_card_in_the_sidebar_keeps_the_shipped_ones(tmp_path, monkeypatch):
    bad = tmp_path / "bad.toml"
    bad.write_text("factory = 3\n")
    monkeypatch.setenv("CONVATTN_MODEL", str(bad))
    monkeypatch.delenv("CONVATTN_CHECKPOINT", raising=False)
    at = open_page(MIS)
    _ok(at)
    assert at.sidebar.error[0].value.replace("\\", "").endswith(
        "the key 'weights' is missing (a card needs factory, weights, classes, image_size, "
        "mean, std).")
    assert any(o.endswith("seed.pt") for o in at.selectbox(key="checkpoint").options)


def test_grey_card_end_to_end(tmp_path, monkeypatch):
    card = write_card(tmp_path / "model", grey=True, size=(48, 64))
    folder = write_folder(tmp_path / "data", size=(60, 60), split=None)
    monkeypatch.setenv("CONVATTN_MODEL", str(card))
    monkeypatch.setenv("CONVATTN_DATA", str(folder))
    monkeypatch.delenv("CONVATTN_CHECKPOINT", raising=False)
    at = open_page(MIS)
    _ok(at)
    probs, labels = _probs(card, folder)
    right = int((probs.argmax(1) == labels).sum())
    assert any(f"holds the {right:,} correct answers" in c.value for c in at.caption)
    assert "48x64 grey images" in " ".join(m.value for m in at.markdown)
    # The folder's images are shown grey too, as the network sees them (the answers above
    # come from the colour files: the same input to a grey network).
    shown_set = at.session_state["shared_sidebar"].images
    colour = load_split(folder, "test", size=(48, 64))
    assert shown_set.key.endswith("~grey") or "~grey>" in shown_set.key
    np.testing.assert_array_equal(shown_set.images, as_grey(colour.images))
    assert not np.array_equal(colour.images[..., 0], colour.images[..., 1])
    # An upload is fitted to 64 wide, 48 high, and shown grey.
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 30, 3), np.uint8)
                    ).save(buf, format="PNG")
    at = open_page(ABL, kept_upload=("x.png", buf.getvalue()), source="Upload")
    _ok(at)
    assert at.sidebar.radio(key="fit").label == "Fit to 64x48"
    shown = at.session_state["shared_sidebar"].selection.pixels
    expected = np.asarray(Image.open(buf).convert("RGB").resize(
        (64, 48), Image.Resampling.LANCZOS, reducing_gap=3.0).convert("L"))
    assert shown.shape == (48, 64, 3) and np.array_equal(shown[..., 1], expected)


def test_misclassifications_readable_at_100_classes(tmp_path, monkeypatch):
    import json

    classes = tuple(f"c{i:03d}" for i in range(100))
    card = write_card(tmp_path / "model", classes=classes)
    folder = write_folder(tmp_path / "data", classes=classes[:30], size=(64, 64),
                          per_class=1)
    monkeypatch.setenv("CONVATTN_MODEL", str(card))
    monkeypatch.setenv("CONVATTN_DATA", str(folder))
    monkeypatch.delenv("CONVATTN_CHECKPOINT", raising=False)
    at = open_page(MIS)
    _ok(at)
    charts = {c.proto.id: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    matrix = next(s for s in charts.values() if s["data"][0]["type"] == "heatmap")
    probs, labels = _probs(card, folder)
    counts = gallery.confusion(labels, probs.argmax(1), 100)
    shown = [classes[i] for i in gallery.focus(counts)]
    assert matrix["data"][0]["x"] == shown and len(shown) == 20
    assert any("Of the 100 classes, the 20 most confused are shown." in c.value
               for c in at.caption)
    bars = next(s for s in charts.values() if s["data"][0].get("orientation") == "h")
    assert len(bars["data"][0]["y"]) == 20  # the 20 least accurate of the 30 with images


def test_guess_scored_in_the_cards_pixels():
    from convattn.readout.lens import guess_score

    row = np.random.default_rng(0).random((16, 16))
    row /= row.sum()
    # 64x64 pixels over 16x16 cells of 4x4: the disc of radius 2 around pixel (10, 10)
    # (centre 10.5, 10.5) holds only the centre (10, 10) of cell (2, 2).
    s = guess_score(row, (10, 10), 2, (64, 64))
    assert s.cells == 1 and s.mass == pytest.approx(row[2, 2]) and s.uniform == 1 / 256
    # Radius 6 reaches the neighbours' centres at 3.5 to 5.7 pixels, but not cell (1, 1)'s
    # at (6, 6), 6.36 pixels away.
    s = guess_score(row, (10, 10), 6, (64, 64))
    assert s.cells == 8 and s.mass == pytest.approx(row[1:4, 1:4].sum() - row[1, 1])


def test_train_folder_of_a_set_read_at_a_cards_size(tmp_path):
    from appkit import sources

    root = write_folder(tmp_path / "data", size=(64, 64))
    write_folder(root, size=(64, 64), split="train")
    images = sources.load_test_set(str(root), (64, 64))
    assert images.key == f"folder:{root.resolve()}@64x64"
    mapped = images.onto(CLASSES[::-1])
    assert mapped.key.startswith(images.key + ">classes:")
    assert sources.train_folder(mapped) == str(root.resolve())
    assert sources.load_train_set(str(root), (64, 64)).images.shape[1:3] == (64, 64)
    grey = sources.load_test_set(str(root), (64, 64), True).onto(CLASSES[::-1])  # grey card
    assert grey.key.startswith(f"folder:{root.resolve()}@64x64~grey>classes:")
    assert sources.train_folder(grey) == str(root.resolve())

"""The Inspect page (app_pages/0_Inspect.py, the router's default) through Streamlit's
AppTest, on checkpoints made here."""

from __future__ import annotations

import io
import math
import re
import urllib.error
from pathlib import Path

import matplotlib.text
import numpy as np
import pagedata
import pytest
import torch
from apprun import APP, INSPECT, captions, switch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image
from streamlit.testing.v1 import AppTest

from appkit import downloads, loaded_model, markdown, pictures, sources
from appkit.sidebar.upload import KEPT_UPLOAD
from convattn.errors import DataError
from convattn.files.checkpoint import (
    CheckpointError,
    load_checkpoint,
    make_checkpoint,
    save_checkpoint,
)
from convattn.files.data import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD
from convattn.files.download import download_cifar10
from convattn.files.images import decode_image
from convattn.files.shipped import sample_path
from convattn.nn.models import create_model
from convattn.readout import analysis
from convattn.readout.attention import query_row


def _checkpoint(path: Path, arch: str = "seed") -> Path:
    return pagedata.checkpoint(path, arch, accuracies=(12.5,))


@pytest.fixture
def seed_ckpt(tmp_path, monkeypatch) -> Path:
    path = _checkpoint(tmp_path / "tiny-seed.pt")
    monkeypatch.setenv("CONVATTN_CHECKPOINT", str(path))
    monkeypatch.setenv("CONVATTN_CHECKPOINTS", str(tmp_path / "none"))
    monkeypatch.delenv("CONVATTN_DATA", raising=False)
    return path


def _run(methods: list[str] | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    if methods is not None:
        at.session_state["methods"] = methods
    return at.run()


def _no_exception(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


def _number(at: AppTest, label: str):
    """A number input by the start of its label (its key changes when code sets it)."""
    (widget,) = [n for n in at.number_input if n.label.startswith(label)]
    return widget


def _query_caption(at: AppTest) -> str:
    (caption,) = [c for c in captions(at) if "attends most to" in c]
    return caption


def test_page_shows_prediction_attention_gamma_and_attributions(seed_ckpt):
    at = _run()
    _no_exception(at)
    assert not at.error
    assert at.selectbox(key="checkpoint").value == str(seed_ckpt)
    assert at.radio(key="source").value == "Test images"
    assert _number(at, "Image number").value == 0
    assert _number(at, "Query row").value == 16
    assert _number(at, "Query column").value == 16
    assert at.multiselect(key="methods").value == ["saliency", "integrated_gradients",
                                                   "gradcam"]
    assert {b.label for b in at.get("download_button")} >= {"Figure (PNG)", "Arrays (.npz)"}
    sidebar = " ".join(m.value for m in at.sidebar.markdown)
    # Two decimals, as every page prints a checkpoint's accuracy (78.73%, not 78.7%).
    assert "12.50% test accuracy" in sidebar and "CPU" in sidebar
    # The verdict names the model's real top class for the first sample image (an airplane).
    model, info = load_checkpoint(seed_ckpt)
    pixels = np.load(sample_path())["images"][0]
    probs = analysis.analyse(model, pixels, info["mean"], info["std"]).probs
    verdict = " ".join(m.value for m in at.markdown if "Correct" in m.value or "Wrong" in m.value)
    assert f"**{CIFAR10_CLASSES[int(probs.argmax())]}**" in verdict
    (gamma,) = [m.value for m in at.markdown if m.value.startswith("| module |")]
    cells = gamma.splitlines()[2].strip("| ").split(" | ")  # the first module's row
    assert cells[:3] == ["attention", "32x32", r"0\.500"]  # γ as the checkpoint holds it


def test_changing_the_query_changes_the_row_shown(seed_ckpt):
    at = _run(methods=[])
    _no_exception(at)
    first = _query_caption(at)
    _number(at, "Query row").set_value(3)
    _number(at, "Query column").set_value(25)
    at.run()
    _no_exception(at)
    second = _query_caption(at)
    assert second != first and "Query at row 3, column 25" in second
    # The strongest weight shown is the library's own attention row for that query.
    model, info = load_checkpoint(seed_ckpt)
    x = analysis.normalise(np.load(sample_path())["images"][0], info["mean"], info["std"])
    row = query_row(model, x, "attention", 3 * 32 + 25)[0]  # (N,)
    r, c = divmod(int(row.argmax()), 32)
    assert f"row {r}, column {c}, weight {float(row.max()):.4f}" in second
    assert abs(float(row.sum()) - 1) < 1e-5


def test_coarse_module_maps_the_pixel_to_its_cell(tmp_path, monkeypatch):
    path = _checkpoint(tmp_path / "tiny-resnet9.pt", arch="resnet9-attn")
    monkeypatch.setenv("CONVATTN_CHECKPOINT", str(path))
    monkeypatch.setenv("CONVATTN_CHECKPOINTS", str(tmp_path / "none"))
    at = _run(methods=["saliency"])
    _no_exception(at)
    assert at.selectbox(key="module").options == ["attn1 (16x16 positions)",
                                                  "attn2 (8x8 positions)"]
    at.selectbox(key="module").set_value("attn2")
    _number(at, "Query row").set_value(13)
    _number(at, "Query column").set_value(30)
    at.run()
    _no_exception(at)
    assert "(cell 3, 7 of 8x8)" in _query_caption(at)  # 13 * 8 // 32, 30 * 8 // 32


def test_next_wrong_uses_the_shipped_predictions(seed_ckpt):
    sample = np.load(sample_path())
    names, labels = sample["names"], sample["labels"]
    probs = np.eye(10, dtype=np.float16)[labels]
    for i in (5, 17):  # the only two mistakes
        probs[i] = np.eye(10, dtype=np.float16)[(labels[i] + 1) % 10]
    np.savez_compressed(seed_ckpt.with_name("tiny-seed.predictions.npz"),
                        index=np.arange(len(names)), names=names, labels=labels, probs=probs,
                        classes=np.array(CIFAR10_CLASSES), source=np.array("test"))
    at = _run(methods=[])
    _no_exception(at)
    stats = " ".join(c.value for c in at.sidebar.caption)
    assert "**99.80%** correct" in stats
    assert "counts within this list" not in stats  # the whole set: number and # agree
    at.button(key="next_wrong").click().run()
    assert _number(at, "Image number").value == 5
    at.button(key="next_wrong").click().run()
    assert _number(at, "Image number").value == 17
    at.checkbox(key="only_wrong").check().run()
    _no_exception(at)
    assert _number(at, "Image number").max == 1  # two misclassified images
    # The image shown (#17) stays shown: it is the second of the filtered list.
    assert _number(at, "Image number").value == 1
    (where,) = [c.value for c in at.sidebar.caption if "counts within this list" in c.value]
    assert where == ("Image number 1 counts within this list of 2 images; in the whole set "
                     "it is #17.")
    at.button(key="next_wrong").click().run()
    assert _number(at, "Image number").value == 0  # #5, the other one
    at.checkbox(key="only_wrong").uncheck().run()
    assert _number(at, "Image number").value == 5  # still #5, now in the whole set
    at.selectbox(key="class_filter").set_value("truck").run()
    assert _number(at, "Image number").value == 0  # #5 is no truck: the list's first


def test_full_test_set_from_a_folder(seed_ckpt, tmp_path, monkeypatch):
    root = tmp_path / "cifar"
    for c, cls in enumerate(CIFAR10_CLASSES):
        (root / "test" / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (32, 32), (25 * c, 10 * i, 0)).save(root / "test" / cls / f"{i}.png")
    monkeypatch.setenv("CONVATTN_DATA", str(root))
    at = _run(methods=[])
    _no_exception(at)
    assert any("20 images" in c.value for c in at.sidebar.caption)
    at.selectbox(key="class_filter").set_value("frog").run()
    _no_exception(at)
    assert any(markdown.literal("test/frog/0.png") in c.value for c in at.caption)


def test_a_new_data_folder_is_an_offer_to_download_not_an_error(seed_ckpt, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setenv("CONVATTN_DATA", str(tmp_path / "nowhere"))
    at = _run(methods=[])
    _no_exception(at)
    assert not at.sidebar.error
    (offer,) = at.sidebar.info
    assert offer.value == (f"{markdown.literal(tmp_path / 'nowhere')} does not exist yet: "
                           "download CIFAR-10 (170 MB) into it?")
    assert not at.button(key="download").disabled
    assert any("bundled sample" in c.value for c in at.sidebar.caption)


def _offline(monkeypatch) -> list[Path]:
    """torchvision's CIFAR-10 download, as it fails without a network: it makes the
    folder, starts the archive, then urllib cannot resolve the host. Returns the folders
    it was asked to download into."""
    import socket

    import torchvision.datasets.cifar

    asked = []

    def download(url, root, filename, md5):
        asked.append(Path(root))
        Path(root).mkdir(parents=True, exist_ok=True)
        (Path(root) / filename).write_bytes(b"\x1f\x8b partial")
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", download)
    return asked


OFFLINE = ("Could not download CIFAR-10: no internet connection (www.cs.toronto.edu cannot "
           "be reached). Nothing was written.")


def test_download_works_without_typing_a_folder_and_offline_leaves_nothing(
        seed_ckpt, tmp_path, monkeypatch):
    cache = tmp_path / "cache"  # does not exist yet: the download would make it
    monkeypatch.setenv("CONVATTN_CACHE", str(cache))
    asked = _offline(monkeypatch)
    at = _run(methods=[])
    assert at.selectbox(key="data_folder").value == ""
    assert any(f"into {markdown.literal(cache / 'cifar10')}" in c.value for c in at.sidebar.caption)
    at.button(key="download").click().run()
    _no_exception(at)
    assert asked == [cache / "cifar10"]
    (error,) = at.sidebar.error
    assert error.value == markdown.literal(OFFLINE)
    assert not cache.exists()  # neither the folder nor the partial archive is left
    assert at.selectbox(key="data_folder").value == ""  # nothing the user chose is lost
    assert any("bundled sample" in c.value for c in at.sidebar.caption)


def test_offline_download_into_an_existing_folder_removes_only_its_own_files(
        seed_ckpt, tmp_path, monkeypatch):
    folder = tmp_path / "mine"  # the operator's $CONVATTN_DATA: where the download goes
    folder.mkdir()
    (folder / "notes.txt").write_text("the operator's own file")
    monkeypatch.setenv("CONVATTN_DATA", str(folder))
    _offline(monkeypatch)
    at = _run(methods=[])
    assert at.selectbox(key="data_folder").value == str(folder)
    assert "is not a dataset folder" in at.sidebar.error[0].value
    at.button(key="download").click().run()
    _no_exception(at)
    assert at.sidebar.error[-1].value == markdown.literal(OFFLINE)
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    assert at.selectbox(key="data_folder").value == str(folder)


def test_download_fills_the_folder_and_uses_it(seed_ckpt, tmp_path, monkeypatch):
    """The download as it succeeds (torchvision's file layout, 20 images, no network)."""
    import pickle

    import torchvision.datasets.cifar
    from torchvision.datasets import CIFAR10

    def download(url, root, filename, md5):
        batches = Path(root) / CIFAR10.base_folder
        batches.mkdir(parents=True)
        images = np.zeros((20, 3072), dtype=np.uint8)
        for name, _ in CIFAR10.train_list + CIFAR10.test_list:
            with open(batches / name, "wb") as f:
                pickle.dump({"data": images, "labels": [i % 10 for i in range(20)]}, f)
        with open(batches / "batches.meta", "wb") as f:
            pickle.dump({"label_names": list(CIFAR10_CLASSES)}, f)

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", download)
    # These files are not the real ones: only their presence is checked.
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity",
                        lambda path, md5=None: Path(path).is_file())
    monkeypatch.setenv("CONVATTN_CACHE", str(tmp_path / "new"))
    folder = (tmp_path / "new" / "cifar10").resolve()  # the cache's: the browser names none
    at = _run(methods=[])
    at.button(key="download").click().run()
    _no_exception(at)
    assert not at.sidebar.error
    assert at.sidebar.success[0].value == "CIFAR-10 is downloaded: 20 test images."
    assert at.selectbox(key="data_folder").value == str(folder)
    assert any(markdown.literal(f"test set in {folder}: 20 images") in c.value
               for c in at.sidebar.caption)


def test_no_checkpoint_at_all_says_how_to_train_one(tmp_path, monkeypatch):
    monkeypatch.delenv("CONVATTN_CHECKPOINT", raising=False)
    monkeypatch.setenv("CONVATTN_CHECKPOINTS", str(tmp_path))
    at = _run()
    _no_exception(at)
    (error,) = at.error
    assert "No checkpoint was found" in error.value and "python -m convattn.train" in error.value


def test_corrupted_checkpoint_is_one_sentence(tmp_path, monkeypatch):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    monkeypatch.setenv("CONVATTN_CHECKPOINT", str(bad))
    monkeypatch.setenv("CONVATTN_CHECKPOINTS", str(tmp_path / "none"))
    at = _run()
    _no_exception(at)
    (error,) = at.error
    assert markdown.literal(bad) in error.value and "cannot be read" in error.value


def _png(mode: str, size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    return buf.getvalue()


def _bomb() -> bytes:
    buf = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buf, format="PNG")  # 100 megapixels, ~12 kB
    return buf.getvalue()


@pytest.mark.parametrize(("name", "data", "message"), [
    ("notes.txt", b"these are notes", "notes.txt is not an image this app can read"),
    ("empty.png", b"", "empty.png is empty"),
    ("bomb.png", _bomb(), "bomb.png is too large to decode safely"),
    ("cut.png", _png("RGB", (64, 64))[:60], "cut.png looks like a PNG image but could not"),
])
def test_bad_uploads_get_one_sentence(seed_ckpt, name, data, message):
    at = _run(methods=[])
    at.radio(key="source").set_value("Upload").run()
    _no_exception(at)
    at.file_uploader(key="upload").upload(name, data, "application/octet-stream")
    at.run()
    _no_exception(at)
    (error,) = at.error
    assert error.value.startswith(markdown.literal(message))
    assert not re.search(r"Traceback|File \"", error.value)


def test_good_upload_is_classified(seed_ckpt):
    at = _run(methods=["saliency"])
    at.radio(key="source").set_value("Upload").run()
    at.selectbox(key="upload_label").set_value("frog")
    at.file_uploader(key="upload").upload("frog.png", _png("RGBA", (300, 200)), "image/png")
    at.run()
    _no_exception(at)
    assert not at.error
    assert any("PNG 300x200 (RGBA), squashed to a square (its aspect was 1.50 to 1) and "
               "resized to 32x32" in c.value for c in at.caption)
    assert any("attends most to" in c for c in captions(at))



FROG = "frog\\.png: PNG 64x48 (RGB)"  # the upload's name escaped, so Markdown shows it as it is


def test_uploaded_image_stays_across_pages_until_removed(seed_ckpt):
    at = _run(methods=[])
    at.radio(key="source").set_value("Upload").run()
    at.file_uploader(key="upload").upload("frog.png", _png("RGB", (64, 48)), "image/png")
    at.run()
    assert any(FROG in c.value for c in at.caption)
    for page in ("1_Compare.py", "2_Learn.py", INSPECT):
        switch(at, page)
        _no_exception(at)
        assert not any(i.value.startswith("Upload an image") for i in at.info), page
        assert any(FROG in c.value for c in at.caption), page
    # A page without the image widgets (Training) empties the uploader; the image stays.
    switch(at, "10_Training.py")
    switch(at, INSPECT)
    assert any("Showing **frog\\.png**, uploaded earlier" in c.value
               for c in at.sidebar.caption)
    assert any(FROG in c.value for c in at.caption)
    # With the uploader empty, a button forgets the image.
    at.button(key="forget_upload").click().run()
    assert any(i.value.startswith("Upload an image") for i in at.info)
    # Removing it from the uploader forgets it too.
    at.file_uploader(key="upload").upload("frog.png", _png("RGB", (64, 48)), "image/png")
    at.run()
    at.file_uploader(key="upload").clear()
    at.run()
    assert any(i.value.startswith("Upload an image") for i in at.info)


@pytest.mark.parametrize(("size", "said", "stretched"), [
    ((4000, 3), "PNG 4000x3 (RGB), squashed to a square (its aspect was 1333.33 to 1)", True),
    ((3, 4000), "PNG 3x4000 (RGB), squashed to a square (its aspect was 1 to 1333.33)", True),
    ((1, 1), "PNG 1x1 (RGB), resized to 32x32", False),
])
def test_an_extreme_upload_is_shown_on_inspect(seed_ckpt, size, said, stretched):
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["methods"] = []
    at.session_state["source"] = "Upload"
    at.session_state[KEPT_UPLOAD] = ("thin.png", _png("RGB", size))
    at.run()
    _no_exception(at)
    assert not at.error
    assert any(said in c.value for c in at.caption)
    (uploaded,) = [i for e in at.get("image") for i in e.proto.imgs
                   if i.caption.startswith("the file as uploaded")]
    assert uploaded.caption.endswith("so that it can be seen") == stretched


@pytest.mark.parametrize(("size", "shown", "stretched"), [
    ((4000, 3), (4, 160), True),  # (height, width) drawn; 0.12 pixels high if faithful
    ((3, 4000), (160, 4), True),
    ((64, 48), (120, 160), False),
    ((1, 1), (160, 160), False),
])
def test_an_uploaded_file_is_drawn_at_least_a_few_pixels_thick(size, shown, stretched):
    original = decode_image(_png("RGB", size)).original
    picture, was_stretched = pictures.fit_box(original, 160)
    assert picture.shape == (*shown, 3) and was_stretched == stretched


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_uploaded_checkpoint_is_listed_selected_and_used(seed_ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("CONVATTN_UPLOADS", str(tmp_path / "uploads"))
    mine = _checkpoint(tmp_path / "made-elsewhere.pt", arch="seed-se").read_bytes()
    at = _run(methods=[])
    at.file_uploader(key="checkpoint_upload").upload("my run.pt", mine, "application/octet-stream")
    at.run()
    _no_exception(at)
    assert not at.error
    chosen = at.selectbox(key="checkpoint")
    assert chosen.options[-1] == "my_run.pt (uploaded)" and chosen.value.endswith("my_run.pt")
    sidebar = " ".join(m.value for m in at.sidebar.markdown)
    assert "**seed-se**" in sidebar
    # The stored file is the upload, byte for byte, and it is what the page runs.
    assert Path(chosen.value).read_bytes() == mine
    assert Path(chosen.value).parent.parent == tmp_path / "uploads"


@pytest.mark.parametrize(("data", "message"), [
    (b"not a checkpoint at all", "notes.pt is a text file, not a checkpoint: a convattn "
                                "checkpoint (.pt, from python -m convattn.train) is expected."),
    ("evil", "notes.pt was refused: it holds Python objects"),
    ("foreign", "notes.pt is a PyTorch file but not a convattn checkpoint."),
    ("truncated", "notes.pt cannot be read: it is truncated or corrupted, as a download or "
                  "copy that stopped early leaves it; copy or download the file again."),
])
def test_bad_checkpoint_upload_gets_one_sentence_and_keeps_the_model(
        seed_ckpt, tmp_path, monkeypatch, capsys, data, message):
    monkeypatch.setenv("CONVATTN_UPLOADS", str(tmp_path / "uploads"))
    kind = data
    if data == "evil":
        buf = io.BytesIO()
        torch.save({"x": _Evil()}, buf)
        data = buf.getvalue()
    elif data == "foreign":
        buf = io.BytesIO()
        torch.save({"weight": torch.zeros(3)}, buf)
        data = buf.getvalue()
    elif data == "truncated":
        whole = _checkpoint(tmp_path / "whole.pt").read_bytes()
        data = whole[: len(whole) // 2]
    at = _run(methods=[])
    at.file_uploader(key="checkpoint_upload").upload("notes.pt", data, "application/octet-stream")
    at.run()
    _no_exception(at)
    (error,) = at.sidebar.error
    assert error.value.startswith(markdown.literal(message)), error.value
    if kind == "truncated":  # one whole sentence of ours, nothing of torch's
        assert error.value == markdown.literal(message)
    assert "uploads" not in error.value  # the user's file name, not where it was kept
    assert at.selectbox(key="checkpoint").value == str(seed_ckpt)
    assert "this must never run" not in capsys.readouterr().out
    assert not [p for p in (tmp_path / "uploads").rglob("*") if p.is_file()]


def test_store_upload_names_the_file_and_shares_identical_bytes(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVATTN_UPLOADS", str(tmp_path / "uploads"))
    data = _checkpoint(tmp_path / "a.pt").read_bytes()
    first = loaded_model.store_upload("a.pt", data)
    assert loaded_model.store_upload("a.pt", data) == first
    assert loaded_model.checkpoint_label(first) == "a.pt (uploaded)"
    # Weights that do not fit the architecture they claim are refused at upload.
    ckpt = torch.load(tmp_path / "a.pt", weights_only=True)
    ckpt["state_dict"].pop("fc.weight")
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    with pytest.raises(CheckpointError, match=r"^broken\.pt does not match its architecture"):
        loaded_model.store_upload("broken.pt", buf.getvalue())


def test_exports_hold_the_arrays_shown(tmp_path):
    torch.manual_seed(0)
    model = create_model("resnet9-attn").eval()
    pixels = np.load(sample_path())["images"][7]
    view = analysis.analyse(model, pixels, CIFAR10_MEAN, CIFAR10_STD).modules["attn1"]
    query = analysis.query_view(view, (20, 9))  # cell (10, 4) of 16x16
    with np.load(io.BytesIO(downloads.attention_npz(pixels, view, query))) as f:
        assert f["query_index"] == 10 * 16 + 4 and f["module"] == "attn1"
        np.testing.assert_allclose(f["attention"].sum(axis=1), 1, atol=1e-5)
        np.testing.assert_allclose(f["attention"][query.index].reshape(16, 16), query.row,
                                   atol=1e-6)
        np.testing.assert_allclose(f["attention"].mean(axis=0).reshape(16, 16),
                                   view.received, atol=1e-6)
        assert (f["image"] == pixels).all()
    png = downloads.attention_png(pixels, view, query, (0.0, 0.01), (0.0, 0.01), 0.6, "t")
    assert Image.open(io.BytesIO(png)).size[0] > 1000
    maps = {"Saliency": np.random.default_rng(0).normal(size=(32, 32))}
    with np.load(io.BytesIO(downloads.attributions_npz(pixels, 3, maps))) as f:
        assert list(f["methods"]) == ["Saliency"] and f["target"] == 3
        np.testing.assert_array_equal(f["maps"][0], maps["Saliency"])
    png = downloads.attributions_png(pixels, maps, {"Saliency": 2.0}, "t")
    assert Image.open(io.BytesIO(png)).format == "PNG"


def _no_overlaps(fig) -> list:
    """Draws ``fig`` and checks that no two of its texts overlap and that no text lies on
    an image or a colour bar; returns the image axes (those without a colour map's bar)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text()
             and (t.axes is None or t.axes.get_visible())]
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            assert not box_a.overlaps(box_b), (a, b)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    for text, box in boxes:
        for ax in panels:
            assert not box.overlaps(ax.get_window_extent(renderer)), (text, ax.get_label())
    return [ax for ax in panels if ax.get_images() and ax.get_title()]


@pytest.mark.parametrize("arch", ["seed", "resnet9-attn"])
def test_exported_figures_have_no_overlapping_labels(arch):
    torch.manual_seed(0)
    model = create_model(arch).eval()
    pixels = np.load(sample_path())["images"][3]
    result = analysis.analyse(model, pixels, CIFAR10_MEAN, CIFAR10_STD)
    view = result.modules[list(result.modules)[-1]]
    query = analysis.query_view(view, (5, 27))
    fig = downloads.attention_figure(pixels, view, query, (0.000895, 0.00115),
                                     (0.000906, 0.00113), 0.65,
                                     f"{view.name}, query row 5, column 27, mean of 4 heads")
    squares = _no_overlaps(fig)
    sizes = {tuple(np.round(ax.get_window_extent().size)) for ax in squares}
    assert len(squares) == 4 and len(sizes) == 1  # four squares of one size
    rng = np.random.default_rng(0)
    maps = {m: rng.normal(size=(32, 32)) for m in
            ["Saliency", "Integrated Gradients", "Grad-CAM", "SmoothGrad"]}
    # A class name with $...$ in it, which matplotlib would typeset as maths.
    fig = downloads.attributions_figure(pixels, maps, {m: 0.00123 for m in maps},
                                        "attributions for class $x^2$")
    title = fig.get_suptitle()
    assert fig._suptitle._preprocess_math(title) == ("attributions for class $x^2$", False)
    squares = _no_overlaps(fig)
    assert len(squares) == 5
    assert len({tuple(np.round(ax.get_window_extent().size)) for ax in squares}) == 1


def test_model_without_attention_module_still_explains(tmp_path, monkeypatch):
    path = _checkpoint(tmp_path / "tiny-se.pt", arch="seed-se")
    path.with_name("tiny-se.predictions.npz").write_bytes(b"not a predictions file")
    monkeypatch.setenv("CONVATTN_CHECKPOINT", str(path))
    monkeypatch.setenv("CONVATTN_CHECKPOINTS", str(tmp_path / "none"))
    at = _run(methods=["saliency", "gradcam"])
    _no_exception(at)
    assert not at.error
    (info,) = at.info
    assert info.value.startswith("Squeeze-and-excitation re-weights whole channels")
    assert not _number_inputs(at, "Query row")
    assert at.selectbox(key="gradcam_layer").value == "conv3"  # the last convolution
    assert any("Grad-CAM" in m.value for m in at.markdown)


def _number_inputs(at: AppTest, label: str) -> list:
    return [n for n in at.number_input if n.label.startswith(label)]


def test_shared_colour_scale_puts_methods_in_one_unit():
    rng = np.random.default_rng(0)
    maps = {"big": 50 * rng.normal(size=(32, 32)), "small": 1e-3 * rng.normal(size=(32, 32))}
    shown, limits = analysis.colour_limits(maps, shared=True)
    for v in shown.values():
        assert abs(np.abs(v).sum() - 100) < 1e-9  # percent of the map's total |attribution|
    assert limits["big"] == limits["small"]
    assert limits["big"] == max(np.percentile(np.abs(v), 99) for v in shown.values())
    raw, own = analysis.colour_limits(maps, shared=False)
    assert raw["big"] is maps["big"]
    assert own["big"] == pytest.approx(np.percentile(np.abs(maps["big"]), 99))
    assert own["small"] < 1e-2 < own["big"]


def test_attention_range_stretches_real_structure_but_not_rounding_noise():
    n = 64
    row = np.full(n, 1 / n)
    row[:2] += np.array([1e-6, -1e-6])  # uniform but for rounding
    assert analysis.attention_range(row, 0.5, shared=False, typical=1 / n) == (0.0, 2 / n)
    row[0], row[1] = 2 / n, 0.5 / n  # a real preference
    assert analysis.attention_range(row, 0.5, shared=False, typical=1 / n) == (0.5 / n, 2 / n)
    assert analysis.attention_range(row, 0.5, shared=True, typical=1 / n) == (0.0, 0.5)


def test_colour_bar_of_never_negative_maps_is_the_red_half():
    full = np.asarray(pictures.attribution_bar(1, True, 101))[:12]
    half = np.asarray(pictures.attribution_bar(1, False, 101))[:12]
    assert np.abs(half[:, 0].astype(int) - full[:, 50]).max() <= 3  # starts at the white middle
    assert (half[:, -1] == full[:, -1]).all()  # ends at the same red


SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "seed.pt"


RESNET = SHIPPED.with_name("resnet9-attn.pt")


@pytest.mark.skipif(not RESNET.exists(), reason="checkpoints/resnet9-attn.pt is not here")
def test_nearly_uniform_attention_is_called_so(monkeypatch):
    monkeypatch.setenv("CONVATTN_CHECKPOINT", str(RESNET))
    monkeypatch.delenv("CONVATTN_DATA", raising=False)
    at = _run(methods=[])
    _no_exception(at)
    assert at.selectbox(key="module").value == "attn1"
    model, info = load_checkpoint(RESNET)
    view = analysis.analyse(model, np.load(sample_path())["images"][0], info["mean"],
                            info["std"]).modules["attn1"]
    row = analysis.query_view(view, (16, 16)).row * 256  # in units of the uniform 1/N
    (caption,) = [c for c in captions(at) if c.startswith("Query at row 16")]
    assert f"this row runs from {row.min():.2f}x to {row.max():.2f}x that" in caption
    assert row.max() < 1.5 and row.min() > 1 / 1.5
    assert any("Nearly uniform" in c for c in captions(at))
    assert any("spreads its attention almost evenly" in c.value for c in at.caption)
    at.radio(key="attention_scale").set_value("shared").run()
    assert not any("Nearly uniform" in c for c in captions(at))  # true contrast now
    # attn2 scores every key alike: no "strongest" cell is named.
    at.selectbox(key="module").set_value("attn2").run()
    view2 = analysis.analyse(model, np.load(sample_path())["images"][0], info["mean"],
                             info["std"]).modules["attn2"]
    row2 = analysis.query_view(view2, (16, 16)).row * 64
    assert row2.max() - row2.min() < 0.01
    (caption,) = [c for c in captions(at) if c.startswith("Query at row 16")]
    assert "this row is uniform and is drawn in one colour" in caption
    assert "attends most" not in caption


@pytest.mark.skipif(not SHIPPED.exists(), reason="checkpoints/seed.pt is not in this checkout")
def test_shared_attention_scale_flags_a_faint_row(monkeypatch):
    monkeypatch.setenv("CONVATTN_CHECKPOINT", str(SHIPPED))
    monkeypatch.delenv("CONVATTN_DATA", raising=False)
    at = _run(methods=[])
    at.radio(key="attention_scale").set_value("shared").run()
    model, info = load_checkpoint(SHIPPED)
    view = analysis.analyse(model, np.load(sample_path())["images"][0], info["mean"],
                            info["std"]).modules["attention"]
    weight = float(analysis.query_view(view, (16, 16)).row.max())
    flagged = [c for c in captions(at) if "Faint on the shared scale: this row's weights" in c]
    assert weight < 0.25 * view.max_weight  # the shipped model's default query is faint
    (note,) = flagged
    assert f"reach under {math.ceil(100 * weight / view.max_weight)}% of the bar" in note


@pytest.mark.skipif(not SHIPPED.exists(), reason="checkpoints/seed.pt is not in this checkout")
def test_shared_scale_flags_the_maps_it_makes_faint(monkeypatch):
    monkeypatch.setenv("CONVATTN_CHECKPOINT", str(SHIPPED))
    monkeypatch.delenv("CONVATTN_DATA", raising=False)
    methods = ["saliency", "integrated_gradients", "gradcam", "smoothgrad"]
    at = _run(methods=methods)
    assert at.radio(key="attribution_scale").value == "per map"  # the default shows every map
    assert not [c for c in at.caption if "Faint on the shared scale" in c.value]
    at.radio(key="attribution_scale").set_value("shared").run()
    _no_exception(at)
    flagged = [c.value for c in at.caption if "Faint on the shared scale" in c.value]
    # The same rule, computed here from the maps of the image the page opens on.
    model, info = load_checkpoint(SHIPPED)
    pixels = np.load(sample_path())["images"][0]
    probs = analysis.analyse(model, pixels, info["mean"], info["std"]).probs
    maps = {m: analysis.attribution_map(model, pixels, info["mean"], info["std"],
                                        int(probs.argmax()), m) for m in methods}
    shown, limits = analysis.colour_limits(maps, shared=True)
    reach = {m: analysis.reach(shown[m], limits[m]) for m in methods}
    assert max(reach.values()) == pytest.approx(1.0)  # the strongest map fills the bar
    faint = [m for m in methods if reach[m] < 0.25]
    assert faint and len(flagged) == len(faint)
    assert f"reach under {math.ceil(100 * reach[faint[0]])}% of the bar" in flagged[0]




@pytest.mark.skipif(not SHIPPED.exists(), reason="checkpoints/seed.pt is not in this checkout")
def test_zero_setup_opens_the_shipped_seed_checkpoint(monkeypatch):
    for var in ("CONVATTN_CHECKPOINT", "CONVATTN_CHECKPOINTS", "CONVATTN_DATA"):
        monkeypatch.delenv(var, raising=False)
    at = _run(methods=[])
    _no_exception(at)
    assert not at.error
    assert at.selectbox(key="checkpoint").value == str(SHIPPED)
    assert any("bundled sample" in c.value for c in at.sidebar.caption)


@pytest.mark.parametrize(("arch", "start"), [
    ("seed-cbam", "CBAM re-weights channels and then positions"),
    ("seed-se", "Squeeze-and-excitation re-weights whole channels"),
    ("seed-noattn", "This network has no attention at all"),
    ("resnet9", "This network has no attention at all"),
])
def test_models_without_an_attention_map_say_why_in_one_sentence(arch, start):
    note = analysis.no_attention_map(create_model(arch))
    assert note.startswith(start) and note.count(". ") == 0 and note.endswith(".")


MARKUP = "**bold**_x_<b>.png"


def test_an_upload_name_is_shown_as_it_is(seed_ckpt):
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["methods"] = []
    at.session_state["source"] = "Upload"
    at.session_state[KEPT_UPLOAD] = (MARKUP, _png("RGB", (40, 40)))
    at.run()
    _no_exception(at)
    assert markdown.literal(MARKUP) == r"\*\*bold\*\*\_x\_\<b\>\.png"
    assert any(c.value.startswith(markdown.literal(MARKUP) + ": PNG 40x40") for c in at.caption)
    assert not any("**bold**" in c.value for c in [*at.caption, *at.sidebar.caption])
    # Its error too, for a file that is no image.
    at.session_state[KEPT_UPLOAD] = (MARKUP, b"not an image")
    at.run()
    (error,) = at.error
    assert error.value.startswith(markdown.literal(MARKUP) + " is not an image")


def test_class_names_from_a_checkpoint_are_shown_as_they_are(tmp_path, monkeypatch):
    classes = ["**bold**", "_it_", "<b>tag</b>", ":red[red]", "[link](http://x.y)",
               "`code`", "$x^2$", "# heading", "1. list", "www.example.com"]
    model = create_model("seed")
    torch.nn.init.zeros_(model.fc.weight)
    with torch.no_grad():
        model.fc.bias.copy_(torch.arange(10.0))  # the last class is always predicted
    ckpt = make_checkpoint(model, "seed", {}, classes, CIFAR10_MEAN, CIFAR10_STD)
    path = save_checkpoint(ckpt, tmp_path / "**odd**.pt")
    monkeypatch.setenv("CONVATTN_CHECKPOINT", str(path))
    monkeypatch.setenv("CONVATTN_CHECKPOINTS", str(tmp_path / "none"))
    monkeypatch.delenv("CONVATTN_DATA", raising=False)
    at = _run(methods=["saliency"])
    _no_exception(at)
    verdict = [m.value for m in at.markdown if m.value.startswith("Predicted")]
    assert verdict == [f"Predicted **{markdown.literal(classes[-1])}** (63.2%). True class "
                       "unknown."]
    assert markdown.literal(classes[-1]) == "www\u2060\\.example\\.com"  # no link either
    explained = [m.value for m in at.markdown if m.value.startswith("Explaining")]
    assert explained == [f"Explaining the score of **{markdown.literal(classes[-1])}** (the "
                         "predicted class)."]
    for name in classes:  # shown as typed: every mark escaped, so no markup is left
        assert markdown.literal(name).replace("\\", "").replace("\u2060", "") == name


@pytest.mark.parametrize(("error", "why"), [
    (lambda: urllib.error.HTTPError("https://www.cs.toronto.edu/x", 503,
                                    "Service Unavailable", {}, None),
     "www.cs.toronto.edu answered HTTP 503 (Service Unavailable)"),
    (lambda: urllib.error.URLError(TimeoutError("timed out")),
     "www.cs.toronto.edu did not answer in time"),
    (lambda: OSError(28, "No space left on device"),
     "it could not be written into {folder} (No space left on device)"),
    (lambda: RuntimeError("File not found or corrupted."),
     "the file that arrived is damaged (its checksum is wrong)"),
])
def test_a_failed_download_is_one_sentence_and_leaves_nothing(tmp_path, monkeypatch, error,
                                                               why):
    import torchvision.datasets.cifar

    def download(url, root, filename, md5):
        Path(root).mkdir(parents=True, exist_ok=True)
        (Path(root) / filename).write_bytes(b"partial")
        (Path(root) / "cifar-10-batches-py").mkdir()  # as if unpacking had begun
        raise error()

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", download)
    folder = tmp_path / "data" / "cifar10"
    with pytest.raises(DataError) as e:
        download_cifar10(folder)
    assert str(e.value) == (f"Could not download CIFAR-10: {why.format(folder=folder)}. "
                            "Nothing was written.")
    assert list(tmp_path.iterdir()) == []


def test_the_folder_box_starts_where_cifar_was_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVATTN_CACHE", str(tmp_path))
    monkeypatch.delenv("CONVATTN_DATA", raising=False)
    assert sources.default_data_folder() == ""  # nothing yet: the bundled sample
    (tmp_path / "cifar10" / "cifar-10-batches-py").mkdir(parents=True)
    assert sources.default_data_folder() == str(tmp_path / "cifar10")
    monkeypatch.setenv("CONVATTN_DATA", str(tmp_path / "elsewhere"))
    assert sources.default_data_folder() == str(tmp_path / "elsewhere")
    assert sources.is_new_folder(str(tmp_path / "elsewhere"))
    assert not sources.is_new_folder(str(tmp_path / "cifar10"))
    assert not sources.is_new_folder(str(tmp_path / "pack.npz"))  # packs are made, not fetched


def test_what_the_colours_mean_is_true_of_every_method():
    """Captions say "never negative" only of maps that are, and "blue lowers it" only of
    maps that do have negative pixels."""
    from convattn.explain.attribution import METHODS

    torch.manual_seed(0)
    model = create_model("seed").eval()
    pixels = np.load(sample_path())["images"][3]
    for method in METHODS:
        values = analysis.attribution_map(model, pixels, CIFAR10_MEAN, CIFAR10_STD, 0, method)
        said = analysis.colour_meaning(method)
        if said.startswith("Never negative"):
            assert values.min() >= 0, method
        else:
            assert said == "Red pixels raise the score, blue ones lower it."
            assert values.min() < 0 < values.max(), method

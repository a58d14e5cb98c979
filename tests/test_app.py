"""The Inspect page (app_pages/0_Inspect.py, the router's default) through Streamlit's
AppTest, on checkpoints made here."""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

import numpy as np
import pagedata
import pytest
import torch
from apprun import APP, INSPECT, switch
from PIL import Image
from streamlit.testing.v1 import AppTest

from appkit import analysis, export, render, state
from appkit.sources import SAMPLE_PATH
from convattn.attention import query_row
from convattn.checkpoint import CheckpointError, load_checkpoint
from convattn.data import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD
from convattn.models import create_model


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
    (caption,) = [c.value for c in at.caption if "attends most to" in c.value]
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
    assert "12.5% test accuracy" in sidebar and "CPU" in sidebar
    # The verdict names the model's real top class for the first sample image (an airplane).
    model, info = load_checkpoint(seed_ckpt)
    pixels = np.load(SAMPLE_PATH)["images"][0]
    probs = analysis.analyse(model, pixels, info["mean"], info["std"]).probs
    verdict = " ".join(m.value for m in at.markdown if "Correct" in m.value or "Wrong" in m.value)
    assert f"**{CIFAR10_CLASSES[int(probs.argmax())]}**" in verdict
    gamma = at.dataframe[-1].value if "γ" in at.dataframe[-1].value.columns else None
    assert gamma is not None and gamma["γ"].tolist() == [0.5]


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
    x = analysis.normalise(np.load(SAMPLE_PATH)["images"][0], info["mean"], info["std"])
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
    sample = np.load(SAMPLE_PATH)
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
    assert any("test/frog/0.png" in c.value for c in at.caption)


def test_missing_data_folder_says_so_and_keeps_the_sample(seed_ckpt, tmp_path, monkeypatch):
    monkeypatch.setenv("CONVATTN_DATA", str(tmp_path / "nowhere"))
    at = _run(methods=[])
    _no_exception(at)
    assert len(at.sidebar.error) == 1 and "does not exist" in at.sidebar.error[0].value
    assert any("bundled sample" in c.value for c in at.sidebar.caption)


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
    assert str(bad) in error.value and "cannot be read" in error.value


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
    assert error.value.startswith(message)
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
    assert any("attends most to" in c.value for c in at.caption)



def test_uploaded_image_stays_across_pages_until_removed(seed_ckpt):
    at = _run(methods=[])
    at.radio(key="source").set_value("Upload").run()
    at.file_uploader(key="upload").upload("frog.png", _png("RGB", (64, 48)), "image/png")
    at.run()
    assert any("frog.png: PNG 64x48 (RGB)" in c.value for c in at.caption)
    for page in ("4_Compare.py", "5_Learn.py", INSPECT):
        switch(at, page)
        _no_exception(at)
        assert not any(i.value.startswith("Upload an image") for i in at.info), page
        assert any("frog.png: PNG 64x48 (RGB)" in c.value for c in at.caption), page
    # A page without the image widgets (Training) empties the uploader; the image stays.
    switch(at, "3_Training.py")
    switch(at, INSPECT)
    assert any("Showing **frog.png**, uploaded earlier" in c.value for c in at.sidebar.caption)
    assert any("frog.png: PNG 64x48 (RGB)" in c.value for c in at.caption)
    # With the uploader empty, a button forgets the image.
    at.button(key="forget_upload").click().run()
    assert any(i.value.startswith("Upload an image") for i in at.info)
    # Removing it from the uploader forgets it too.
    at.file_uploader(key="upload").upload("frog.png", _png("RGB", (64, 48)), "image/png")
    at.run()
    at.file_uploader(key="upload").clear()
    at.run()
    assert any(i.value.startswith("Upload an image") for i in at.info)


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_uploaded_checkpoint_is_listed_selected_and_used(seed_ckpt, tmp_path, monkeypatch):
    monkeypatch.setattr(state, "UPLOAD_DIR", tmp_path / "uploads")
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
    (b"not a checkpoint at all", "notes.pt cannot be read: it is not a PyTorch file."),
    ("evil", "notes.pt was refused: it holds Python objects"),
    ("foreign", "notes.pt is a PyTorch file but not a convattn checkpoint."),
])
def test_bad_checkpoint_upload_gets_one_sentence_and_keeps_the_model(
        seed_ckpt, tmp_path, monkeypatch, capsys, data, message):
    monkeypatch.setattr(state, "UPLOAD_DIR", tmp_path / "uploads")
    if data == "evil":
        buf = io.BytesIO()
        torch.save({"x": _Evil()}, buf)
        data = buf.getvalue()
    elif data == "foreign":
        buf = io.BytesIO()
        torch.save({"weight": torch.zeros(3)}, buf)
        data = buf.getvalue()
    at = _run(methods=[])
    at.file_uploader(key="checkpoint_upload").upload("notes.pt", data, "application/octet-stream")
    at.run()
    _no_exception(at)
    (error,) = at.sidebar.error
    assert error.value.startswith(message), error.value
    assert "uploads" not in error.value  # the user's file name, not where it was kept
    assert at.selectbox(key="checkpoint").value == str(seed_ckpt)
    assert "this must never run" not in capsys.readouterr().out
    assert not [p for p in (tmp_path / "uploads").rglob("*") if p.is_file()]


def test_store_upload_names_the_file_and_shares_identical_bytes(tmp_path, monkeypatch):
    monkeypatch.setattr(state, "UPLOAD_DIR", tmp_path / "uploads")
    data = _checkpoint(tmp_path / "a.pt").read_bytes()
    first = state.store_upload("a.pt", data)
    assert state.store_upload("a.pt", data) == first
    assert state.checkpoint_label(first) == "a.pt (uploaded)"
    # Weights that do not fit the architecture they claim are refused at upload.
    ckpt = torch.load(tmp_path / "a.pt", weights_only=True)
    ckpt["state_dict"].pop("fc.weight")
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    with pytest.raises(CheckpointError, match=r"^broken\.pt does not match its architecture"):
        state.store_upload("broken.pt", buf.getvalue())


def test_exports_hold_the_arrays_shown(tmp_path):
    torch.manual_seed(0)
    model = create_model("resnet9-attn").eval()
    pixels = np.load(SAMPLE_PATH)["images"][7]
    view = analysis.analyse(model, pixels, CIFAR10_MEAN, CIFAR10_STD).modules["attn1"]
    query = analysis.query_view(view, (20, 9))  # cell (10, 4) of 16x16
    with np.load(io.BytesIO(export.attention_npz(pixels, view, query))) as f:
        assert f["query_index"] == 10 * 16 + 4 and f["module"] == "attn1"
        np.testing.assert_allclose(f["attention"].sum(axis=1), 1, atol=1e-5)
        np.testing.assert_allclose(f["attention"][query.index].reshape(16, 16), query.row,
                                   atol=1e-6)
        np.testing.assert_allclose(f["attention"].mean(axis=0).reshape(16, 16),
                                   view.received, atol=1e-6)
        assert (f["image"] == pixels).all()
    png = export.attention_png(pixels, view, query, (0.0, 0.01), (0.0, 0.01), 0.6, "t")
    assert Image.open(io.BytesIO(png)).size[0] > 1000
    maps = {"Saliency": np.random.default_rng(0).normal(size=(32, 32))}
    with np.load(io.BytesIO(export.attributions_npz(pixels, 3, maps))) as f:
        assert list(f["methods"]) == ["Saliency"] and f["target"] == 3
        np.testing.assert_array_equal(f["maps"][0], maps["Saliency"])
    png = export.attributions_png(pixels, maps, {"Saliency": 2.0}, "t")
    assert Image.open(io.BytesIO(png)).format == "PNG"


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
    full = np.asarray(render.attribution_bar(1, True, 101))[:12]
    half = np.asarray(render.attribution_bar(1, False, 101))[:12]
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
    view = analysis.analyse(model, np.load(SAMPLE_PATH)["images"][0], info["mean"],
                            info["std"]).modules["attn1"]
    row = analysis.query_view(view, (16, 16)).row * 256  # in units of the uniform 1/N
    (caption,) = [c.value for c in at.caption if c.value.startswith("Query at row 16")]
    assert f"this row runs from {row.min():.2f}x to {row.max():.2f}x that" in caption
    assert row.max() < 1.5 and row.min() > 1 / 1.5
    assert any("Nearly uniform" in c.value for c in at.caption)
    assert any("spreads its attention almost evenly" in c.value for c in at.caption)
    at.radio(key="attention_scale").set_value("shared").run()
    assert not any("Nearly uniform" in c.value for c in at.caption)  # true contrast now
    # attn2 scores every key alike: no "strongest" cell is named.
    at.selectbox(key="module").set_value("attn2").run()
    view2 = analysis.analyse(model, np.load(SAMPLE_PATH)["images"][0], info["mean"],
                             info["std"]).modules["attn2"]
    row2 = analysis.query_view(view2, (16, 16)).row * 64
    assert row2.max() - row2.min() < 0.01
    (caption,) = [c.value for c in at.caption if c.value.startswith("Query at row 16")]
    assert "this row is uniform and is drawn in one colour" in caption
    assert "attends most" not in caption


@pytest.mark.skipif(not SHIPPED.exists(), reason="checkpoints/seed.pt is not in this checkout")
def test_shared_attention_scale_flags_a_faint_row(monkeypatch):
    monkeypatch.setenv("CONVATTN_CHECKPOINT", str(SHIPPED))
    monkeypatch.delenv("CONVATTN_DATA", raising=False)
    at = _run(methods=[])
    at.radio(key="attention_scale").set_value("shared").run()
    model, info = load_checkpoint(SHIPPED)
    view = analysis.analyse(model, np.load(SAMPLE_PATH)["images"][0], info["mean"],
                            info["std"]).modules["attention"]
    weight = float(analysis.query_view(view, (16, 16)).row.max())
    flagged = [c.value for c in at.caption
               if "Faint on the shared scale: this row's weights" in c.value]
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
    pixels = np.load(SAMPLE_PATH)["images"][0]
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

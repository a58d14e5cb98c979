"""The Misclassifications, Ablation, Training and Compare pages through AppTest, on
checkpoints, predictions and results files made here; the router and what stays chosen
from page to page."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from apprun import INSPECT, ROOT, lens_data, open_page, switch
from concurrency import run_together
from pagedata import CLASSES, checkpoint, sample, write_ablation, write_predictions, write_results
from PIL import Image
from streamlit.testing.v1 import AppTest

from appkit import gallery, loaded_model, pages, progress_cache
from convattn.explain.ablation import ablate_images, flip_counts, predict_images
from convattn.files.checkpoint import load_checkpoint
from convattn.readout import analysis
from convattn.readout.attention import query_row

MIS, ABL = "4_Misclassifications.py", "5_Ablation.py"
TRAIN, COMPARE = "10_Training.py", "1_Compare.py"


@pytest.fixture
def ckpts(tmp_path, monkeypatch) -> dict[str, Path]:
    """seed.pt (the default) and seed-noattn.pt in a checkpoint folder of their own."""
    found = {"seed": checkpoint(tmp_path / "seed.pt", "seed"),
             "noattn": checkpoint(tmp_path / "seed-noattn.pt", "seed-noattn",
                                   accuracies=(35.0, 45.0))}
    monkeypatch.setenv("CONVATTN_CHECKPOINT", str(found["seed"]))
    monkeypatch.setenv("CONVATTN_CHECKPOINTS", str(tmp_path))
    monkeypatch.delenv("CONVATTN_DATA", raising=False)
    return found


@pytest.fixture
def tiny_test_set(tmp_path, monkeypatch) -> Path:
    """20 CIFAR-10-classed images in an ImageFolder root, named as the full test set."""
    root = tmp_path / "cifar"
    rng = np.random.default_rng(0)
    for cls in CLASSES:
        (root / "test" / cls).mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "test" / cls / f"{i}.png")
    monkeypatch.setenv("CONVATTN_DATA", str(root))
    return root


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


def _figure(at: AppTest, index: int = 0) -> dict:
    return json.loads(at.get("plotly_chart")[index].proto.spec)


def _array(value) -> np.ndarray:
    """A plotly figure's array: a list, or numpy's bytes in base64 ("bdata")."""
    if isinstance(value, dict) and "bdata" in value:
        shape = [int(n) for n in str(value.get("shape", "-1")).split(",")]
        data = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        return data.reshape(shape)
    return np.array(value)


def _confusion(at: AppTest) -> np.ndarray:
    heatmap = next(t for t in _figure(at)["data"] if t["type"] == "heatmap")
    return _array(heatmap["z"])


# ---------------------------------------------------------------- Misclassifications


def test_misclassifications_from_the_predictions_file(ckpts):
    write_predictions(ckpts["seed"])
    at = open_page(MIS)
    _ok(at)
    assert not at.error
    counts = _confusion(at)
    assert counts.sum() == 1000  # the bundled sample, every image once
    assert counts[0, 1] == 2 and counts[2, 3] == 1 and np.trace(counts) == 997
    assert any(c.value.startswith("99.70% correct over these 1,000 images")
               and "Hardest class: **airplane** (98.0%). Most frequent confusion: **airplane** "
               "taken for **automobile** (2 images)." in c.value for c in at.caption)
    assert any("bundled sample" in c.value and r"read from seed\.predictions\.npz" in c.value
               for c in at.caption)
    assert any("**3 images** with any true class" in m.value for m in at.markdown)
    captions = [c.value for c in at.caption if c.value.startswith("#")]
    assert [c.split()[0] for c in captions] == ["#17", "#230", "#5"]  # most confident first
    # Thumbnails stay crisp: exact pixels (PNG), scaled by the browser by nearest neighbour.
    thumbs = [i.url for e in at.get("image") for i in e.proto.imgs]
    assert len(thumbs) == 3 and all(u.endswith(".png") for u in thumbs)
    assert any(".st-key-mis_grid img { image-rendering: pixelated; }" in h.proto.body
               for h in at.get("html"))
    at.radio(key="mis_order").set_value("index").run()
    assert [c.value.split()[0] for c in at.caption if c.value.startswith("#")] == [
        "#5", "#17", "#230"]
    # The filters a click on the (airplane, automobile) cell sets, and its outline.
    at.selectbox(key="mis_true").set_value("airplane")
    at.selectbox(key="mis_pred").set_value("automobile").run()
    _ok(at)
    assert any("**2 images** with true class **airplane**, predicted **automobile**" in m.value
               for m in at.markdown)
    (shape,) = _figure(at)["layout"]["shapes"]
    assert (shape["x0"], shape["y0"]) == (0.5, -0.5)  # column 1, row 0


def _image_number(at: AppTest) -> int:
    (number,) = [n for n in at.number_input if n.label.startswith("Image number")]
    return number.value


@pytest.mark.parametrize(("page", "button", "index", "back"), [
    (MIS, "mis_230", 230, "Misclassifications"),
    (ABL, "flip_3", 3, "Ablation"),  # draws the image section before the gallery
])
def test_an_image_of_every_gallery_opens_in_inspect(ckpts, page, button, index, back):
    write_predictions(ckpts["seed"])
    write_ablation(ckpts["seed"])
    at = open_page(page, methods=[], class_filter="cat")
    if page == MIS:
        at.radio(key="mis_order").set_value("index").run()
    at.button(key=button).click().run()
    _ok(at)
    # Now on the Inspect page, with that image of the whole set and the same checkpoint.
    assert any(f"(#{index}) · true class" in c.value for c in at.caption)
    assert at.selectbox(key="checkpoint").value == str(ckpts["seed"])
    assert at.selectbox(key="class_filter").value == "all classes"
    assert _image_number(at) == index
    links = [link.proto for link in at.get("page_link") if link.proto.label.startswith("Back")]
    assert [(link.label, link.page) for link in links] == [(f"Back to {back}", page[2:-3])]


def test_the_misclassifications_cell_stays_while_an_image_is_inspected(ckpts):
    write_predictions(ckpts["seed"])
    at = open_page(MIS, methods=[])
    at.selectbox(key="mis_true").set_value("airplane")
    at.selectbox(key="mis_pred").set_value("automobile")
    at.radio(key="mis_order").set_value("index").run()
    at.button(key="mis_17").click().run()
    assert _image_number(at) == 17
    # Work on Inspect, then back: Misclassifications is as it was left. (AppTest does not
    # follow st.switch_page into later runs, so the test switches itself.)
    switch(at, INSPECT)
    at.slider(key="topk").set_value(3).run()
    at.slider(key="topk").set_value(4).run()
    switch(at, MIS)
    _ok(at)
    assert at.selectbox(key="mis_true").value == "airplane"
    assert at.selectbox(key="mis_pred").value == "automobile"
    assert at.radio(key="mis_order").value == "index"
    assert any("**2 images** with true class **airplane**, predicted **automobile**" in m.value
               for m in at.markdown)
    assert [c.value.split()[0] for c in at.caption if c.value.startswith("#")] == [
        "#5", "#17"]


def test_a_confusion_matrix_click_selects_its_cell():
    state = {"selection": {"points": [{"x": "cat", "y": "dog", "point_index": 53}]}}
    assert gallery.clicked_point(state) == {"x": "cat", "y": "dog", "point_index": 53}
    assert gallery.clicked_point({"selection": {"points": []}}) is None
    assert gallery.clicked_point(None) is None


def test_gallery_order_and_filters():
    probs = np.array([[0.7, 0.3], [0.2, 0.8], [0.4, 0.6], [0.9, 0.1]])
    labels = np.array([0, 0, 0, 1])
    assert gallery.choose(probs, labels, only_wrong=True).tolist() == [3, 1, 2]
    assert gallery.choose(probs, labels, true=0, predicted=1, order="loss").tolist() == [1, 2]
    np.testing.assert_allclose(gallery.loss(probs, labels), -np.log([0.7, 0.2, 0.4, 0.1]))
    assert gallery.confusion(labels, probs.argmax(1), 2).tolist() == [[1, 2], [1, 0]]


def test_misclassifications_computed_once_without_a_predictions_file(ckpts, tiny_test_set):
    at = open_page(MIS)
    _ok(at)
    assert any(r"Predictions of seed\.pt computed here, once" in c.value and "20 images" in c.value
               for c in at.caption)
    counts = _confusion(at)
    model, info = load_checkpoint(ckpts["seed"])
    pixels = np.stack([np.asarray(Image.open(p).convert("RGB"))
                       for p in sorted((tiny_test_set / "test").glob("*/*.png"))])
    labels = np.repeat(np.arange(10), 2)
    expected = predict_images(model, pixels, info["mean"], info["std"]).argmax(1)
    assert counts.sum() == 20
    np.testing.assert_array_equal(counts, gallery.confusion(labels, expected, 10))


# ---------------------------------------------------------------- Ablation


def _flip_table(at: AppTest):
    return next(d.value for d in at.dataframe if "fixed" in d.value.columns)


def test_ablation_from_the_ablation_file(ckpts):
    write_ablation(ckpts["seed"])
    at = open_page(ABL)
    _ok(at)
    assert not at.error
    assert any(r"read from seed\.ablation\.npz" in c.value for c in at.caption)
    assert any("fixes 4** answers" in m.value and "breaks 1**" in m.value
               for m in at.markdown)
    table = _flip_table(at)
    outcomes = ["fixed", "broken", "right", "wrong, same", "wrong, other"]
    assert (table[outcomes].sum(axis=1) == table["images"]).all()  # every image once
    total = table.iloc[-1]
    assert total["class"] == "all classes" and total["images"] == 1000
    assert (total["fixed"], total["broken"], total["wrong, other"]) == (4, 1, 1)
    assert table.set_index("class").loc["airplane", "fixed"] == 3  # images 3, 4 and 5
    assert [m.value for m in at.metric] == ["99.80%", "99.50%", "99.90%"]
    assert any("**4 images**" in m.value for m in at.markdown)  # the fixed ones, browsable
    at.radio(key="ablation_kind").set_value("uniform").run()
    assert _flip_table(at).iloc[-1][["fixed", "broken"]].tolist() == [1, 2]  # 400; 1, 2
    at.radio(key="flip_which").set_value("broken").run()
    _ok(at)
    assert [c.value.split()[0] for c in at.caption if c.value.startswith("#")] == ["#1", "#2"]


def test_ablation_where_nothing_flips_says_so_instead_of_an_empty_chart(ckpts):
    _, names, labels = sample()
    preds = {"real": labels.copy()}
    preds["real"][[1, 2]] = 9  # two mistakes, the same under γ = 0 ...
    preds["gamma0"] = preds["real"].copy()
    preds["uniform"] = preds["real"].copy()
    preds["uniform"][1] = 8  # ... and one of them another mistake under uniform attention
    arrays = {}
    for v, p in preds.items():
        probs = np.full((len(p), 10), 0.02, dtype=np.float32)
        probs[np.arange(len(p)), p] = 0.82
        arrays |= {f"probs_{v}": probs.astype(np.float16), f"pred_{v}": p}
    np.savez_compressed(ckpts["seed"].with_name("seed.ablation.npz"), names=names,
                        labels=labels, classes=np.array(CLASSES), source=np.array("t"),
                        **arrays)
    at = open_page(ABL)
    _ok(at)
    assert len(at.get("plotly_chart")) == 1  # this image's bars only
    assert ("Nothing to chart: against γ = 0 (attention switched off), attention fixes no "
            "answer and breaks none of these 1,000 images: every answer is the same."
            in [i.value for i in at.info])
    at.radio(key="ablation_kind").set_value("uniform").run()
    _ok(at)
    assert any(i.value.endswith("it only turns 1 wrong answer into another wrong one.")
               for i in at.info)
    assert len(at.get("plotly_chart")) == 1


def test_ablation_of_one_image_and_of_a_set_computed_here(ckpts, tiny_test_set):
    at = open_page(ABL)
    _ok(at)
    assert any(r"predictions of seed\.pt computed here, once" in c.value for c in at.caption)
    table = _flip_table(at)
    model, info = load_checkpoint(ckpts["seed"])
    pixels = np.stack([np.asarray(Image.open(p).convert("RGB"))
                       for p in sorted((tiny_test_set / "test").glob("*/*.png"))])
    labels = np.repeat(np.arange(10), 2)
    probs = ablate_images(model, pixels, info["mean"], info["std"])
    counts = flip_counts(labels, probs["real"].argmax(1), probs["gamma0"].argmax(1), 10)
    assert table["fixed"].tolist()[:-1] == counts["fixed"].tolist()
    assert table["broken"].tolist()[:-1] == counts["broken"].tolist()
    assert table.iloc[-1]["images"] == 20
    # This image: both ablations get a verdict, and the chart holds three variants.
    verdicts = [m.value for m in at.markdown if m.value.startswith("**γ = 0")
                or m.value.startswith("**uniform")]
    assert len(verdicts) == 2
    one = ablate_images(model, pixels[:1], info["mean"], info["std"])
    top = CLASSES[int(one["gamma0"][0].argmax())]
    assert f"**{top}**" in verdicts[0]
    real = one["real"][0]
    for verdict, kind in zip(verdicts, ["gamma0", "uniform"]):
        other = one[kind][0]
        a = int(real.argmax())
        if a == int(other.argmax()):  # the same answer: only the confidence moves
            change = 100 * (real[a] - other[a])
            effect = (f"attention adds {change:.1f} points" if change >= 0
                      else f"attention takes {-change:.1f} points")
            assert effect in verdict and "but does not change the answer" in verdict
        else:
            assert "Attention changes the answer" in verdict
    bars = _figure(at)["data"]
    assert sorted(t["name"] for t in bars) == sorted(
        ["real model", "γ = 0 (attention switched off)",
         "uniform attention (every position weighted 1/N)"])


def test_ablation_of_a_model_without_attention_says_so(ckpts, monkeypatch):
    monkeypatch.setenv("CONVATTN_CHECKPOINT", str(ckpts["noattn"]))
    at = open_page(ABL)
    _ok(at)
    assert any("has no convolutional self-attention module" in i.value for i in at.info)


# ---------------------------------------------------------------- Training


def test_training_page_curves_table_and_explanation(ckpts):
    write_results(ckpts["seed"].parent)
    at = open_page(TRAIN)
    _ok(at)
    assert at.multiselect(key="train_checkpoints").value == [str(ckpts["seed"]),
                                                             str(ckpts["noattn"])]
    assert len(at.tabs) == 4
    accuracy = _figure(at, 0)
    assert [t["name"] for t in accuracy["data"]] == ["seed.pt (training seed 0)",
                                                     "seed-noattn.pt (training seed 0)"]
    assert _array(accuracy["data"][0]["y"]).tolist() == [40.0, 50.0]
    # Hovered, an accuracy reads 78.73%, not the float the file holds (78.72999906539917).
    assert accuracy["data"][0]["hovertemplate"] == ("%{fullData.name}<br>epoch %{x}: "
                                                    "%{y:.2f}%<extra></extra>")
    gamma = next(f for f in (_figure(at, i) for i in range(len(at.get("plotly_chart"))))
                 if f["layout"]["yaxis"]["title"]["text"] == "γ")
    assert _array(gamma["data"][0]["y"]).tolist() == [0.4, 0.5]
    # A static table (st.table), whose cells wrap: no column is clipped at the page's
    # width, as the GPU column was in st.dataframe.
    assert not at.dataframe
    table = at.table[0].value
    assert table["architecture"].tolist() == ["seed", "seed-noattn"]
    assert table["test acc. % (final)"].tolist() == ["79.00 ± 1.00", "77.00 ± 1.00"]
    assert table["parameters"].tolist() == ["386,891", "374,282"]
    assert "GPU" not in table.columns  # one device for every run: said once, below
    assert at.selectbox(key="zoo_metric").value == "test_accuracy"
    assert any(c.value.endswith("Every run trained on one GPU.") for c in at.caption)
    assert any("**seed** − **seed-noattn**: +2.00 ± 0.82 points" in m.value
               for m in at.markdown)
    assert any("Why γ starts at 0" in h.value for h in at.header)


def test_training_page_without_results_file(ckpts):
    at = open_page(TRAIN)
    _ok(at)
    assert any(r"zoo\-results\.json does not exist" in i.value for i in at.info)


# ---------------------------------------------------------------- Compare


def _query_captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption if "looks most at" in c.value]


def test_compare_two_models_on_one_image(ckpts):
    at = open_page(COMPARE, compare_method="saliency")
    _ok(at)
    assert not at.error
    assert at.selectbox(key="compare_checkpoint").value == str(ckpts["noattn"])  # the twin
    verdicts = [m.value for m in at.markdown if "✓" in m.value or "✗" in m.value]
    assert len(verdicts) == 2 and r"seed\.pt" in verdicts[0]  # names escaped for Markdown
    assert r"seed\-noattn\.pt" in verdicts[1]
    assert any(i.value.startswith("This network has no attention at all") for i in at.info)
    assert len([m for m in at.markdown if "score of" in m.value]) == 2
    # Saliency is |gradient|: its caption says so, and promises no blue.
    (reading,) = [c.value for c in at.caption if c.value.startswith("Saliency:")]
    assert reading.endswith(analysis.colour_meaning("saliency"))
    assert "|gradient|" in reading and "blue" not in reading
    before = _query_captions(at)
    (row,) = [n for n in at.number_input if n.label == "Query row"]
    row.set_value(3).run()
    _ok(at)
    (after,) = _query_captions(at)
    assert [after] != before
    model, info = load_checkpoint(ckpts["seed"])
    x = analysis.normalise(sample()[0][0], info["mean"], info["std"])
    attention = query_row(model, x, "attention", 3 * 32 + 16)[0]
    r, c = divmod(int(attention.argmax()), 32)
    assert f"row {r}, column {c} of its grid (weight {float(attention.max()):.4f}" in after


def test_compare_opens_beside_another_model_with_attention(ckpts, monkeypatch):
    # With seed-mh4 there, seed opens beside it (both lenses show and move together), not
    # beside seed-noattn, whose side would have no lens; seed-noattn opens beside seed.
    folder = ckpts["seed"].parent
    mh4 = checkpoint(folder / "seed-mh4.pt", "seed-mh4")
    checkpoint(folder / "seed-se.pt", "seed-se")
    at = open_page(COMPARE, compare_method="saliency")
    _ok(at)
    assert at.selectbox(key="compare_checkpoint").value == str(mh4)
    lenses = [d for d in lens_data(at) if "pinned" in d]
    assert len(lenses) == 2 and not at.info  # two lenses, no "has no attention" notice
    monkeypatch.setenv("CONVATTN_CHECKPOINT", str(ckpts["noattn"]))
    at = open_page(COMPARE, compare_method="saliency")
    _ok(at)
    assert at.selectbox(key="compare_checkpoint").value == str(ckpts["seed"])
    assert loaded_model.partner_checkpoint(str(ckpts["seed"]), [str(folder / "seed-se.pt")]
                                           ) is None  # no attention and not its twin


def test_sidebar_choices_stay_on_every_page_and_back(ckpts):
    at = open_page(methods=[], compare_method="saliency")
    at.selectbox(key="checkpoint").set_value(str(ckpts["noattn"])).run()
    at.selectbox(key="class_filter").set_value("cat").run()
    (number,) = [n for n in at.number_input if n.label.startswith("Image number")]
    number.set_value(7).run()
    (shown,) = [c.value for c in at.caption if "· true class **cat**" in c.value]
    # Misclassifications draws no image widgets, Training no sidebar at all.
    for page in (MIS, TRAIN, COMPARE, INSPECT):
        switch(at, page)
        _ok(at)
        if page != TRAIN:
            assert at.selectbox(key="checkpoint").value == str(ckpts["noattn"]), page
    assert at.selectbox(key="class_filter").value == "cat"
    assert _image_number(at) == 7
    assert any(c.value == shown for c in at.caption)


SECTIONS = {  # the navigation's sections and page names, as users see them
    "One image": ["Inspect", "Compare two models"],
    "How attention works": ["Learn, step by step", "Predict, then reveal"],
    "The whole test set": ["Misclassifications", "Ablation: switch attention off",
                           "Attention statistics", "Likely label errors"],
    "Can the explanations be trusted?": ["Faithfulness", "Sanity check"],
    "Training": ["Training history and γ"],
}


def test_the_router_routes_every_page_file_once(ckpts):
    files = sorted(p.name for p in (ROOT / "app_pages").glob("*.py"))
    routed = [entry.path for entry in pages.ENTRIES]
    # A page file missing from appkit.pages, or listed twice, fails here.
    assert sorted(routed) == [f"app_pages/{name}" for name in files]
    assert {section: [e.title for e in entries]
            for section, entries in pages.SECTIONS.items()} == SECTIONS
    assert pages.ENTRIES[0].path == pages.INSPECT == f"app_pages/{INSPECT}"
    at = open_page(TRAIN)
    _ok(at)
    for name in files:
        at.switch_page(f"app_pages/{name}")  # raises unless the router registered it


def test_work_over_a_set_is_done_once_for_two_sessions_at_once():
    calls, seen = [], []
    start = threading.Barrier(2)
    key = ("test", object())  # new to the process-wide store

    def compute(progress) -> list[int]:
        calls.append(1)
        for done in (1, 2):
            time.sleep(0.2)
            progress(done, 2)
        return [42]

    def session() -> None:
        start.wait()
        seen.append(progress_cache.once(key, compute, "Working…"))

    run_together(session, session)
    assert len(calls) == 1 and len(seen) == 2 and seen[0] is seen[1]

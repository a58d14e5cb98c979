"""Known label errors, calibration, likely label errors and nearest training images in
the app (Misclassifications, Inspect, Likely label errors) through AppTest, on
checkpoints, predictions files and image folders made here; the numbers shown are
checked against the library."""

from __future__ import annotations

import base64
import html
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from apprun import INSPECT, open_page, switch
from pagedata import CLASSES, checkpoint, sample, write_ablation
from PIL import Image
from streamlit.testing.v1 import AppTest

from appkit import markdown
from appkit.sidebar.upload import KEPT_UPLOAD
from convattn.explain.ablation import predict_images
from convattn.files.checkpoint import load_checkpoint
from convattn.files.data import load_split
from convattn.files.predictions import calibration_arrays
from convattn.trust.calibration import calibrated, cross_fit_temperature, reliability
from convattn.trust.label_errors import corrected_accuracy
from convattn.trust.label_issues import rank_label_issues
from convattn.trust.neighbours import cache_dir, image_features, nearest

MIS, LIKELY = "4_Misclassifications.py", "7_Likely_label_errors.py"
DOG, BIRD, CAT, AUTOMOBILE = (CLASSES.index(c) for c in ("dog", "bird", "cat", "automobile"))
# Mistakes in the bundled sample: 377 (test/cat/0077.jpg) and 390 (test/cat/0090.jpg) are
# validated label errors, 5 (test/airplane/0005.jpg) a label the workers upheld, and 17 no
# known error. The sample's third validated error, 412, is predicted right.
WRONG = {5: CAT, 17: AUTOMOBILE, 377: DOG, 390: BIRD}


@pytest.fixture
def ckpt(tmp_path, monkeypatch) -> Path:
    path = checkpoint(tmp_path / "seed.pt", "seed")
    monkeypatch.setenv("CONVATTN_CHECKPOINT", str(path))
    monkeypatch.setenv("CONVATTN_CHECKPOINTS", str(tmp_path / "none"))
    monkeypatch.delenv("CONVATTN_DATA", raising=False)
    return path


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


def _write_predictions(ckpt: Path, names, labels, wrong: dict[int, int],
                       temperatures: bool = True) -> dict[str, np.ndarray]:
    """A predictions file beside ``ckpt``: every image right with 0.91 except ``wrong``
    (index: predicted class, with 0.95), with the temperatures evaluate stores."""
    probs = np.full((len(labels), 10), 0.01, dtype=np.float32)
    probs[np.arange(len(labels)), labels] = 0.91
    for i, pred in wrong.items():
        probs[i] = 0.05 / 9
        probs[i, pred] = 0.95
    arrays = {"index": np.arange(len(names)), "names": np.array(names),
              "labels": np.asarray(labels), "probs": probs, "classes": np.array(CLASSES),
              "source": np.array("test")}
    if temperatures:
        arrays.update(calibration_arrays(np.asarray(labels), probs))
    np.savez(ckpt.with_name(ckpt.stem + ".predictions.npz"), **arrays)
    return arrays


def _sample_predictions(ckpt: Path, temperatures: bool = True) -> dict[str, np.ndarray]:
    _, names, labels = sample()
    return _write_predictions(ckpt, names, labels, WRONG, temperatures)


def _figure(at: AppTest, title: str) -> dict:
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        if spec["layout"].get("title", {}).get("text", "").startswith(title):
            return spec
    raise AssertionError(f"no chart titled {title!r}")


def _array(value) -> np.ndarray:
    """A plotly figure's array: a list, or numpy's bytes in base64 ("bdata")."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
    return np.array(value, dtype=float)


def _gallery(at: AppTest) -> list[str]:
    return [c.value.split()[0] for c in at.caption if c.value.startswith("#")]


def _metrics(at: AppTest) -> dict[str, tuple[str, str]]:
    return {m.label: (m.value, m.proto.delta) for m in at.metric}


def _number(at: AppTest) -> int:
    (number,) = [n for n in at.number_input if n.label.startswith("Image number")]
    return number.value


# ---------------------------------------------------------------- known label errors


def test_misclassifications_badges_and_hides_the_known_label_errors(ckpt):
    _sample_predictions(ckpt)
    at = open_page(MIS, mis_order="index")
    _ok(at)
    assert _gallery(at) == ["#5", "#17", "#377", "#390"]
    badges = [c.value for c in at.caption if "-badge[" in c.value]
    assert badges == [":gray-badge[label upheld] 3 of 5 saw airplane",
                      ":orange-badge[label error] 2 of 5 saw dog",
                      ":orange-badge[label error] 2 of 5 saw bird"]
    # The sample holds 3 of the 54 validated errors (377, 390, 412) and no correctable one.
    _, names, labels = sample()
    preds = labels.copy()
    for i, p in WRONG.items():
        preds[i] = p
    expected = corrected_accuracy(list(names), labels, preds, CLASSES)
    assert (expected["validated"], expected["corrected"]) == (3, 0)
    assert _metrics(at) == {  # no correctable label to fix: that figure is left out
        "Accuracy as labelled": ("99.60%", ""),
        "Without the 3 validated errors": ("99.80%", "+0.20 points")}  # 995 of 997
    assert any("Among these 1,000 images: 3 validated, 0 correctable. Known CIFAR" in c.value
               for c in at.caption)
    assert expected["accuracy_without_errors"] == pytest.approx(100 * 995 / 997)
    # Hidden: out of the confusion counts and the gallery.
    toggle = at.toggle(key="mis_hide_errors")
    assert toggle.label == "Hide known label errors (3 here)" and not toggle.value
    toggle.set_value(True).run()
    _ok(at)
    heatmap = next(t for t in json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
                   if t["type"] == "heatmap")
    counts = _array(heatmap["z"]).reshape(10, 10)
    assert counts.sum() == 997 and np.trace(counts) == 995
    assert any("**2 images** with any true class, any prediction, misclassified only, known "
               "label errors hidden" in m.value for m in at.markdown)
    assert _gallery(at) == ["#5", "#17"]


def _gallery_boxes(at: AppTest) -> dict[str, list[str]]:
    """Each gallery image's bordered box: its image number, then what the box holds in
    order (``image``, the captions' text, ``button <key>``)."""
    boxes = {}

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if (type(node).__name__ == "Block" and proto is not None
                and proto.WhichOneof("type") == "flex_container" and proto.flex_container.border):
            held = []
            for child in node.children.values():
                kind = type(child).__name__
                held.append(child.value if kind == "Caption" else
                            f"button {child.key}" if kind == "Button" else kind.lower())
            number = next((h.split()[0] for h in held if h.startswith("#")), None)
            if number:
                boxes[number] = held
        for child in (getattr(node, "children", None) or {}).values():
            walk(child)

    walk(at._tree)
    return boxes


def test_a_badge_sits_in_its_own_images_box(ckpt):
    # Under the button, a badge looked like a note on the image below it (the next row's);
    # now each image has a box, and its badge lies in it, under its caption, above its button.
    _sample_predictions(ckpt)
    at = open_page(MIS, mis_order="index")
    _ok(at)
    boxes = _gallery_boxes(at)
    assert list(boxes) == ["#5", "#17", "#377", "#390"]
    for number, badge in [("#5", ":gray-badge[label upheld] 3 of 5 saw airplane"),
                          ("#377", ":orange-badge[label error] 2 of 5 saw dog"),
                          ("#390", ":orange-badge[label error] 2 of 5 saw bird")]:
        image, caption, *rest = boxes[number]
        assert image == "image" and caption.startswith(number)
        assert rest == [badge, f"button mis_{number[1:]}"]
    assert boxes["#17"][2:] == ["button mis_17"]  # no badge: nothing between


def test_the_ablation_gallery_badges_them_too(ckpt):
    write_ablation(ckpt)  # attention fixes 3, 4, 5 and 150, of which 5 is a label upheld
    at = open_page("5_Ablation.py", methods=[], flip_which="fixed")
    _ok(at)
    assert sorted(_gallery(at)) == ["#150", "#3", "#4", "#5"]
    assert [c.value for c in at.caption if "-badge[" in c.value] == [
        ":gray-badge[label upheld] 3 of 5 saw airplane"]


@pytest.fixture
def jpeg_test_split(tmp_path, monkeypatch) -> Path:
    """A test split named as CIFAR-10's JPEG copy: 3 correctable errors (cat/0129 is a dog,
    cat/0235 a frog, airplane/0166 a ship), 1 more validated one (cat/0077), 1 label the
    workers upheld (horse/0002), and image 0000 of every other class."""
    root = tmp_path / "cifar10-jpeg"
    files = ["cat/0129", "cat/0235", "cat/0077", "airplane/0166", "horse/0002",
             *(f"{c}/0000" for c in CLASSES if c != "horse")]
    rng = np.random.default_rng(0)
    for f in files:
        path = root / "test" / f"{f}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    monkeypatch.setenv("CONVATTN_DATA", str(root))
    return root


def test_accuracy_with_the_correctable_labels_fixed_and_the_errors_left_out(
        ckpt, jpeg_test_split):
    data = load_split(jpeg_test_split, "test")
    row = {n: i for i, n in enumerate(data.names)}
    wrong = {row["test/cat/0129.jpg"]: DOG,  # right once corrected
             row["test/airplane/0166.jpg"]: CLASSES.index("ship"),  # the same
             row["test/cat/0077.jpg"]: DOG,  # validated, not correctable: left out
             row["test/horse/0002.jpg"]: DOG}  # upheld: counts as wrong
    # cat/0235 is predicted cat: right as labelled, wrong once corrected to frog.
    _write_predictions(ckpt, data.names, data.labels, wrong)
    at = open_page(MIS)
    _ok(at)
    assert not at.error
    # 14 images: 10 right as labelled; 11 with the labels fixed; 9 of the 10 that are not
    # validated errors.
    assert _metrics(at) == {
        "Accuracy as labelled": ("71.43%", ""),
        "With the 3 correctable labels fixed": ("78.57%", "+7.14 points"),
        "Without the 4 validated errors": ("90.00%", "+18.57 points")}
    expected = corrected_accuracy(data.names, data.labels,
                                  [wrong.get(i, lab) for i, lab in enumerate(data.labels)],
                                  CLASSES)
    assert (expected["fixed"], expected["broken"]) == (2, 1)
    assert any("Among these 14 images: 4 validated, 3 correctable; fixing those labels turns "
               "2 answers right and 1 wrong." in c.value for c in at.caption)
    assert at.toggle(key="mis_hide_errors").label == "Hide known label errors (4 here)"


def test_inspect_says_what_the_workers_saw(ckpt):
    _sample_predictions(ckpt)
    at = open_page(INSPECT, methods=[], picked_image=377)
    _ok(at)
    (warning,) = at.warning
    assert warning.value == (
        "**Known label error**: labelled cat, 2 of 5 workers saw dog (2 saw cat, 0 both, "
        "1 neither; Northcutt et al. 2021). No other class has a majority, so there is no "
        "label to put in its place.")
    at = open_page(INSPECT, methods=[], picked_image=5)
    assert not at.warning
    assert any(c.value == "Label upheld: confident learning doubted the label airplane, but "
               "3 of 5 workers saw airplane (1 saw cat, 1 both, 0 neither; Northcutt et al. "
               "2021)." for c in at.caption)
    at = open_page(INSPECT, methods=[], picked_image=17)
    assert not at.warning and not any("Northcutt" in c.value for c in at.caption)


# ---------------------------------------------------------------- calibration


def test_reliability_and_ece_before_and_after_the_stored_temperatures(ckpt):
    stored = _sample_predictions(ckpt)
    at = open_page(MIS)
    _ok(at)
    labels, probs = stored["labels"], stored["probs"]
    before = reliability(labels, probs)
    after = reliability(labels, calibrated(probs, stored, np.arange(len(labels))))
    assert after.ece < before.ece
    ts = " and ".join(f"{t:.3f}" for t in sorted(stored["temperatures"]))
    assert any(f"**{100 * before.ece:.2f}%** as the model says, **{100 * after.ece:.2f}%** "
               f"after temperature scaling (T = {ts}: the temperatures stored in "
               r"seed\.predictions\.npz" in c.value for c in at.caption)
    for title, rel in (("As the model says", before), ("After temperature scaling", after)):
        fig = _figure(at, title)
        assert fig["layout"]["title"]["text"] == f"{title}: ECE {100 * rel.ece:.2f}%"
        bars = next(t for t in fig["data"] if t.get("name") == "accuracy")
        full = rel.count > 0
        np.testing.assert_allclose(_array(bars["y"]), rel.accuracy[full])
        np.testing.assert_allclose(_array(bars["x"]),
                                   ((rel.edges[:-1] + rel.edges[1:]) / 2)[full])


def test_without_stored_temperatures_the_set_is_cross_fitted(ckpt):
    stored = _sample_predictions(ckpt, temperatures=False)
    at = open_page(MIS)
    _ok(at)
    scaled, ts = cross_fit_temperature(stored["labels"], stored["probs"])
    after = reliability(stored["labels"], scaled)
    assert any(f"**{100 * after.ece:.2f}%** after temperature scaling (T = {ts[0]:.3f} and "
               f"{ts[1]:.3f}: temperatures fitted here on each random half" in c.value
               for c in at.caption)


def _topk(at: AppTest) -> dict[str, float]:
    (bars,) = [h.proto.body for h in at.get("html") if 'class="topk"' in h.proto.body]
    return {html.unescape(c): float(p) for c, p in
            re.findall(r'data-class="([^"]*)" data-p="([^"]*)"', bars)}


def test_inspect_calibrated_probabilities_use_the_other_folds_temperature(ckpt):
    stored = _sample_predictions(ckpt)
    at = open_page(INSPECT, methods=[], picked_image=17, topk=10)
    _ok(at)
    raw = _topk(at)
    toggle = at.toggle(key="calibrated")
    assert not toggle.disabled and not toggle.value
    toggle.set_value(True).run()
    _ok(at)
    shown = _topk(at)
    t = stored["temperatures"][1 - stored["fold"][17]]  # fitted on the fold without 17
    assert t != stored["temperatures"][stored["fold"][17]]
    expected = calibrated(np.array([[raw[c] for c in CLASSES]]), stored, np.array([17]))[0]
    np.testing.assert_allclose([shown[c] for c in CLASSES], expected, rtol=1e-4, atol=1e-6)
    assert any(c.value == f"Temperature-scaled with T = {t:.3f}, fitted on the half of the "
               r"1,000 images of seed\.predictions\.npz that does not hold this one, so its "
               "label played no part." for c in at.caption)
    # An upload is in no fold: it gets the T fitted on every image of the file.
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), (200, 30, 30)).save(buf, format="PNG")
    at = open_page(INSPECT, methods=[], topk=10, calibrated=True, source="Upload",
                   **{KEPT_UPLOAD: ("red.png", buf.getvalue())})
    _ok(at)
    t_all = float(stored["temperature"])
    assert any(c.value == f"Temperature-scaled with T = {t_all:.3f}, fitted on all 1,000 "
               r"images of seed\.predictions\.npz (this image is not among them)."
               for c in at.caption)


def test_calibration_switch_is_off_without_stored_temperatures(ckpt):
    _sample_predictions(ckpt, temperatures=False)
    at = open_page(INSPECT, methods=[], calibrated=True)
    _ok(at)
    toggle = at.toggle(key="calibrated")
    assert toggle.disabled
    assert toggle.help == (r"seed\.pt has no predictions file with temperatures: "
                           "`python -m convattn.evaluate` on the checkpoint writes one "
                           "beside it.")
    assert not any(c.value.startswith("Temperature-scaled") for c in at.caption)


# ---------------------------------------------------------------- likely label errors


def test_likely_label_errors_ranks_flags_badges_and_opens_in_inspect(ckpt):
    stored = _sample_predictions(ckpt)
    at = open_page(LIKELY)
    _ok(at)
    issues = rank_label_issues(stored["labels"], stored["probs"])
    flagged = int(issues.flagged.sum())
    assert flagged >= len(WRONG)
    assert any(f"Confident learning flags **{flagged:,} of the 1,000 images** "
               f"({flagged / 10:.1f}%) as likely mislabelled." in m.value for m in at.markdown)
    order = [i for i in issues.order if issues.flagged[i]]
    assert _gallery(at) == [f"#{i}" for i in order[:32]]
    assert _gallery(at)[:4] == ["#5", "#17", "#377", "#390"]  # p(label) 0.0056, the rest 0.91
    # Of the sample's 3 validated errors, 377 and 390 are flagged; 412 is not.
    median = int(np.median(issues.rank[[377, 390, 412]])) + 1
    assert any(f"2 of the 3 known label errors among these images (Northcutt et al. 2021) "
               f"are flagged; their median place in the ranking is {median:,} of 1,000."
               in c.value for c in at.caption)
    assert ":orange-badge[label error] 2 of 5 saw dog" in [c.value for c in at.caption]
    # Every image, lowest label quality first, and one class.
    at.radio(key="lie_show").set_value("all").run()
    assert any("**1,000 images**, least likely label first." in m.value for m in at.markdown)
    assert _gallery(at) == [f"#{i}" for i in issues.order[:32]]
    at.selectbox(key="lie_class").set_value("cat").run()
    assert _gallery(at)[:3] == ["#377", "#390", "#300"]
    at.button(key="lie_390").click().run()
    _ok(at)
    assert _number(at) == 390
    assert any("(#390) · true class" in c.value for c in at.caption)


def test_likely_label_errors_of_a_set_without_predictions_file(ckpt, tmp_path, monkeypatch):
    # The user's own images: predictions computed here, ranked, and cached per set.
    root = tmp_path / "mine"
    rng = np.random.default_rng(1)
    for c in CLASSES:
        (root / "test" / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                root / "test" / c / f"img{i}.png")
    monkeypatch.setenv("CONVATTN_DATA", str(root))
    import convattn.trust.label_issues

    calls = []
    real = convattn.trust.label_issues.rank_label_issues
    monkeypatch.setattr(convattn.trust.label_issues, "rank_label_issues",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    at = open_page(LIKELY)
    _ok(at)
    data = load_split(root, "test")
    model, info = load_checkpoint(ckpt)
    probs = predict_images(model, data.images, info["mean"], info["std"])
    issues = real(data.labels, probs)
    flagged = int(issues.flagged.sum())
    assert any(f"**{flagged:,} of the 30 images**" in m.value for m in at.markdown)
    at.radio(key="lie_show").set_value("all").run()
    assert _gallery(at) == [f"#{i}" for i in issues.order]
    assert not any("-badge[" in c.value for c in at.caption)
    assert calls == [1]  # the second run read the cached ranking
    # No known error among them: Misclassifications has no switch and no other accuracy.
    switch(at, MIS)
    _ok(at)
    assert "mis_hide_errors" not in [t.key for t in at.toggle] and not at.metric


# ---------------------------------------------------------------- nearest training images


def test_nearest_training_images(ckpt, tmp_path, monkeypatch):
    root = tmp_path / "data"
    rng = np.random.default_rng(2)
    for split, per_class in (("train", 2), ("test", 1)):
        for c in CLASSES:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                    root / split / c / f"{i}.png")
    monkeypatch.setenv("CONVATTN_DATA", str(root))
    at = open_page(INSPECT, methods=[], picked_image=3)
    _ok(at)
    assert not any("distance" in c.value for c in at.caption)
    assert at.button(key="nearest").label == "Find the 8 nearest training images"
    at.button(key="nearest").click().run()
    _ok(at)
    model, info = load_checkpoint(ckpt)
    train, test = load_split(root, "train"), load_split(root, "test")
    # As the app keeps them: float16 (see convattn.trust.neighbours.cached_features).
    idx, dist = nearest(image_features(model, info, train.images).astype(np.float16),
                        image_features(model, info, test.images[3:4]), k=8)
    shown = [(c.value, c.proto.help) for c in at.caption if "  \ndistance " in c.value]
    assert shown == [(f"**{train.classes[train.labels[i]]}**  \ndistance {d:.3f}",
                      markdown.literal(train.names[i])) for i, d in zip(idx[0], dist[0])]
    assert shown[0][1].startswith("train\\/")
    assert len(list(cache_dir().glob("*.npy"))) == 1  # kept on disk
    # Without a train split there is no button, only a line saying what would show it.
    at = open_page(INSPECT, methods=[], data_folder="")
    _ok(at)
    assert "nearest" not in [b.key for b in at.button]
    assert any(c.value.startswith("Name a data folder that also holds a train split")
               for c in at.caption)

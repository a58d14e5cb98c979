"""The known CIFAR-10 test label errors shipped in the package, and accuracy around them."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from convattn.trust.label_errors import corrected_accuracy, known_label_errors, label_error_lookup

SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "label-errors"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck"]


def test_counts_follow_the_papers_rule():
    errors = known_label_errors()
    assert len(errors) == 275
    assert len({e["index"] for e in errors}) == len({e["name"] for e in errors}) == 275
    assert all(sum(e["votes"].values()) == 5 for e in errors)
    validated = [e for e in errors if e["validated"]]
    assert len(validated) == 54
    assert validated == [e for e in errors if e["votes"]["given"] < 3]
    correctable = [e for e in errors if e["correctable"]]
    assert len(correctable) == 18
    assert all(e["validated"] and e["votes"]["guessed"] >= 3 for e in correctable)


def test_most_common_confusions_match_the_readme():
    pairs = Counter((e["given"], e["suggested"]) for e in known_label_errors()
                    if e["validated"])
    assert pairs[("cat", "dog")] == 7
    assert pairs[("automobile", "truck")] == 5
    assert pairs[("airplane", "ship")] == 4
    assert pairs.most_common(3) == [(("cat", "dog"), 7), (("automobile", "truck"), 5),
                                    (("airplane", "ship"), 4)]


def test_names_follow_the_folder_layout():
    for e in known_label_errors():
        split, cls, file = e["name"].split("/")
        assert (split, cls) == ("test", e["given"])
        assert file.endswith(".jpg") and 0 <= int(file[:4]) < 1000
        assert e["suggested"] != e["given"] and e["suggested"] in CLASSES


@pytest.mark.skipif(not SOURCE.is_dir(), reason="the shared label-errors folder is absent")
def test_names_and_entries_recomputed_from_the_source():
    labels = np.load(SOURCE / "cifar10_test_set_original_labels.npy").astype(np.int64)
    mturk = {e["id"]: e for e in json.loads((SOURCE / "cifar10_mturk.json").read_text())}
    errors = {e["index"]: e for e in known_label_errors()}
    assert errors.keys() == mturk.keys()
    for i in (20, 52, 9227, 9999) + tuple(sorted(errors)[::37]):
        if i not in errors:
            continue
        label = labels[i]
        number = int((labels[:i] == label).sum())  # same-label indices before i
        assert errors[i]["name"] == f"test/{CLASSES[label]}/{number:04d}.jpg"
        assert errors[i]["given"] == mturk[i]["given_original_label_name"]
        assert errors[i]["suggested"] == mturk[i]["our_guessed_label_name"]
        assert errors[i]["votes"] == {k: mturk[i]["mturk"][k]
                                      for k in ("given", "guessed", "both", "neither")}


def test_entries_are_fresh_copies():
    known_label_errors()[0]["votes"]["given"] = 99
    assert known_label_errors()[0]["votes"]["given"] != 99


def test_lookup_by_jpeg_and_torchvision_names():
    e = next(e for e in known_label_errors() if e["correctable"])
    found = label_error_lookup([e["name"], "test/cat/9999.jpg", f"test/{e['index']}",
                                e["name"].replace("/", "\\")])
    assert set(found) == {e["name"], f"test/{e['index']}", e["name"].replace("/", "\\")}
    assert all(v == e for v in found.values())


def test_corrected_accuracy_against_a_hand_computation():
    errors = known_label_errors()
    fixable = next(e for e in errors if e["correctable"])
    unfixable = next(e for e in errors if e["validated"] and not e["correctable"])
    confirmed = next(e for e in errors if not e["validated"])
    clean = "test/frog/0999.jpg"
    assert clean not in {e["name"] for e in errors}
    idx = CLASSES.index
    names = [fixable["name"], unfixable["name"], confirmed["name"], clean]
    labels = [idx(fixable["given"]), idx(unfixable["given"]), idx(confirmed["given"]),
              idx("frog")]
    # Model: says the suggested class on the fixable image (wrong as labelled, right once
    # corrected), the given class on the other two flagged ones, and frog on the frog.
    preds = [idx(fixable["suggested"]), labels[1], labels[2], idx("frog")]
    r = corrected_accuracy(names, labels, preds, CLASSES)
    assert r["accuracy"] == pytest.approx(100 * 3 / 4)
    assert r["accuracy_corrected"] == pytest.approx(100 * 4 / 4)
    # Without the two validated errors: the confirmed image and the frog, both right.
    assert r["accuracy_without_errors"] == pytest.approx(100 * 2 / 2)
    assert (r["count"], r["known"], r["validated"], r["corrected"]) == (4, 3, 2, 1)
    assert (r["count_without_errors"], r["fixed"], r["broken"]) == (2, 1, 0)
    # Probabilities give the same answer as their argmax.
    probs = np.eye(10)[preds]
    assert corrected_accuracy(names, labels, probs, CLASSES) == r


def test_corrected_accuracy_refuses_other_labels():
    e = known_label_errors()[0]
    wrong = (CLASSES.index(e["given"]) + 1) % 10
    with pytest.raises(ValueError, match="not its test images"):
        corrected_accuracy([e["name"]], [wrong], [0], CLASSES)
    with pytest.raises(ValueError, match="one per image"):
        corrected_accuracy([e["name"]], [0, 1], [0], CLASSES)
    with pytest.raises(ValueError, match="class indices"):
        corrected_accuracy(["a"], [10], [0], CLASSES)


def test_package_data_is_declared():
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert "resources/cifar10_label_errors.json" in text

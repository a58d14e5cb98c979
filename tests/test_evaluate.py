"""Evaluation: the predictions file the app reads, and the summary numbers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_CLASSES, make_image_folder

from convattn.cli.evaluate import main
from convattn.errors import DataError
from convattn.files.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from convattn.files.data import CIFAR10_MEAN, CIFAR10_STD, load_split
from convattn.files.loader import TensorLoader
from convattn.files.predictions import load_predictions, predictions_path
from convattn.jobs.evaluation import EvalConfig, evaluate_checkpoint, predict, summarise
from convattn.nn.models import create_model
from convattn.readout.attention import attention_modules
from convattn.trust.calibration import expected_calibration_error


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained 3-class seed model: its predictions are arbitrary, not all correct."""
    torch.manual_seed(4)
    model = create_model("seed", num_classes=3)
    with torch.no_grad():
        for m in attention_modules(model).values():
            m.gamma.fill_(0.5)
    ckpt = make_checkpoint(model.eval(), "seed", {}, sorted(TINY_CLASSES), CIFAR10_MEAN,
                           CIFAR10_STD, metrics={"test_accuracy": 0.0})
    return save_checkpoint(ckpt, tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def reference_probs(checkpoint: Path, data_root: Path, mirror: bool = False
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's probabilities on the test split normalised by hand (of the mirror
    images with ``mirror``)."""
    model, info = load_checkpoint(checkpoint)
    test = load_split(data_root, "test")
    mean = torch.tensor(info["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(info["std"]).view(1, 3, 1, 1)
    x = (torch.from_numpy(test.images).permute(0, 3, 1, 2).float() / 255 - mean) / std
    if mirror:
        x = torch.flip(x, dims=[3])
    with torch.no_grad():
        return model(x).softmax(1), torch.from_numpy(test.labels)


def test_predictions_path():
    assert predictions_path("checkpoints/seed.pt") == Path("checkpoints/seed.predictions.npz")


def test_evaluate_checkpoint_writes_predictions(checkpoint, tiny_folder):
    result = evaluate_checkpoint(checkpoint, EvalConfig(data=str(tiny_folder), device="cpu",
                                                        batch_size=5), progress=False)
    path = predictions_path(checkpoint)
    assert result["predictions"] == str(path)
    pred = load_predictions(path)
    test = load_split(tiny_folder, "test")
    n = len(test)
    assert set(pred) >= {"index", "names", "labels", "probs", "classes", "source"}
    assert pred["index"].tolist() == list(range(n))
    assert pred["names"].tolist() == test.names
    assert pred["labels"].tolist() == test.labels.tolist()
    assert pred["classes"].tolist() == sorted(TINY_CLASSES)
    assert pred["probs"].shape == (n, 3) and pred["probs"].dtype == np.float32
    assert np.allclose(pred["probs"].astype(np.float32).sum(1), 1.0, atol=2e-3)
    assert str(pred["source"]) == f"{tiny_folder}:test"

    # The probabilities are the model's, on images normalised with the checkpoint's mean/std.
    probs, labels = reference_probs(checkpoint, tiny_folder)
    assert np.allclose(pred["probs"].astype(np.float32), probs.numpy(), atol=1e-3)

    correct = probs.argmax(1) == labels
    assert 0 < correct.sum() < n  # an untrained model: some right, some wrong
    assert result["count"] == n
    assert result["accuracy"] == pytest.approx(100.0 * correct.float().mean().item())
    confusion = np.array(result["confusion"])
    assert confusion.shape == (3, 3) and confusion.sum() == n
    assert confusion.sum(1).tolist() == np.bincount(labels.numpy(), minlength=3).tolist()
    assert np.trace(confusion) == correct.sum().item()
    for c in range(3):
        in_class = labels == c
        assert result["per_class_accuracy"][c] == pytest.approx(
            100.0 * correct[in_class].float().mean().item())


def test_summarise_against_hand_counts():
    probs = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8],
                          [0.6, 0.3, 0.1], [0.3, 0.3, 0.4]])
    labels = torch.tensor([0, 1, 1, 2, 2])
    s = summarise(probs, labels, 3)
    assert s["accuracy"] == pytest.approx(60.0)
    assert s["confusion"] == [[1, 0, 0], [0, 1, 1], [1, 0, 1]]
    assert s["per_class_accuracy"] == pytest.approx([100.0, 50.0, 50.0])
    assert s["count"] == 5


def test_evaluate_cli_prints_a_report(checkpoint, tiny_folder, tmp_path, capsys):
    out = tmp_path / "p.npz"
    before = checkpoint.read_bytes()
    assert main([str(checkpoint), "--data", str(tiny_folder), "--device", "cpu",
                 "--out", str(out)]) == 0
    report = capsys.readouterr().out
    # Predictions only: the checkpoint is read, never written, unless --fit-ood is given.
    assert checkpoint.read_bytes() == before
    assert ("the checkpoint was left unchanged (--fit-ood also fits the out-of-distribution "
            "flag into it)") in report.splitlines()
    assert "accuracy" in report and "confusion" in report and str(out) in report
    pred = load_predictions(out)
    assert pred["probs"].shape == (12, 3)
    # Calibration: the ECE of the stored probabilities, and the temperatures kept with them.
    ece = expected_calibration_error(pred["labels"], pred["probs"])
    assert f"calibration error (ECE, 15 bins) {100 * ece:.2f}%" in report
    assert pred["fold"].shape == (12,) and pred["temperatures"].shape == (2,)
    assert "label errors" not in report  # three made-up classes: not CIFAR-10's test set


def test_evaluate_refuses_data_with_other_classes(checkpoint, tmp_path, capsys):
    other = make_image_folder(tmp_path / "other", classes=("x", "y", "z"), train_per_class=1,
                              test_per_class=1)
    with pytest.raises(DataError, match="classes"):
        evaluate_checkpoint(checkpoint, EvalConfig(data=str(other), device="cpu"),
                            progress=False)
    assert main([str(checkpoint), "--data", str(tmp_path / "missing"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "missing" in err[0]


def test_loader_and_predict_agree_with_reference(checkpoint, tiny_folder):
    model, info = load_checkpoint(checkpoint)
    loader = TensorLoader(load_split(tiny_folder, "test"), 5, tuple(info["mean"]),
                          tuple(info["std"]))
    probs, labels = predict(model, loader)
    expected, expected_labels = reference_probs(checkpoint, tiny_folder)
    torch.testing.assert_close(probs, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(labels, expected_labels)
    assert not model.training


def test_flip_tta_averages_each_image_with_its_mirror(checkpoint, tiny_folder, capsys):
    assert main([str(checkpoint), "--data", str(tiny_folder), "--device", "cpu",
                 "--tta-flip"]) == 0
    report = capsys.readouterr().out
    assert "with flip test-time augmentation" in report
    # Its own file: the app's predictions file stays the plain model's.
    pred = load_predictions(predictions_path(checkpoint, flip=True))
    assert str(pred["source"]).endswith("(flip TTA)")
    plain, _ = reference_probs(checkpoint, tiny_folder)
    mirrored, _ = reference_probs(checkpoint, tiny_folder, mirror=True)
    assert not torch.allclose(plain, mirrored, atol=1e-3)  # the mirror really differs
    assert np.allclose(pred["probs"].astype(np.float32), ((plain + mirrored) / 2).numpy(),
                       atol=1e-3)


def test_an_unwritable_output_is_refused_before_evaluating(checkpoint, tiny_folder, tmp_path,
                                                           capsys, monkeypatch):
    import convattn.jobs.evaluation as ev

    monkeypatch.setattr(ev, "load_checkpoint", lambda *a: pytest.fail("evaluated anyway"))
    assert main([str(checkpoint), "--data", str(tiny_folder), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path} is a folder: give the name of a file to write."


@pytest.fixture
def shipped(checkpoint, tmp_path, monkeypatch) -> Path:
    """A copy of the checkpoint in a stand-in for the repository's checkpoints/ folder,
    with its shipped predictions file; the working directory is tmp_path."""

    folder = tmp_path / "repo-checkpoints"
    folder.mkdir()
    monkeypatch.setenv("CONVATTN_CHECKPOINTS", str(folder.resolve()))
    monkeypatch.chdir(tmp_path)
    copy = folder / "tiny.pt"
    copy.write_bytes(checkpoint.read_bytes())
    predictions_path(copy).write_bytes(b"the shipped predictions")
    return copy


def test_a_shipped_predictions_file_is_left_alone(shipped, tiny_folder, tmp_path, capsys):
    shipped_file = predictions_path(shipped)
    original = shipped.read_bytes()
    assert main([str(shipped), "--data", str(tiny_folder), "--device", "cpu"]) == 0
    assert shipped_file.read_bytes() == b"the shipped predictions"
    assert shipped.read_bytes() == original
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["tiny.predictions.npz"]
    written = Path("runs") / "tiny.predictions.npz"
    assert load_predictions(tmp_path / written)["probs"].shape == (12, 3)
    report = capsys.readouterr().out.splitlines()
    assert report[-2] == f"predictions written to {written}"
    assert report[-1] == (f"{shipped} is shipped with the repository, so its "
                          f"tiny.predictions.npz was left as it is and {written} written "
                          "instead (--overwrite-shipped replaces the shipped file).")


def test_overwrite_shipped_replaces_it(shipped, tiny_folder, capsys):
    assert main([str(shipped), "--data", str(tiny_folder), "--device", "cpu",
                 "--overwrite-shipped"]) == 0
    assert load_predictions(predictions_path(shipped))["probs"].shape == (12, 3)
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"predictions written to {predictions_path(shipped)}")
    assert not Path("runs").exists()


def test_out_naming_a_shipped_file_is_refused(shipped, tiny_folder, capsys):
    target = predictions_path(shipped)
    assert main([str(shipped), "--data", str(tiny_folder), "--device", "cpu",
                 "--out", str(target)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {target} is shipped with the repository: pass --overwrite-shipped to "
        "replace it, or --out another file."]
    assert target.read_bytes() == b"the shipped predictions"


def test_evaluate_reads_convattn_data_outside_the_repository(checkpoint, tiny_folder,
                                                             tmp_path):
    """The README's command from another folder, with the data named by the environment."""
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, CONVATTN_DATA=str(tiny_folder), PYTHONPATH=str(repo),
               OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-m", "convattn.evaluate", str(checkpoint),
                             "--device", "cpu", "--out", "p.npz"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "predictions written to p.npz" in result.stdout
    assert str(load_predictions(tmp_path / "p.npz")["source"]) == f"{tiny_folder}:test"

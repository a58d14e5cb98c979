"""Checkpoints: exact round trips, and every bad file refused with one clear error."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from convattn.cli.evaluate import main as evaluate_main
from convattn.files.checkpoint import (
    CheckpointError,
    OutputError,
    atomic_write,
    load_checkpoint,
    make_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from convattn.files.data import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, pack_folder
from convattn.files.info import CheckpointInfo
from convattn.files.shipped import sample_path
from convattn.nn.models import create_model, list_models
from convattn.readout.attention import attention_modules

REPO = Path(__file__).resolve().parents[1]

HISTORY = [
    {"epoch": 1, "train_loss": 2.1, "train_accuracy": 20.0, "test_accuracy": 25.0,
     "lr": 1e-3, "gammas": {"attention": 0.01}, "train_seconds": 1.0, "elapsed_seconds": 1.2},
    {"epoch": 2, "train_loss": 1.9, "train_accuracy": 30.0, "test_accuracy": 31.5,
     "lr": 1e-3, "gammas": {"attention": 0.02}, "train_seconds": 1.0, "elapsed_seconds": 2.4},
]


def trained_looking(arch: str) -> nn.Module:
    """A model whose weights, gammas and BatchNorm statistics all differ from a fresh one."""
    torch.manual_seed(3)
    model = create_model(arch)
    with torch.no_grad():
        for m in attention_modules(model).values():
            m.gamma.fill_(0.37)
        model.train()
        model(torch.randn(2, 3, 32, 32))  # moves BatchNorm running stats off 0 / 1
    return model.eval()


def write(model: nn.Module, arch: str, path: Path, half: bool = False, **extra) -> Path:
    ckpt = make_checkpoint(model, arch, {}, list(CIFAR10_CLASSES), CIFAR10_MEAN, CIFAR10_STD,
                           metrics={"test_accuracy": 31.5}, history=HISTORY, **extra)
    return save_checkpoint(ckpt, path, half=half)


@pytest.mark.parametrize("arch", list_models())
def test_round_trip_gives_identical_logits(arch, tmp_path):
    model = trained_looking(arch)
    path = write(model, arch, tmp_path / f"{arch}.pt")
    loaded, info = load_checkpoint(path)
    assert type(loaded) is type(model)
    assert not loaded.training
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_info_describes_the_model(tmp_path):
    model = trained_looking("seed")
    path = write(model, "seed", tmp_path / "seed.pt", train_config={"epochs": 2})
    _, info = load_checkpoint(path)
    assert info["arch"] == "seed"
    assert info["model_config"] == {}
    assert info["classes"] == list(CIFAR10_CLASSES)
    assert info["classes"][:3] == ["airplane", "automobile", "bird"]
    assert info["mean"] == pytest.approx(CIFAR10_MEAN)
    assert info["std"] == pytest.approx(CIFAR10_STD)
    assert info["test_accuracy"] == 31.5
    assert info["history"] == HISTORY
    assert info["train_config"] == {"epochs": 2}
    assert info["path"] == str(path)
    assert "state_dict" not in info


def test_info_is_typed_and_normalises_images_as_the_model_was_trained(tmp_path):
    model = trained_looking("seed")
    path = write(model, "seed", tmp_path / "seed.pt", train_config={"epochs": 2}, epoch=2)
    _, info = load_checkpoint(path)
    assert isinstance(info, CheckpointInfo)
    assert (info.arch, info.classes, info.num_classes) == ("seed", list(CIFAR10_CLASSES), 10)
    assert info.test_accuracy == 31.5 and info.history == HISTORY
    assert info.train_config == {"epochs": 2} and info.path == str(path)
    assert info["epoch"] == 2 and info.get("epoch") == 2  # other keys the file holds
    assert info.get("nothing", "default") == "default" and "nothing" not in info
    with pytest.raises(KeyError):
        info["nothing"]
    pixels = np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3)
    x = info.normalise(pixels)
    assert x.shape == (2, 3, 4, 5)
    expected = (pixels.transpose(0, 3, 1, 2) / 255 - np.array(CIFAR10_MEAN)[None, :, None, None]
                ) / np.array(CIFAR10_STD)[None, :, None, None]
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert info.normalise(pixels[0]).shape == (1, 3, 4, 5)  # one image gets a batch of one


def test_half_round_trip_is_close_and_loads_as_fp32(tmp_path):
    model = trained_looking("seed")
    full = write(model, "seed", tmp_path / "full.pt")
    half = write(model, "seed", tmp_path / "half.pt", half=True)
    stored = read_checkpoint(half)["state_dict"]
    assert stored["attention.conv_q.weight"].dtype == torch.float16
    assert stored["bn1.num_batches_tracked"].dtype == torch.int64  # integers untouched
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded, _ = load_checkpoint(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected, got = model(images), loaded(images)
    torch.testing.assert_close(got, expected, atol=2e-2, rtol=2e-2)
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_checkpoint_is_written_atomically(tmp_path):
    path = write(trained_looking("seed-noattn"), "seed-noattn", tmp_path / "m.pt")
    write(trained_looking("seed-noattn"), "seed-noattn", path)  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # no temporary left


class Payload:
    """Unpickling this creates ``marker``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a phrase its error must contain)."""
    files: dict[str, tuple[Path, str]] = {}
    good = write(trained_looking("seed-noattn"), "seed-noattn", tmp_path / "good.pt")

    evil = tmp_path / "evil.pt"
    torch.save({"format": "convattn-checkpoint", "payload": Payload(tmp_path / "marker")}, evil)
    files["malicious pickle"] = (evil, "refused")

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    files["truncated"] = (truncated, "truncated")

    png = tmp_path / "picture.pt"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(png, format="PNG")
    files["png"] = (png, "is a PNG image, not a checkpoint")

    text = tmp_path / "notes.pt"
    text.write_text("hello world\n")
    files["text"] = (text, "is a text file, not a checkpoint")

    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    files["empty"] = (empty, "is an empty file, not a checkpoint")

    foreign = tmp_path / "foreign.pt"
    foreign.write_bytes(bytes(range(256)) * 4)
    files["foreign bytes"] = (foreign, "not a PyTorch file")

    weights = tmp_path / "weights.pt"
    torch.save(create_model("seed-noattn").state_dict(), weights)
    files["plain state dict"] = (weights, "not a convattn checkpoint")

    tensor = tmp_path / "tensor.pt"
    torch.save(torch.ones(3), tensor)
    files["tensor"] = (tensor, "not a convattn checkpoint")

    unknown = tmp_path / "unknown.pt"
    ckpt = read_checkpoint(good)
    torch.save(ckpt | {"arch": "transformer-xl"}, unknown)
    files["unknown architecture"] = (unknown, "transformer-xl")

    incomplete = tmp_path / "incomplete.pt"
    torch.save({k: v for k, v in ckpt.items() if k != "state_dict"}, incomplete)
    files["incomplete"] = (incomplete, "state_dict")

    mismatched = tmp_path / "mismatched.pt"
    torch.save(ckpt | {"arch": "seed"}, mismatched)  # seed-noattn weights, seed network
    files["weights of another network"] = (mismatched, "does not match")

    files["missing"] = (tmp_path / "nowhere.pt", "does not exist")
    folder = tmp_path / "folder.pt"
    folder.mkdir()
    files["folder"] = (folder, "folder")
    return files


def test_bad_files_raise_one_clear_error_naming_the_file(tmp_path):
    files = bad_files(tmp_path)
    for kind, (path, phrase) in files.items():
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(path)
        message = str(err.value)
        assert str(path) in message, kind
        assert phrase in message, (kind, message)
        assert "\n" not in message, kind
        # No chained exception: a CLI printing it shows one sentence, nothing more.
        assert err.value.__cause__ is None, kind
        assert err.value.__context__ is None or err.value.__suppress_context__, kind


def files_that_are_something_else(tmp_path: Path, tiny_folder: Path) -> dict[Path, str]:
    """file -> what the error must say it is."""
    files: dict[Path, str] = {}
    image = np.full((8, 8, 3), 90, np.uint8)
    for fmt, kind in (("PNG", "a PNG image"), ("JPEG", "a JPEG image")):
        path = tmp_path / f"photo-{fmt}.pt"
        Image.fromarray(image).save(path, format=fmt)
        files[path] = kind
    text = tmp_path / "readme.pt"
    # The first 4 KiB end half-way through the "\u00e9": still text.
    text.write_text("n" * 4095 + "\u00e9 is not a checkpoint\n", encoding="utf-8")
    files[text] = "a text file"
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("model/weights.txt", "1 2 3")
    files[archive] = "a zip archive"
    array = tmp_path / "array.npy"
    np.save(array, np.zeros(3))
    files[array] = "a NumPy array (.npy)"
    npz = tmp_path / "arrays.npz"
    np.savez(npz, x=np.zeros(3))
    files[npz] = "a NumPy archive (.npz)"
    # convattn's own .npz files, as the commands write them (the shipped ones).
    for name, kind in (("seed.predictions.npz", "a predictions file (from python -m "
                                                "convattn.evaluate)"),
                       ("seed.ablation.npz", "an ablation file (from python -m "
                                             "convattn.ablation)"),
                       ("seed.checks.npz", "a checks file (from python -m convattn.checks)")):
        files[REPO / "checkpoints" / name] = kind
    files[pack_folder(tiny_folder, tmp_path / "pack.npz")] = ("a dataset pack (from python -m "
                                                            "convattn.data pack)")
    files[sample_path()] = "a set of images (.npz, as the bundled samples are)"
    return files


def test_a_file_that_is_not_a_checkpoint_is_called_what_it_is(tmp_path, tiny_folder, capsys):
    for path, kind in files_that_are_something_else(tmp_path, tiny_folder).items():
        expected = (f"{path} is {kind}, not a checkpoint: a convattn checkpoint (.pt, from "
                    "python -m convattn.train) is expected.")
        with pytest.raises(CheckpointError) as err:
            read_checkpoint(path)
        assert str(err.value) == expected
        assert err.value.__cause__ is None and err.value.__suppress_context__
        assert evaluate_main([str(path), "--data", str(tiny_folder), "--device", "cpu"]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [f"error: {expected}"]


def test_a_malicious_pickle_never_runs(tmp_path):
    evil, _ = bad_files(tmp_path)["malicious pickle"]
    marker = tmp_path / "marker"
    with pytest.raises(CheckpointError):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError):
        read_checkpoint(evil)
    assert not marker.exists()
    # The payload is real: an unsafe load does run it. (This is why weights_only matters.)
    torch.load(evil, weights_only=False)
    assert marker.exists()


def test_evaluate_cli_with_a_bad_checkpoint_says_one_line(tmp_path, tiny_folder, capsys):
    files = bad_files(tmp_path)
    for kind in ("malicious pickle", "truncated", "png", "unknown architecture", "missing"):
        path, phrase = files[kind]
        code = evaluate_main([str(path), "--data", str(tiny_folder), "--device", "cpu"])
        captured = capsys.readouterr()
        assert code == 2, kind
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (kind, captured.err)
        assert str(path) in lines[0] and phrase in lines[0], kind
        assert "Traceback" not in captured.err + captured.out, kind
    assert not (tmp_path / "marker").exists()


def test_an_unwritable_output_is_one_sentence_and_leaves_nothing(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match=r"^cannot create the folder .*a-file/sub: .*a-file "
                                          r"is a file, not a folder\.$"):
        atomic_write(blocker / "sub" / "m.pt", lambda f: f.write(b"x"))
    with pytest.raises(OutputError, match=r"is a folder: give the name of a file"):
        atomic_write(tmp_path, lambda f: f.write(b"x"))

    def disk_full(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match=r"^cannot write .*m\.pt \(No space left on device\)"):
        atomic_write(tmp_path / "m.pt", disk_full)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # no partial file


def test_a_truncated_file_is_one_whole_sentence_of_ours(tmp_path):
    path, _ = bad_files(tmp_path)["truncated"]
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    assert str(err.value) == (f"{path} cannot be read: it is truncated or corrupted, as a "
                              "download or copy that stopped early leaves it; copy or "
                              "download the file again.")

"""convattn.cli: flags from config dataclasses, their ranges, and where a job writes."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from conftest import TINY_CLASSES

import convattn.cli.flags as cli
import convattn.files.shipped as shipped
from convattn.cli.ablation import main as ablation_main
from convattn.cli.flags import add_config_flags, config_from_args
from convattn.errors import FlagError
from convattn.explain.ablation import ablation_path, load_ablation
from convattn.files.checkpoint import OutputError, make_checkpoint, save_checkpoint
from convattn.files.data import CIFAR10_MEAN, CIFAR10_STD
from convattn.files.predictions import predictions_path
from convattn.jobs.options import check_config
from convattn.nn.models import create_model

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Job:
    count: int = field(default=1, metadata={"help": "how many", "min": 1, "max": 9})
    rate: float = field(default=0.5, metadata={"help": "a rate", "min": 0})
    mode: str = field(default="a", metadata={"help": "mode", "choices": ["a", "b"]})


def parse(*argv: str) -> Job:
    parser = argparse.ArgumentParser()
    add_config_flags(parser, Job)
    return config_from_args(Job(), parser.parse_args(list(argv)))


def test_ranges_are_checked_centrally():
    assert parse("--count", "9", "--rate", "0") == Job(count=9, rate=0.0)
    with pytest.raises(FlagError, match=r"^--count must be 1 to 9, not 10\.$"):
        parse("--count", "10")
    with pytest.raises(FlagError, match=r"^--rate must be at least 0, not -1\.0\.$"):
        parse("--rate", "-1")
    with pytest.raises(FlagError, match=r"^--rate must be a finite number, not inf\.$"):
        check_config(Job(rate=float("inf")))


def test_help_shows_choices_and_ranges(capsys):
    parser = argparse.ArgumentParser()
    add_config_flags(parser, Job)
    text = " ".join(parser.format_help().split())
    assert "--mode MODE mode; one of: a, b (default: a)" in text
    assert "--count COUNT how many (1 to 9) (default: 1)" in text


def test_the_repository_checkpoints_are_shipped():
    assert shipped.is_shipped(REPO / "checkpoints" / "seed.pt")
    assert not shipped.is_shipped(REPO / "runs" / "seed.pt")
    seed = REPO / "checkpoints" / "seed.pt"
    out, note = shipped.output_path(seed, "", predictions_path(seed), overwrite_shipped=False)
    assert out == Path("runs/seed.predictions.npz") and "left as it is" in note
    assert shipped.output_path(seed, "", predictions_path(seed), True) == (
        predictions_path(seed), "")
    with pytest.raises(OutputError, match="shipped with the repository"):
        shipped.output_path(seed, str(predictions_path(seed)), predictions_path(seed), False)
    mine = Path("elsewhere/mine.pt")
    assert shipped.output_path(mine, "", predictions_path(mine), False) == (
        Path("elsewhere/mine.predictions.npz"), "")
    assert shipped.output_path(mine, "x.npz", predictions_path(mine), False) == (Path("x.npz"), "")


@pytest.fixture
def shipped_attention_model(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "repo-checkpoints"
    folder.mkdir()
    monkeypatch.setenv("CONVATTN_CHECKPOINTS", str(folder.resolve()))
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(3)
    model = create_model("seed", num_classes=3).eval()
    ckpt = make_checkpoint(model, "seed", {}, sorted(TINY_CLASSES), CIFAR10_MEAN, CIFAR10_STD)
    path = save_checkpoint(ckpt, folder / "tiny.pt")
    ablation_path(path).write_bytes(b"the shipped ablation")
    return path


def test_ablation_leaves_a_shipped_file_alone(shipped_attention_model, tiny_folder, capsys):
    path = shipped_attention_model
    assert ablation_main([str(path), "--data", str(tiny_folder), "--device", "cpu"]) == 0
    assert ablation_path(path).read_bytes() == b"the shipped ablation"
    assert load_ablation("runs/tiny.ablation.npz")["probs_real"].shape == (12, 3)
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2] == "written to runs/tiny.ablation.npz"
    assert "--overwrite-shipped" in lines[-1]
    assert ablation_main([str(path), "--data", str(tiny_folder), "--device", "cpu",
                          "--overwrite-shipped"]) == 0
    assert load_ablation(ablation_path(path))["probs_real"].shape == (12, 3)


def test_ablation_batch_size_is_range_checked(shipped_attention_model, capsys):
    assert ablation_main([str(shipped_attention_model), "--batch-size", "0"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --batch-size must be at least 1, not 0."]


def test_exit_on_user_error_turns_a_mistake_into_one_line(capsys):
    from convattn.errors import DataError

    def broken() -> None:
        raise DataError("no dataset at /nope.")

    assert cli.exit_on_user_error(broken) == 2
    assert capsys.readouterr().err == "error: no dataset at /nope.\n"
    assert cli.exit_on_user_error(lambda: None) == 0
    with pytest.raises(ZeroDivisionError):  # a bug is not a user's mistake: it still shows
        cli.exit_on_user_error(lambda: 1 / 0)

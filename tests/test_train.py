"""Training: a tiny run's checkpoint, exact resume, the fast preset, DDP on CPU and the CLI."""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import TINY_CLASSES, make_image_folder

from convattn.cli.train import main, parse_config
from convattn.errors import DataError, FlagError
from convattn.files.checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from convattn.files.data import CIFAR10_MEAN, CIFAR10_STD, load_split
from convattn.files.loader import TensorLoader
from convattn.jobs.ablation import AblationConfig
from convattn.jobs.evaluation import EvalConfig
from convattn.jobs.training import PRESETS, TrainConfig, _cutout, lr_factor, train

REPO = Path(__file__).resolve().parents[1]
STEPS = 3  # 24 tiny training images in batches of 8


def tiny_config(data: Path, out: Path, preset: str = "tutorial") -> TrainConfig:
    return replace(PRESETS[preset], arch="seed", data=str(data), out=str(out), epochs=2,
                   batch_size=8, device="cpu", warmup_epochs=1.0 if preset == "fast" else 0.0)


def run_interrupted_then_resumed(cfg: TrainConfig) -> tuple[dict, list[int]]:
    """Train, stop with Ctrl-C after the first epoch, then --resume to the end."""

    def stop_after_first(epoch: int, record: dict) -> None:
        if epoch == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_epoch_end=stop_after_first)
    assert read_checkpoint(cfg.out)["epoch"] == 1
    resumed_epochs: list[int] = []
    final = train(replace(cfg, resume=True),
                  on_epoch_end=lambda epoch, record: resumed_epochs.append(epoch))
    return final, resumed_epochs


def assert_same_weights(a: dict, b: dict) -> None:
    assert list(a["state_dict"]) == list(b["state_dict"])
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k


@pytest.fixture(scope="module")
def tutorial_run(tiny_folder, tmp_path_factory):
    """One uninterrupted tiny run (2 epochs, batch 8), shared by the tests below."""
    cfg = tiny_config(tiny_folder, tmp_path_factory.mktemp("run") / "a.pt")
    calls: list[tuple[int, dict]] = []
    ckpt = train(cfg, on_epoch_end=lambda epoch, record: calls.append((epoch, record)))
    return cfg, ckpt, calls


def test_a_tiny_run_writes_a_complete_checkpoint(tutorial_run, tiny_folder):
    cfg, ckpt, calls = tutorial_run
    out = Path(cfg.out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["a.pt"]  # no temporaries left
    model, info = load_checkpoint(out)
    assert info["arch"] == "seed"
    assert info["classes"] == sorted(TINY_CLASSES)
    assert info["mean"] == pytest.approx(CIFAR10_MEAN) and info["std"] == pytest.approx(CIFAR10_STD)
    assert info["train_config"] == dataclasses.asdict(cfg)
    assert info["metrics"]["world_size"] == 1
    history = info["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    for h in history:
        assert {"train_loss", "train_accuracy", "test_accuracy", "lr", "gammas",
                "train_seconds", "elapsed_seconds"} <= set(h)
        assert set(h["gammas"]) == {"attention"}
        assert h["lr"] == cfg.lr  # constant schedule
    assert history[0]["gammas"] != history[1]["gammas"]  # gamma is learned
    assert history[-1]["gammas"]["attention"] == model.attention.gamma.item() != 0.0
    assert history[1]["elapsed_seconds"] > history[0]["elapsed_seconds"]
    assert [(epoch, record) for epoch, record in calls] == list(enumerate(history))
    assert torch.equal(ckpt["state_dict"]["attention.gamma"], model.attention.gamma.detach())

    # The stored test accuracy is the final model's accuracy on the test split.
    test = load_split(tiny_folder, "test")
    x, y = next(iter(TensorLoader(test, len(test), CIFAR10_MEAN, CIFAR10_STD)))
    with torch.no_grad():
        accuracy = 100.0 * (model(x).argmax(1) == y).float().mean().item()
    assert info["test_accuracy"] == pytest.approx(accuracy)
    assert history[-1]["test_accuracy"] == info["test_accuracy"]


def test_resume_after_an_interruption_reproduces_the_weights(tutorial_run, tmp_path):
    cfg, uninterrupted, _ = tutorial_run
    resumed, epochs = run_interrupted_then_resumed(replace(cfg, out=str(tmp_path / "b.pt")))
    assert epochs == [1]  # the resumed run trained only the second epoch
    assert_same_weights(uninterrupted, resumed)
    for a, b in zip(uninterrupted["optimizer"]["state"].values(),
                    resumed["optimizer"]["state"].values(), strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["train_loss"] for h in resumed["history"]] == [
        h["train_loss"] for h in uninterrupted["history"]]


@pytest.mark.parametrize("change, message", [
    ({"arch": "seed-noattn"}, "different run (--arch seed there, seed-noattn here)"),
    ({"batch_size": 4}, "different run (--batch-size 8 there, 4 here)"),
    ({"epochs": 1}, "is a run of 2 epochs: --resume can continue or extend it"),
])
def test_resume_refuses_a_checkpoint_it_cannot_continue(tutorial_run, tmp_path, change,
                                                        message):
    cfg, _, _ = tutorial_run
    out = tmp_path / "a.pt"
    shutil.copy(cfg.out, out)
    with pytest.raises(CheckpointError) as err:
        train(replace(cfg, out=str(out), resume=True, **change))
    assert message in str(err.value) and str(out) in str(err.value)
    assert out.read_bytes() == Path(cfg.out).read_bytes()


def test_resume_extends_a_finished_run_as_if_it_had_been_planned_longer(tutorial_run,
                                                                        tmp_path):
    cfg, two_epochs, _ = tutorial_run
    out = tmp_path / "extended.pt"
    shutil.copy(cfg.out, out)
    trained: list[int] = []
    extended = train(replace(cfg, out=str(out), resume=True, epochs=3),
                     on_epoch_end=lambda epoch, record: trained.append(epoch))
    assert trained == [2]  # only the new epoch ran
    history = extended["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[:2] == two_epochs["history"]
    assert history[2]["extended_from_epochs"] == 2  # the history says where the plan changed
    assert extended["train_config"]["epochs"] == 3 and extended["epoch"] == 3
    # A constant schedule and per-epoch data order: the same weights as 3 epochs at once.
    straight = train(replace(cfg, out=str(tmp_path / "three.pt"), epochs=3))
    assert "extended_from_epochs" not in straight["history"][2]
    assert_same_weights(straight, extended)
    # Resuming the extended run again with the same --epochs changes nothing.
    assert train(replace(cfg, out=str(out), resume=True, epochs=3))["history"] == history


def test_an_extended_one_cycle_schedule_is_rebuilt_and_resumed_at_its_step(
        tiny_folder, tmp_path, monkeypatch):
    import convattn.jobs.training as train_module

    cfg = tiny_config(tiny_folder, tmp_path / "fast.pt", preset="fast")
    train(cfg)  # two epochs: the rate has come down to 0 at the end
    step_lrs: list[float] = []
    make_optimizer = train_module._optimizer

    def recording_optimizer(*args):
        opt = make_optimizer(*args)
        opt.register_step_pre_hook(lambda o, a, k: step_lrs.append(o.param_groups[0]["lr"]))
        return opt

    monkeypatch.setattr(train_module, "_optimizer", recording_optimizer)
    longer = replace(cfg, resume=True, epochs=3)
    extended = train(longer)
    # Every step of epoch 3 uses the 3-epoch schedule's rate at that step, the first one
    # too (not the 2-epoch schedule's final 0): down from half the peak, to 0 at the end.
    assert step_lrs == pytest.approx([cfg.lr * lr_factor(longer, s, STEPS)
                                      for s in range(2 * STEPS, 3 * STEPS)])
    assert step_lrs[0] == pytest.approx(0.4 / 2)
    assert [h["lr"] for h in extended["history"]] == pytest.approx([0.4, 0.0, 0.0])
    assert extended["history"][2]["extended_from_epochs"] == 2


def test_the_fast_preset_trains_and_resumes_exactly(tiny_folder, tmp_path):
    cfg = tiny_config(tiny_folder, tmp_path / "fast.pt", preset="fast")
    assert (cfg.optimizer, cfg.schedule, cfg.cutout, cfg.label_smoothing) == (
        "sgd", "onecycle", 8, 0.2)
    full = train(cfg)
    resumed, _ = run_interrupted_then_resumed(replace(cfg, out=str(tmp_path / "fast-b.pt")))
    assert_same_weights(full, resumed)
    # One-cycle: up to the peak over the warm-up epoch, then down to zero at the end.
    lrs = [h["lr"] for h in full["history"]]
    assert lrs == pytest.approx([cfg.lr * lr_factor(cfg, STEPS * e, STEPS) for e in (1, 2)])
    assert lrs == pytest.approx([0.4, 0.0])
    group = full["optimizer"]["param_groups"][0]
    assert (group["nesterov"], group["momentum"], group["weight_decay"]) == (True, 0.9, 5e-4)
    assert all(abs(h["train_loss"]) < 10 for h in full["history"])


def test_lr_factor_one_cycle():
    cfg = replace(PRESETS["fast"], epochs=10, warmup_epochs=2)
    assert [lr_factor(cfg, s, 100) for s in (0, 100, 200, 600, 1000)] == pytest.approx(
        [0.0, 0.5, 1.0, 0.5, 0.0])
    assert lr_factor(PRESETS["tutorial"], 12345, 100) == 1.0


def test_cutout_zeroes_one_square_of_the_given_side():
    x = torch.ones(256, 3, 32, 32)
    out = _cutout(x, 8, torch.Generator().manual_seed(0))
    assert torch.equal(out[:, :1].expand_as(out), out)  # the same square in every channel
    sides = []
    for mask in out[:, 0] == 0:  # (32, 32) per image
        rows, cols = mask.any(1).nonzero()[:, 0], mask.any(0).nonzero()[:, 0]
        assert len(rows) and len(cols)
        # One filled axis-aligned rectangle, clipped by the border, never wider than 8.
        assert mask.sum() == len(rows) * len(cols)
        assert rows.max() - rows.min() + 1 == len(rows) and cols.max() - cols.min() + 1 == len(cols)
        sides += [len(rows), len(cols)]
    assert max(sides) == 8
    assert torch.equal(_cutout(x, 8, torch.Generator().manual_seed(0)), out)  # seeded


def test_flags_come_from_the_config_and_lay_over_a_preset():
    cfg = parse_config(["--preset", "fast", "--epochs", "3", "--no-amp", "--arch", "resnet9"])
    assert cfg == replace(PRESETS["fast"], epochs=3, amp=False, arch="resnet9")
    assert parse_config([]) == PRESETS["tutorial"]


def test_cli_rejects_an_unknown_architecture(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--arch", "nope"])
    assert exit_.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_cli_too_large_batch_is_one_error(tiny_folder, tmp_path, capsys):
    code = main(["--data", str(tiny_folder), "--batch-size", "64", "--device", "cpu",
                 "--out", str(tmp_path / "x.pt")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ")
    assert "64" in err[0] and not (tmp_path / "x.pt").exists()


def run_module(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def test_cli_with_a_missing_data_folder_says_one_line(tmp_path):
    missing = tmp_path / "no-such-dataset"
    result = run_module("-m", "convattn.train", "--data", str(missing), "--device", "cpu",
                        "--out", str(tmp_path / "x.pt"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert str(missing) in lines[0]
    assert "Traceback" not in result.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_run_on_cpu(tiny_folder, tmp_path):
    out = tmp_path / "ddp.pt"
    result = run_module(
        "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
        str(free_port()), "-m", "convattn.train", "--data", str(tiny_folder), "--epochs", "2",
        "--batch-size", "8", "--device", "cpu", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    ckpt = read_checkpoint(out)
    assert ckpt["metrics"]["world_size"] == 2
    assert [h["epoch"] for h in ckpt["history"]] == [1, 2]
    assert set(ckpt["history"][-1]["gammas"]) == {"attention"}
    assert ckpt["history"][-1]["gammas"]["attention"] != 0.0
    model, _ = load_checkpoint(out)
    assert model.attention.gamma.item() == ckpt["history"][-1]["gammas"]["attention"]


def test_training_on_data_without_a_test_split_fails_cleanly(tmp_path):
    root = make_image_folder(tmp_path / "d", train_per_class=2, test_per_class=0)
    with pytest.raises(DataError, match="test") as err:
        train(tiny_config(root, tmp_path / "x.pt"))
    assert str(root) in str(err.value)
    assert not (tmp_path / "x.pt").exists()


def test_an_unwritable_out_is_refused_before_loading_data(tmp_path, capsys):
    from convattn.cli.train import main

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    # The data folder does not exist either: the output is checked first, so its error wins.
    assert main(["--data", str(tmp_path / "nowhere"), "--out", str(blocker / "m.pt"),
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: cannot create the folder {blocker}: {blocker} is a file, not a "
                   "folder."]


@pytest.mark.parametrize("flag, value, message", [
    ("--train-subset", "-5", "--train-subset must be at least 0, not -5."),
    ("--epochs", "0", "--epochs must be at least 1, not 0."),
    ("--batch-size", "0", "--batch-size must be at least 1, not 0."),
    ("--lr", "-0.1", "--lr must be at least 0, not -0.1."),
    ("--lr", "nan", "--lr must be a finite number, not nan."),
    ("--momentum", "1.5", "--momentum must be 0 to 1, not 1.5."),
    ("--label-smoothing", "2", "--label-smoothing must be 0 to 1, not 2.0."),
    ("--cutout", "33", "--cutout must be 0 to 32, not 33."),
    ("--seed", "-1", "--seed must be 0 to 2147483647, not -1."),
    ("--warmup-epochs", "-1", "--warmup-epochs must be at least 0, not -1.0."),
])
def test_out_of_range_flags_are_one_sentence(tmp_path, capsys, flag, value, message):
    # The data folder does not exist: the flag is refused before anything is read.
    code = main(["--data", str(tmp_path / "nowhere"), "--device", "cpu",
                 "--out", str(tmp_path / "x.pt"), flag, value])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {message}"]
    assert not (tmp_path / "x.pt").exists()


def test_train_refuses_zero_epochs_in_the_library_too(tiny_folder, tmp_path):
    with pytest.raises(FlagError, match="--epochs must be at least 1, not 0"):
        train(TrainConfig(data=str(tiny_folder), out=str(tmp_path / "x.pt"), epochs=0,
                          device="cpu"))
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("config", [TrainConfig, EvalConfig, AblationConfig])
def test_every_numeric_flag_has_a_range(config):
    for f in dataclasses.fields(config):
        if f.type in ("int", "float", int, float):
            assert "min" in f.metadata, f"{config.__name__}.{f.name} has no min"


def flag_help(help_text: str, flag: str) -> str:
    """The help of one option, whitespace collapsed."""
    start = help_text.index(f"\n  {flag} ")
    end = help_text.find("\n  --", start + 1)
    return " ".join(help_text[start:end if end > 0 else None].split())


def test_help_lists_every_choice(capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_config(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for flag, choices in [("--arch", ["seed", "seed-noattn", "resnet9-attn", "resnet9"]),
                          ("--optimizer", ["adam", "sgd"]),
                          ("--schedule", ["constant", "onecycle"]),
                          ("--preset", ["tutorial", "fast"]),
                          ("--device", ["auto", "cpu", "cuda"])]:
        entry = flag_help(text, flag)
        for choice in choices:
            assert f" {choice}" in entry or f"{{{choice}" in entry, (flag, choice, entry)
    assert "$CONVATTN_DATA" in flag_help(text, "--data")
    assert "'sample': the bundled 2,000 training and 1,000 test images" in flag_help(
        text, "--data")
    assert "schedule is rebuilt for the new total" in flag_help(text, "--epochs")
    assert "../shared" not in text


def test_without_data_the_cli_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CONVATTN_DATA", raising=False)
    monkeypatch.setenv("CONVATTN_CACHE", str(tmp_path / "cache"))
    assert TrainConfig().data == ""  # no default that only this repository's layout has
    assert main(["--device", "cpu", "--out", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    default = tmp_path / "cache" / "cifar10"
    assert err == [f"error: no dataset at {default} (the default): run once with --download "
                   "to fetch CIFAR-10 there (170 MB), name one with --data or "
                   "$CONVATTN_DATA, or try --data sample (the bundled 3,000 images)."]


def test_a_first_run_trains_and_evaluates_on_the_bundled_samples_offline(tmp_path, capsys,
                                                                        monkeypatch):
    """A newcomer's first commands on a fresh clone: no dataset, no network, no cache
    (--train-subset and seed-noattn keep it to seconds here)."""
    from convattn.cli.evaluate import main as evaluate_main
    from convattn.files.predictions import load_predictions, predictions_path

    def no_network(*args, **kwargs):
        raise AssertionError("tried to open a socket")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.delenv("CONVATTN_DATA", raising=False)
    monkeypatch.setenv("CONVATTN_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "runs" / "first.pt"
    assert main(["--arch", "seed-noattn", "--data", "sample", "--epochs", "1",
                 "--train-subset", "40", "--batch-size", "20", "--device", "cpu",
                 "--out", str(out)]) == 0
    assert "seed-noattn: 374,282 parameters, 40 train / 1000 test images" in (
        capsys.readouterr().out)
    _, info = load_checkpoint(out)
    assert info.train_config["data"] == "sample" and len(info.history) == 1
    written = out.read_bytes()

    assert evaluate_main([str(out), "--data", "sample", "--device", "cpu"]) == 0
    report = capsys.readouterr().out
    pred = load_predictions(predictions_path(out))
    assert pred["names"].tolist() == load_split("sample", "test").names
    assert str(pred["source"]) == "sample:test"
    accuracy = 100.0 * (pred["probs"].argmax(1) == pred["labels"]).mean()
    assert f"accuracy {accuracy:.2f}% on 1000 images" in report
    assert info.test_accuracy == pytest.approx(accuracy, abs=0.1)  # the same 1,000 images
    assert "the checkpoint was left unchanged (--fit-ood also fits" in report
    assert out.read_bytes() == written
    assert not (tmp_path / "cache").exists()  # nothing was decoded or downloaded


def test_the_data_comes_from_convattn_data_when_not_given(tiny_folder, tmp_path,
                                                          monkeypatch):
    monkeypatch.setenv("CONVATTN_DATA", str(tiny_folder))
    cfg = replace(tiny_config(tiny_folder, tmp_path / "env.pt"), data="", epochs=1)
    ckpt = train(cfg)
    assert ckpt["classes"] == sorted(TINY_CLASSES)
    assert math.isfinite(ckpt["history"][0]["train_loss"])

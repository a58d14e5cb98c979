"""python -m convattn.checks: what the file holds, when the app may use it, bad input; and
the shipped checks files."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from appkit import checkfiles
from appkit.loaded_model import Loaded
from convattn.cli.checks import main
from convattn.explain.checks import (
    DEFAULT,
    ChecksError,
    checks_path,
    load_checks,
    pixels_digest,
)
from convattn.explain.faithfulness import FaithfulnessConfig
from convattn.explain.faithfulness_batched import run
from convattn.explain.verdict import RANDOM
from convattn.files.checkpoint import (
    checkpoint_digest,
    load_checkpoint,
    make_checkpoint,
    save_checkpoint,
)
from convattn.files.data import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, ImageSet
from convattn.files.shipped import sample_path
from convattn.jobs.checks import attribution_config, faithfulness_config
from convattn.nn.models import create_model
from convattn.readout.stats import balanced_order

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--images", "4", "--sanity-images", "2", "--no-progress"]


def _checkpoint(path: Path, arch: str = "seed", seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = create_model(arch)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.5)
    return save_checkpoint(make_checkpoint(model, arch, {}, list(CIFAR10_CLASSES),
                                           CIFAR10_MEAN, CIFAR10_STD), path)


def _sample() -> ImageSet:
    with np.load(sample_path()) as f:
        return ImageSet(f["images"], f["labels"].astype(np.int64),
                        [str(c) for c in f["classes"]], [str(n) for n in f["names"]],
                        key="sample")


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """A tiny seed checkpoint and its checks file, written by the CLI."""
    ckpt = _checkpoint(tmp_path_factory.mktemp("checks") / "tiny.pt")
    assert main([str(ckpt), *ARGS]) == 0
    return ckpt


def _loaded(ckpt: Path) -> Loaded:
    model, info = load_checkpoint(ckpt)
    return Loaded(model, info, (str(ckpt.resolve()), ckpt.stat().st_mtime, "cpu"))


def test_the_file_records_checkpoint_settings_and_images_and_holds_the_runners_numbers(made):
    checks = load_checks(checks_path(made))
    assert checks.digest == checkpoint_digest(made)
    assert checks.settings == DEFAULT and checks.source == "bundled sample"
    images = _sample()
    idx = balanced_order(images.labels)[:4]
    assert checks.faith_names == [images.names[i] for i in idx]
    assert checks.sanity_names == checks.faith_names[:2]
    model, info = load_checkpoint(made)
    again = run(model, info.normalise(images.images[idx]), torch.from_numpy(images.labels[idx]),
                list(DEFAULT.methods), idx, faithfulness_config(DEFAULT),
                attribution_config(DEFAULT))
    f = checks.faithfulness
    assert list(f.curves) == ["integrated_gradients", "gradcam",
                              "attention received (attention)", RANDOM]
    for name, c in again.curves.items():
        np.testing.assert_allclose(f.curves[name].deletion, c.deletion, atol=1e-5)
        np.testing.assert_allclose(f.curves[name].insertion, c.insertion, atol=1e-5)
        np.testing.assert_allclose(f.maps[name], again.maps[name], rtol=2e-3, atol=1e-3)
    np.testing.assert_array_equal(f.predicted, again.predicted)
    assert checks.example.name == images.names[0]
    assert checks.example.pixels == pixels_digest(images.images[0])
    assert checks.example.queries == {"attention": 16 * 32 + 16}
    assert set(checks.sanity.similarity) == {*DEFAULT.sanity_methods,
                                             "attention received (attention)"}


def test_the_app_uses_a_file_only_when_everything_matches(made, tmp_path):
    found = checkfiles.find(_loaded(made))
    assert found.checks is not None and found.why == ""
    images = _sample()
    idx = balanced_order(images.labels)
    cfg, acfg = faithfulness_config(DEFAULT), attribution_config(DEFAULT)
    got = checkfiles.faithfulness(found, images, idx[:3], ["gradcam"], cfg, acfg)
    stored = found.checks.faithfulness
    assert list(got.curves) == ["gradcam", "attention received (attention)", RANDOM]
    np.testing.assert_array_equal(got.curves["gradcam"].deletion,
                                  stored.curves["gradcam"].deletion[:3])
    assert list(got.agreement) == [("attention", "gradcam")]
    # Other settings, a method it lacks, more images or other images: computed live.
    assert checkfiles.faithfulness(found, images, idx[:3], ["gradcam"],
                                   FaithfulnessConfig(steps=4), acfg) is None
    assert checkfiles.faithfulness(found, images, idx[:3], ["gradcam"], cfg,
                                   replace(acfg, ig_steps=50)) is None
    assert checkfiles.faithfulness(found, images, idx[:3], ["saliency"], cfg, acfg) is None
    assert checkfiles.faithfulness(found, images, idx[:5], ["gradcam"], cfg, acfg) is None
    assert checkfiles.faithfulness(found, images, idx[1:4], ["gradcam"], cfg, acfg) is None
    # The ig_batch speed setting is not part of what must match.
    assert checkfiles.faithfulness(found, images, idx[:3], ["gradcam"], cfg,
                                   replace(acfg, ig_batch=7)) is not None
    # The sanity example: the same pixels and query only.
    queries = {"attention": 16 * 32 + 16}
    example = checkfiles.sanity_example(found, images.images[0], ["gradcam"], queries, acfg)
    np.testing.assert_array_equal(example.maps["gradcam"], found.checks.example.maps["gradcam"])
    assert example.map_similarity["gradcam"]["spearman"][0] == pytest.approx(1.0)
    assert checkfiles.sanity_example(found, images.images[1], ["gradcam"], queries, acfg) is None
    assert checkfiles.sanity_example(found, images.images[0], ["gradcam"],
                                     {"attention": 5}, acfg) is None
    summary = checkfiles.sanity_summary(found, images, idx[:2], ["saliency"])
    assert set(summary.similarity) == {"saliency", "attention received (attention)"}
    assert checkfiles.sanity_summary(found, images, idx[:3], ["saliency"]) is None
    # A checkpoint whose bytes differ from the file's: the file is not used.
    other = _checkpoint(tmp_path / "tiny.pt", seed=1)
    checks_path(other).write_bytes(checks_path(made).read_bytes())
    stale = checkfiles.find(_loaded(other))
    assert stale.checks is None and "another version" in stale.why
    # Entries that do not change the network (statistics added later) keep the file.
    from convattn.files.checkpoint import read_checkpoint

    ckpt = read_checkpoint(made)
    ckpt["ood"] = {"added": 1.0}
    grown = save_checkpoint(ckpt, tmp_path / "grown.pt")
    checks_path(grown).write_bytes(checks_path(made).read_bytes())
    assert checkpoint_digest(grown) == checkpoint_digest(made)
    assert checkfiles.find(_loaded(grown)).checks is not None


def test_a_model_without_attention_gets_attributions_and_random_only(tmp_path):
    ckpt = _checkpoint(tmp_path / "plain.pt", "seed-noattn")
    assert main([str(ckpt), *ARGS, "--methods", "gradcam", "--sanity-methods", "saliency"]) == 0
    checks = load_checks(checks_path(ckpt))
    assert list(checks.faithfulness.curves) == ["gradcam", RANDOM]
    assert checks.faithfulness.agreement == {}
    assert list(checks.sanity.similarity) == ["saliency"]
    assert checks.example.rows == {} and checks.example.queries == {}


def test_bad_files_and_flags_are_one_sentence(tmp_path, capsys):
    bad = tmp_path / "x.checks.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ChecksError,
                       match=r"x.checks.npz is not a readable checks file \(\w+\): write it"):
        load_checks(bad)
    with pytest.raises(ChecksError, match="does not exist"):
        load_checks(tmp_path / "none.npz")
    ckpt = _checkpoint(tmp_path / "t.pt")
    checks_path(ckpt).write_bytes(b"junk")
    found = checkfiles.find(_loaded(ckpt))
    assert found.checks is None and "not a readable checks file" in found.why
    for flags, said in [(["--methods", "nope"], "--methods names nope, not one of"),
                        (["--images", "1"], "--images must be at least 2"),
                        (["--data", str(tmp_path / "none")], "error:")]:
        assert main([str(ckpt), *flags]) == 2
        err = capsys.readouterr().err
        assert said in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main([str(tmp_path / "missing.pt")]) == 2
    assert "error:" in capsys.readouterr().err


SHIPPED = sorted((ROOT / "checkpoints").glob("*.pt"))


@pytest.mark.parametrize("ckpt", SHIPPED, ids=lambda p: p.stem)
def test_the_shipped_checks_files_load_and_match_their_checkpoints(ckpt):
    path = checks_path(ckpt)
    if not path.exists():
        pytest.skip(f"{path.name} is not shipped")
    checks = load_checks(path)
    assert checks.digest == checkpoint_digest(ckpt), f"{path.name} is stale: rerun convattn.checks"
    assert checks.settings == DEFAULT
    images = _sample()
    order = balanced_order(images.labels)
    assert checks.faith_names == [images.names[i] for i in order[:len(checks.faith_names)]]
    assert checks.sanity_names == [images.names[i] for i in order[:len(checks.sanity_names)]]
    model, _ = load_checkpoint(ckpt)
    from convattn.readout.attention import attention_modules

    attention = {f"attention received ({n})" for n in attention_modules(model)}
    assert set(checks.faithfulness.curves) == {*DEFAULT.methods, *attention, RANDOM}
    assert checks.example.pixels == pixels_digest(images.images[0])

"""Safe to serve: a folder typed in the browser is used only inside the roots the operator
allowed, a refusal repeats only what was typed, and nothing outside them is listed or
written (appkit.roots, the sidebar's Test images section)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pagedata
import pytest
from apprun import APP
from PIL import Image
from streamlit.testing.v1 import AppTest

from appkit import markdown
from appkit.roots import MAX_TYPED, Refused, Roots, named_roots
from convattn.files.data import CIFAR10_CLASSES
from convattn.files.shipped import sample_path


def refusal(typed: str) -> str:
    return (f"{typed} is not in a folder this server shares: the person running it can "
            "add one with --data-root.")


@pytest.fixture
def place(tmp_path, monkeypatch) -> dict[str, Path]:
    """An allowed root with a dataset, a private folder beside it, and the cache."""
    root, private, cache = tmp_path / "shared", tmp_path / "private_photos", tmp_path / "cache"
    for c, cls in enumerate(CIFAR10_CLASSES):
        (root / "cifar" / "test" / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (32, 32), (25 * c, 10 * i, 0)).save(
                root / "cifar" / "test" / cls / f"{i}.png")
    (private / "test" / "secret").mkdir(parents=True)
    Image.new("RGB", (32, 32), (9, 9, 9)).save(private / "test" / "secret" / "passport_scan.png")
    cache.mkdir()
    monkeypatch.setenv("CONVATTN_CACHE", str(cache))
    monkeypatch.delenv("CONVATTN_DATA", raising=False)
    monkeypatch.delenv("CONVATTN_DATA_ROOTS", raising=False)
    return {"root": root, "private": private, "cache": cache}


def roots(root: Path, *more: str) -> Roots:
    return Roots.from_environment(["--data-root", str(root), *more], dict(os.environ))


def test_the_allowed_roots_are_the_sample_the_cache_the_data_and_the_operators(place,
                                                                               monkeypatch):
    monkeypatch.setenv("CONVATTN_DATA", str(place["root"] / "cifar"))
    r = roots(place["root"])
    assert r.allowed == (sample_path().parent.resolve(), place["cache"].resolve(),
                         (place["root"] / "cifar").resolve(), place["root"].resolve())
    assert r.named and r.downloads == (place["root"] / "cifar").resolve()
    # Named twice, by flag and environment, a root is one root.
    monkeypatch.setenv("CONVATTN_DATA_ROOTS", os.pathsep.join([str(place["root"]), ""]))
    again = roots(place["root"], f"--data-root={place['root']}")
    assert again.allowed == r.allowed
    assert named_roots(["--data-root", "a", "--data-root=b", "--other"], {
        "CONVATTN_DATA_ROOTS": f"c{os.pathsep}{os.pathsep}d"}) == [Path(p) for p in "abcd"]
    assert not Roots.from_environment([], {}).named


def test_folders_inside_a_root_are_accepted_as_their_real_path(place):
    r = roots(place["root"])
    assert r.check(str(place["root"])) == place["root"].resolve()
    assert r.check(f"  {place['root'] / 'cifar'}  ") == (place["root"] / "cifar").resolve()
    inner = place["root"] / "cifar" / "test" / ".." / "test"  # a harmless ..
    assert r.check(str(inner)) == (place["root"] / "cifar" / "test").resolve()
    assert r.check(str(place["root"] / "not-yet")) == (place["root"] / "not-yet").resolve()
    link = place["root"] / "alias"  # a symlink that stays inside
    link.symlink_to(place["root"] / "cifar")
    assert r.check(str(link)) == (place["root"] / "cifar").resolve()


@pytest.mark.parametrize("typed", [
    "{private}", "{private}/test/secret", "/", "/etc", "{root}/../private_photos",
    "{root}/cifar/../../private_photos/test", "{root}/escape", "~", "~/private_photos",
    "../private_photos", "{root}x", "{missing}"])
def test_everything_else_is_refused_alike_whether_or_not_it_exists(place, typed, monkeypatch):
    (place["root"] / "escape").symlink_to(place["private"])  # inside, pointing outside
    monkeypatch.chdir(place["root"])
    monkeypatch.setenv("HOME", str(place["private"].parent))
    text = typed.format(root=place["root"], private=place["private"],
                        missing=place["private"].parent / "nowhere")
    r = roots(place["root"])
    with pytest.raises(Refused) as e:
        r.check(text)
    assert str(e.value) == refusal(text)  # names nothing but what was typed


def test_empty_odd_and_huge_names_are_one_sentence_too(place):
    r = roots(place["root"])
    for typed in ["", "   ", "a\x00b"]:
        with pytest.raises(Refused, match="^That is not a folder name.$"):
            r.check(typed)
    with pytest.raises(Refused) as e:
        r.check("/" + "x" * MAX_TYPED)
    assert str(e.value) == f"That folder name is too long ({MAX_TYPED + 1:,} characters)."
    with pytest.raises(Refused) as e:
        r.check("~no_such_user_here/data")
    assert str(e.value) == refusal("~no_such_user_here/data")


# -- in the app ---------------------------------------------------------------------------

@pytest.fixture
def app_env(place, tmp_path, monkeypatch) -> dict[str, Path]:
    ckpt = pagedata.checkpoint(tmp_path / "tiny-seed.pt", "seed", accuracies=(12.5,))
    monkeypatch.setenv("CONVATTN_CHECKPOINT", str(ckpt))
    monkeypatch.setenv("CONVATTN_CHECKPOINTS", str(tmp_path / "none"))
    monkeypatch.setenv("CONVATTN_UPLOADS", str(tmp_path / "uploads"))
    return place


def _listing(*folders: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for f in folders for p in [f, *f.rglob("*")]}


def _texts(at: AppTest) -> str:
    parts = [e.value for kind in ("caption", "error", "info", "success", "markdown")
             for e in getattr(at.sidebar, kind)]
    parts += [e.value for kind in ("caption", "error", "info", "markdown")
              for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def test_a_typed_private_folder_is_refused_and_nothing_of_it_reaches_the_page(app_env,
                                                                              monkeypatch):
    monkeypatch.setenv("CONVATTN_DATA_ROOTS", str(app_env["root"]))
    before = _listing(app_env["private"], app_env["root"], app_env["cache"])
    at = AppTest.from_file(APP, default_timeout=120).run()
    for typed in [str(app_env["private"]), f"{app_env['root']}/../private_photos"]:
        at.text_input(key="data_folder").set_value(typed).run()
        assert not at.exception
        (error,) = at.sidebar.error
        assert error.value == (f"{markdown.literal(refusal(typed))} Using the bundled sample "
                               "instead.")
        shown = _texts(at)
        assert "passport_scan" not in shown and "secret" not in shown
        assert "bundled sample" in shown
    assert _listing(app_env["private"], app_env["root"], app_env["cache"]) == before
    # Inside the root the same box works.
    at.text_input(key="data_folder").set_value(str(app_env["root"] / "cifar")).run()
    assert not at.exception and not at.sidebar.error
    assert any("20 images" in c.value for c in at.sidebar.caption)


def test_with_no_root_named_the_box_offers_the_allowed_folders(app_env):
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception
    assert not [t for t in at.sidebar.text_input if t.key == "data_folder"]
    box = at.selectbox(key="data_folder")
    assert box.options == ["the bundled sample",
                           str((app_env["cache"] / "cifar10").resolve())]
    assert box.value == ""


def test_the_operators_data_through_a_symlink_is_the_folder_offered_and_used(app_env,
                                                                          tmp_path,
                                                                          monkeypatch):
    link = tmp_path / "data-link"
    link.symlink_to(app_env["root"] / "cifar")
    monkeypatch.setenv("CONVATTN_DATA", str(link))
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception and not at.sidebar.error
    assert at.selectbox(key="data_folder").value == str((app_env["root"] / "cifar").resolve())
    assert any("20 images" in c.value for c in at.sidebar.caption)


def test_the_accuracy_line_describes_the_set_in_use(app_env, tmp_path, monkeypatch):
    """The sample: its own accuracy from the predictions file's rows; another set: said so."""
    from convattn.files.predictions import predictions_path, save_arrays

    ckpt = Path(os.environ["CONVATTN_CHECKPOINT"])
    with np.load(sample_path()) as f:
        names, labels = f["names"], f["labels"]
    rng = np.random.default_rng(0)
    probs = rng.random((len(names) + 5, 10)).astype(np.float32)
    save_arrays(predictions_path(ckpt), names=np.concatenate([names, [f"x{i}" for i in range(5)]]),
                labels=np.concatenate([labels, np.zeros(5, np.int64)]), probs=probs,
                classes=np.array(CIFAR10_CLASSES))
    expected = float((probs[: len(names)].argmax(1) == labels).mean() * 100)
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception
    line = [c.value for c in at.sidebar.caption if "correct." in c.value]
    title = f"bundled sample: {len(names):,} test images (100 per class)"
    assert line == [f"On the {markdown.literal(title)} (from "
                    f"{markdown.literal(predictions_path(ckpt).name)}): **{expected:.2f}%** "
                    "correct."]
    monkeypatch.setenv("CONVATTN_DATA_ROOTS", str(app_env["root"]))
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.text_input(key="data_folder").set_value(str(app_env["root"] / "cifar")).run()
    assert not [c for c in at.sidebar.caption if "correct." in c.value]
    assert any(f"{markdown.literal(predictions_path(ckpt).name)} holds other images than "
               "these 20," in c.value for c in at.sidebar.caption)


def test_make_app_is_local_and_make_serve_serves_the_network_with_the_roots(tmp_path):
    import shutil
    import subprocess

    import tomllib

    repo = Path(__file__).resolve().parents[1]
    config = tomllib.loads((repo / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    if shutil.which("make") is None:
        pytest.skip("needs make")

    def plan(*args: str) -> str:
        done = subprocess.run(["make", "-n", "-W", ".venv/.installed", *args], cwd=repo,
                              capture_output=True, text=True, check=True).stdout
        return next(line for line in done.splitlines() if "streamlit run" in line)

    assert "--server.address" not in plan("app")
    assert plan("serve", "ROOTS=/data/a /data/b").endswith(
        "streamlit run app.py --server.address 0.0.0.0 -- --data-root /data/a "
        "--data-root /data/b")
    # Your network: the card by the operator's flag, the images by $CONVATTN_DATA.
    mine = plan("app", "MODEL=my/card.toml", "DATA=my/images")
    assert mine.startswith("CONVATTN_DATA=my/images ")
    assert mine.endswith("streamlit run app.py -- --model my/card.toml")

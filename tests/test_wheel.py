"""convattn as a user installs it: the wheel built from this tree, installed into a fresh
venv, outside the repository. It must hold the package data (the bundled sample), run the
README's example from any folder, and keep ``python -m convattn.train`` working.

The fresh venv sees this venv's site-packages (torch and the other dependencies, which are
not reinstalled) through a plain path in a .pth file. A plain path is not a site dir, so
this venv's own .pth files (the editable install of the source tree) do not run there:
``convattn.__file__`` must be the installed copy, never the source tree.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from test_readme import EXPECTED, README, python_blocks, run_block

REPO = Path(__file__).resolve().parents[1]
SAMPLE = "convattn/resources/cifar10-test-sample.npz"
TRAIN_SAMPLE = "convattn/resources/cifar10-train-sample.npz"  # --data sample's training half


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the wheel, the python of a fresh venv with that wheel installed)."""
    tmp = tmp_path_factory.mktemp("wheel")
    # Build from a copy, so that the build leaves no build/ or egg-info in the repository.
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "convattn", src / "convattn",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-q", "-w", str(tmp / "dist"), str(src)])
    (wheel,) = (tmp / "dist").glob("convattn-*.whl")

    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                     "['purelib'])"]).stdout.strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "dependencies.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    # --target installs beside whatever is installed elsewhere, touching only the new venv.
    run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
         str(wheel)])
    return wheel, python


def test_the_wheel_holds_the_package_data_and_the_commands(installed):
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in (SAMPLE, TRAIN_SAMPLE, "convattn/resources/cifar10_label_errors.json",
                 "convattn/resources/LICENSE-label-errors", "convattn/cli/train.py",
                 "convattn/train.py"):
        assert name in names, f"{wheel.name} lacks {name}"
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "convattn-train = convattn.cli.train:main" in scripts
    assert "convattn-evaluate = convattn.cli.evaluate:main" in scripts
    metadata = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    for app_only in ("streamlit", "plotly"):
        (line,) = [r for r in requires if app_only in r]
        assert "extra == \"app\"" in line, f"{app_only} is not only in the app extra: {line}"


def test_the_installed_copy_is_imported_and_finds_its_sample(installed, tmp_path):
    _, python = installed
    done = run([str(python), "-c", "import sys, convattn, convattn.files.shipped as s; "
                "print(convattn.__file__); print(s.sample_path()); "
                "print(len(convattn.load_sample().labels)); "
                "print(sorted({m.split('.')[0] for m in sys.modules} & "
                "{'streamlit', 'plotly', 'cleanlab', 'sklearn', 'pandas', 'appkit'})); "
                "from convattn.files.data import load_split; "
                "print(len(load_split('sample', 'train')), len(load_split('sample', 'test')))"],
               cwd=tmp_path)
    where, sample, count, heavy, sample_data = done.stdout.split("\n")[:5]
    assert heavy == "[]", f"import convattn imported {heavy}: keep it cheap"
    assert not Path(where).resolve().is_relative_to(REPO), (
        f"the fresh venv imported convattn from the source tree: {where}")
    assert Path(sample).is_file() and not Path(sample).resolve().is_relative_to(REPO)
    assert count == "1000"
    assert sample_data == "2000 1000"  # --data sample works from a wheel, with no dataset


def test_the_readme_example_runs_from_the_wheel(installed, tmp_path):
    _, python = installed
    # The library example (the card example needs the repository's examples/ folder).
    (code,) = [b for b in python_blocks(README.read_text(encoding="utf-8"))
               if "convattn.attention_maps(model, x)" in b]
    done = run_block(code + "\nprint(convattn.__file__)\n", tmp_path, python=str(python))
    assert done.returncode == 0, done.stderr[-3000:]
    assert not Path(done.stdout.splitlines()[-1]).resolve().is_relative_to(REPO)
    (patterns,) = [p for key, p in EXPECTED.items() if key in code]
    for pattern in patterns:
        assert re.search(pattern, done.stdout), done.stdout


def test_python_m_convattn_train_works_from_the_wheel(installed, tmp_path):
    _, python = installed
    done = run([str(python), "-m", "convattn.train", "--help"], cwd=tmp_path)
    assert "--arch" in done.stdout

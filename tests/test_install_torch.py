"""scripts/install_torch.py and the Makefile's TORCH=auto|cpu|cuda: which torch a new .venv
gets, decided without a network."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("install_torch", REPO / "scripts/install_torch.py")
install_torch = importlib.util.module_from_spec(spec)
spec.loader.exec_module(install_torch)
CPU = install_torch.CPU_INDEX


@pytest.mark.parametrize("choice, gpu, index", [
    ("auto", False, CPU),  # a laptop: the CPU wheels
    ("auto", True, None),  # an NVIDIA machine: pip's default (CUDA) build
    ("cpu", True, CPU),
    ("cpu", False, CPU),
    ("cuda", False, None),
    ("cuda", True, None),
])
def test_torch_index(choice, gpu, index):
    assert install_torch.torch_index(choice, gpu) == index


def test_an_unknown_choice_is_one_sentence(capsys):
    with pytest.raises(ValueError, match="TORCH=gpu is not one of auto, cpu, cuda"):
        install_torch.torch_index("gpu", False)
    assert install_torch.main(["gpu"]) == 2
    assert capsys.readouterr().err == "error: TORCH=gpu is not one of auto, cpu, cuda.\n"


def fake_pip(status: int, calls: list):
    def run(cmd):
        calls.append(list(cmd))
        return status
    return run


def test_the_cpu_index_installs_torch_and_torchvision_together():
    calls: list = []
    line = install_torch.install("auto", False, fake_pip(0, calls), lambda url: True)
    assert line == f"torch: CPU build from {CPU} (TORCH=auto, no NVIDIA GPU found)."
    (cmd,) = calls
    assert cmd[:4] == [sys.executable, "-m", "pip", "install"]
    assert cmd[cmd.index("--index-url") + 1] == CPU
    assert cmd[-2:] == ["torch>=2.2,<3", "torchvision>=0.17"]  # pyproject's requirements


def test_an_unreachable_cpu_index_falls_back_in_one_line():
    calls: list = []
    line = install_torch.install("cpu", False, fake_pip(0, calls), lambda url: False)
    assert calls == []  # nothing installed: the ordinary pip install -e . brings torch
    assert line == (f"note: PyTorch's CPU index ({CPU}) could not be reached, so pip "
                    "installs its default torch build instead (on Linux a CUDA build of "
                    "several GB).")
    line = install_torch.install("cpu", False, fake_pip(1, calls), lambda url: True)
    assert len(calls) == 1 and line.startswith("note: ") and "did not install torch" in line


def test_cuda_and_a_gpu_leave_torch_to_pip():
    calls: list = []
    assert install_torch.install("auto", True, fake_pip(0, calls), lambda url: True) == (
        "torch: pip's default build (TORCH=auto, an NVIDIA GPU found).")
    assert install_torch.install("cuda", False, fake_pip(0, calls), lambda url: True) == (
        "torch: pip's default build (TORCH=cuda).")
    assert calls == []


def test_no_nvidia_smi_means_no_gpu(monkeypatch):
    monkeypatch.setattr(install_torch.shutil, "which", lambda name: None)
    assert install_torch.has_nvidia_gpu() is False


def test_an_unreachable_url_is_false_quickly():
    assert install_torch.reachable("http://127.0.0.1:9/whl/cpu", timeout=2) is False


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("flag, choice", [([], "auto"), (["TORCH=cpu"], "cpu"),
                                          (["TORCH=cuda"], "cuda")])
def test_the_makefile_passes_torch_before_installing_the_package(tmp_path, flag, choice):
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    plan = subprocess.run(["make", "-n", "setup", *flag], cwd=tmp_path, capture_output=True,
                          text=True, timeout=30, check=True).stdout.splitlines()
    step = f".venv/bin/python scripts/install_torch.py {choice}"
    assert step in plan
    assert plan.index(step) < plan.index(".venv/bin/python -m pip install -q -e '.[app,dev]'")

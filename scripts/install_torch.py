"""Install PyTorch into the running Python, CPU wheels where there is no NVIDIA GPU.

    python scripts/install_torch.py auto|cpu|cuda      (the Makefile's TORCH=...)

pip's default torch on Linux is a CUDA build: several GB that a laptop without an NVIDIA
GPU never uses. "cpu" (and "auto" without an NVIDIA GPU) installs torch and torchvision
from PyTorch's CPU index instead. When that index cannot be reached (offline, or a
machine whose pip sees only a local mirror) this says so in one line and installs
nothing, leaving torch to the ordinary ``pip install -e .`` that follows. "cuda" (and
"auto" with a GPU) also leaves it to pip's default index.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
CHOICES = ("auto", "cpu", "cuda")
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
PROBE_SECONDS = 5  # how long an unreachable index may delay the set-up


def torch_index(choice: str, nvidia_gpu: bool) -> str | None:
    """The index to install torch from: PyTorch's CPU index, or None for pip's default."""
    if choice not in CHOICES:
        raise ValueError(f"TORCH={choice} is not one of {', '.join(CHOICES)}.")
    if choice == "cuda" or (choice == "auto" and nvidia_gpu):
        return None
    return CPU_INDEX


def has_nvidia_gpu() -> bool:
    """Whether nvidia-smi lists a GPU (no driver, no GPU: False)."""
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                                timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return listed.returncode == 0 and "GPU" in listed.stdout


def reachable(url: str, timeout: float = PROBE_SECONDS) -> bool:
    try:
        with urllib.request.urlopen(url + "/torch/", timeout=timeout):
            return True
    except (OSError, ValueError):  # URLError, timeouts and refused connections are OSErrors
        return False


def torch_requirements(pyproject: Path = PYPROJECT) -> list[str]:
    """pyproject's torch and torchvision requirements, so both come from one index."""
    found = re.findall(r'"((?:torch|torchvision)\s*[<>=!~][^"]*)"', pyproject.read_text())
    return found or ["torch", "torchvision"]


def install(choice: str, nvidia_gpu: bool, run: Callable[[Sequence[str]], int],
            is_reachable: Callable[[str], bool] = reachable) -> str:
    """Install torch per ``choice`` (``run`` runs a pip command line, giving its exit
    status); returns the one line to show the user."""
    index = torch_index(choice, nvidia_gpu)
    why = (f"TORCH={choice}" if choice != "auto"
           else f"TORCH=auto, {'an' if nvidia_gpu else 'no'} NVIDIA GPU found")
    if index is None:
        return f"torch: pip's default build ({why})."
    fallback = (f"note: PyTorch's CPU index ({index}) {{}}, so pip installs its default "
                "torch build instead (on Linux a CUDA build of several GB).")
    if not is_reachable(index):
        return fallback.format("could not be reached")
    pip = [sys.executable, "-m", "pip", "install", "-q", "--index-url", index]
    if run(pip + torch_requirements()) != 0:
        return fallback.format("did not install torch")
    return f"torch: CPU build from {index} ({why})."


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    choice = args[0] if args else "auto"
    if choice not in CHOICES:
        print(f"error: TORCH={choice} is not one of {', '.join(CHOICES)}.", file=sys.stderr)
        return 2
    gpu = has_nvidia_gpu() if choice == "auto" else False
    print(install(choice, gpu, lambda cmd: subprocess.run(cmd).returncode), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

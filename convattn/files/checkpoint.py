"""Self-describing checkpoints.

A checkpoint is a plain dict of tensors, numbers, strings and lists, so it loads with
``torch.load(weights_only=True)``: no code stored in a file ever runs. It names the
architecture and its keyword arguments, the classes, the normalisation, the metrics and
the per-epoch history, and the model is rebuilt from those.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import pickle
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from convattn.files.info import CheckpointInfo
from convattn.nn.models import create_model, list_models

FORMAT = "convattn-checkpoint"
VERSION = 1
REQUIRED = ("arch", "model_config", "classes", "mean", "std", "state_dict")
EXPECTED = "a convattn checkpoint (.pt, from python -m convattn.train) is expected"

# Files people give by mistake, told apart by their first bytes...
MAGIC = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x93NUMPY", "a NumPy array (.npy)"),
    (b"\x1f\x8b", "a gzip-compressed file"),
)
# ...and a .npz (a zip of .npy files) by the arrays it holds: convattn's own files first,
# most specific first (a checks file also holds "classes", an ablation file "names").
NPZ_KINDS = (
    ({"digest", "faith_names"}, "a checks file (from python -m convattn.checks)"),
    ({"probs_real"}, "an ablation file (from python -m convattn.ablation)"),
    ({"probs", "names"}, "a predictions file (from python -m convattn.evaluate)"),
    ({"train_jpeg", "test_jpeg"}, "a dataset pack (from python -m convattn.data pack)"),
    ({"images", "labels"}, "a set of images (.npz, as the bundled samples are)"),
)


class CheckpointError(Exception):
    """A file that cannot be used as a checkpoint; the message names the file."""


class OutputError(Exception):
    """A file that cannot be written; the message names it."""


def check_writable(path: str | Path) -> Path:
    """Fail before the work, not after it, when ``path`` cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder: give the name of a file to write.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocking = next(p for p in (path.parent, *path.parent.parents) if p.exists())
        raise OutputError(f"cannot create the folder {path.parent}: {blocking} is a file, "
                          "not a folder.") from None
    except OSError as e:
        raise OutputError(f"cannot create the folder {path.parent} ({e.strerror}).") from None
    if not os.access(path.parent, os.W_OK):
        raise OutputError(f"cannot write to the folder {path.parent} (permission denied).")
    return path


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write`` on a temporary file beside ``path``, sync it, then rename it over
    ``path``.

    A process killed at any moment leaves either the old file or the new one, never a
    partial file at ``path``.
    """
    path = check_writable(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise OutputError(f"cannot write {path} ({e.strerror}).") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; these files are meant to be shared
        os.replace(tmp, path)
    except OSError as e:  # a full disk, say: one sentence, and no partial file left
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {path} ({e.strerror or e}).") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_save(obj: Any, path: str | Path) -> Path:
    """torch.save ``obj`` to ``path`` atomically (see ``atomic_write``)."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def make_checkpoint(
    model: nn.Module,
    arch: str,
    model_config: dict[str, Any],
    classes: list[str],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    metrics: dict[str, Any] | None = None,
    history: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The dict that ``save_checkpoint`` writes; ``extra`` holds e.g. optimizer state."""
    state = {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()}
    return {
        "format": FORMAT,
        "version": VERSION,
        "arch": arch,
        "model_config": dict(model_config),
        "classes": list(classes),
        "mean": list(mean),
        "std": list(std),
        "state_dict": state,
        "metrics": dict(metrics or {}),
        "history": list(history or []),
        **extra,
    }


def _unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "_orig_mod", model)  # torch.compile
    return getattr(model, "module", model)  # DistributedDataParallel


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint dict safely; any problem is one CheckpointError naming the file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist.")
    if not path.is_file():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # foreign bytes raise many kinds (KeyError for text); none ran code
        kind = what_file(path)
        if kind:
            raise CheckpointError(f"{path} is {kind}, not a checkpoint: {EXPECTED}.") from None
        head = _head(path)
        zipped = head == b"PK\x03\x04"
        if isinstance(e, pickle.UnpicklingError) and (zipped or head[:1] == b"\x80"):
            raise CheckpointError(
                f"{path} was refused: it holds Python objects that a weights-only load "
                "does not allow (it is not a convattn checkpoint, and nothing in it was run)."
            ) from None
        if not zipped:  # torch's message about foreign bytes would only confuse
            raise CheckpointError(f"{path} cannot be read: it is not a PyTorch file.") from None
        # torch's own message runs over several sentences about its internals: say what
        # the user can do instead.
        raise CheckpointError(
            f"{path} cannot be read: it is truncated or corrupted, as a download or copy "
            "that stopped early leaves it; copy or download the file again."
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a PyTorch file but not a convattn checkpoint.")
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} is incomplete: it lacks {', '.join(missing)}.")
    if ckpt["arch"] not in list_models():
        raise CheckpointError(
            f"{path} is for architecture {ckpt['arch']!r}, which this version of convattn "
            f"does not know (known: {', '.join(list_models())})."
        )
    return ckpt


def what_file(path: str | Path) -> str:
    """What a file that torch cannot load is ("a PNG image", "a predictions file (from
    python -m convattn.evaluate)"...), or "" when it may be a damaged PyTorch file or
    nothing known."""
    with open(path, "rb") as f:
        head = f.read(4096)
    if not head:
        return "an empty file"
    for magic, kind in MAGIC:
        if head.startswith(magic):
            return kind
    if head.startswith(b"PK\x03\x04"):
        return _what_zip(Path(path))
    try:  # a text file: no NUL byte, and UTF-8 (a character may be cut at 4,096 bytes)
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < 4096)
        return "" if b"\0" in head else "a text file"
    except UnicodeDecodeError:
        return ""


def _what_zip(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return ""  # torch.save writes a zip too: a truncated one lands here
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return ""  # a PyTorch file, which torch could not load
    if names and all(n.endswith(".npy") for n in names):
        arrays = {n.removesuffix(".npy") for n in names}
        return next((kind for keys, kind in NPZ_KINDS if keys <= arrays),
                    "a NumPy archive (.npz)")
    return "a zip archive"


def _head(path: Path) -> bytes:
    """The first 4 bytes: a zip (torch.save) starts PK\\x03\\x04, a pickle \\x80."""
    with open(path, "rb") as f:
        return f.read(4)


def _short(e: BaseException) -> str:
    return str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__


def model_from_checkpoint(ckpt: dict[str, Any], source: str | Path = "checkpoint") -> nn.Module:
    """Rebuild the network a checkpoint describes and load its weights (fp32, eval mode)."""
    try:
        model = create_model(ckpt["arch"], num_classes=len(ckpt["classes"]),
                             **ckpt["model_config"])
        state = {k: v.float() if v.is_floating_point() else v
                 for k, v in ckpt["state_dict"].items()}
        model.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as e:
        raise CheckpointError(
            f"{source} does not match its architecture {ckpt['arch']!r} ({_short(e)})."
        ) from None
    return model.eval()


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu"
                    ) -> tuple[nn.Module, CheckpointInfo]:
    """Rebuild the model stored at ``path``; returns (model in eval mode, info).

    ``info`` (a ``CheckpointInfo``) holds arch, model_config, classes, mean, std,
    test_accuracy (percent or None), metrics, history, train_config and path; it reads
    by attribute or, as the dict it once was, by key. The model takes uint8 images
    through ``info.normalise`` ((x / 255 - mean) / std).
    """
    ckpt = read_checkpoint(path)
    model = model_from_checkpoint(ckpt, path).to(device)
    return model, CheckpointInfo.from_checkpoint(ckpt, str(path))


def save_checkpoint(ckpt: dict[str, Any], path: str | Path, half: bool = False) -> Path:
    """Write a checkpoint atomically; ``half`` stores float weights as fp16 (for shipping)."""
    if half:
        ckpt = dict(ckpt)
        ckpt["state_dict"] = {k: v.half() if v.is_floating_point() else v
                              for k, v in ckpt["state_dict"].items()}
    return atomic_save(ckpt, path)


def checkpoint_digest(path: str | Path) -> str:
    """SHA-256 of what a checkpoint computes with: its network (arch, config), classes,
    normalisation and every weight's name, dtype, shape and bytes. Not its other entries
    (metrics, history, statistics added later), so adding those keeps its checks file.
    Raises CheckpointError (one sentence) for a file that is not a checkpoint."""
    ckpt = read_checkpoint(path)
    h = hashlib.sha256(json.dumps({k: ckpt.get(k) for k in ("arch", "model_config", "classes",
                                                            "mean", "std")},
                                  sort_keys=True, default=str).encode())
    for name, t in sorted(ckpt["state_dict"].items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()

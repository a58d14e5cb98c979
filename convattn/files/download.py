"""Downloading CIFAR-10 with torchvision, safely: one sentence when it fails, and nothing
left behind (a folder the download created is removed, and so are its partial files).

Used by ``load_split(..., download=True)`` (the CLIs' ``--download`` and
``python -m convattn.data download``) and by the app's download button.
"""

from __future__ import annotations

import http.client
import shutil
import threading
import urllib.error
from pathlib import Path
from urllib.parse import urlparse

from convattn.errors import DataError

_DOWNLOADING = threading.Lock()  # one download at a time: app sessions share the folders


def download_cifar10(folder: Path) -> None:
    """Download CIFAR-10 with torchvision into ``folder`` (nothing is fetched when it is
    already there).

    Raises DataError with one sentence when that fails, and then leaves nothing behind: a
    folder the download created is removed, and so are its partial files.
    """
    from torchvision.datasets import CIFAR10

    with _DOWNLOADING:
        created = _outermost_missing(folder)
        before = set(folder.iterdir()) if folder.is_dir() else set()
        try:
            CIFAR10(str(folder), train=False, download=True)
        except BaseException as e:
            left = _remove_new(folder, created, before)
            if not isinstance(e, Exception):
                raise  # an interrupted run: nothing to say, but nothing left behind either
            why = _download_failure(e, urlparse(CIFAR10.url).hostname or CIFAR10.url,
                                    folder)
            kept = ("Nothing was written." if not left else
                    f"Remove what it left by hand: {', '.join(map(str, left))}.")
            raise DataError(f"Could not download CIFAR-10: {why}. {kept}") from None


def _download_failure(e: Exception, host: str, folder: Path) -> str:
    """Why a download failed, in a few words (torchvision passes urllib's errors on)."""
    if isinstance(e, urllib.error.HTTPError):
        return f"{host} answered HTTP {e.code} ({e.reason})"
    reason = e.reason if isinstance(e, urllib.error.URLError) else e
    if isinstance(reason, TimeoutError):
        return f"{host} did not answer in time"
    if isinstance(e, urllib.error.URLError):
        return f"no internet connection ({host} cannot be reached)"
    if isinstance(e, (ConnectionError, http.client.HTTPException)):
        return f"the connection to {host} broke off"
    if isinstance(e, OSError):  # a full disk, a folder the app may not write in
        return f"it could not be written into {folder} ({e.strerror or e})"
    if isinstance(e, RuntimeError):  # torchvision's "File not found or corrupted."
        return "the file that arrived is damaged (its checksum is wrong)"
    return f"{type(e).__name__} ({str(e).strip()[:140]})"


def _outermost_missing(folder: Path) -> Path | None:
    """The outermost folder of ``folder`` (itself included) that does not exist yet."""
    missing = None
    for p in (folder, *folder.parents):
        if p.exists():
            break
        missing = p
    return missing


def _remove_new(folder: Path, created: Path | None, before: set[Path]) -> list[Path]:
    """Remove what a failed download added: ``created`` (a folder it made), else what is in
    ``folder`` now but not in ``before``; returns what could not be removed."""
    if created is not None:
        new = [created]
    else:
        new = [p for p in folder.iterdir() if p not in before] if folder.is_dir() else []
    for p in new:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            try:
                p.unlink(missing_ok=True)
            except OSError:
                pass  # reported below
    return [p for p in new if p.exists() or p.is_symlink()]

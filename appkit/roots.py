"""Which folders a browser may name, and where the app may write: the operator's rules.

The app is served to browsers it does not trust. A folder typed in the sidebar is used only
when its real path (``~``, ``..`` and symlinks resolved) lies inside an allowed root:

- the bundled sample's folder (``convattn/resources``),
- the cache folder (``convattn.files.data.cache_dir()``: ``~/.cache/convattn`` or
  ``$CONVATTN_CACHE``), where the download button puts CIFAR-10,
- ``$CONVATTN_DATA``, the dataset the operator set for the CLIs and the app,
- the roots the operator names: ``streamlit run app.py -- --data-root DIR`` (repeatable)
  or ``$CONVATTN_DATA_ROOTS`` (folders separated by the OS path separator).

Anything else is refused in one sentence that repeats only what was typed, whether or not
it exists, so a refusal tells the browser nothing about the server's files. With no root
named by the operator the sidebar offers the allowed datasets instead of a free path.
Nothing here imports Streamlit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from convattn.files.data import cache_dir, default_data
from convattn.files.shipped import sample_path

ROOTS_ENV = "CONVATTN_DATA_ROOTS"
DATA_ENV = "CONVATTN_DATA"
FLAG = "--data-root"
MODEL_FLAG = "--model"  # a model card (.toml) or checkpoint the operator names
MODEL_ENV = "CONVATTN_MODEL"
MAX_TYPED = 1024  # characters: longer than any real path, and not echoed back


class Refused(ValueError):
    """A folder the browser may not use; the message is one sentence."""


def _real(path: str | Path) -> Path:
    return Path(os.path.realpath(Path(path).expanduser()))


def _flag_values(argv: Sequence[str], flag: str) -> list[str]:
    """Each value of ``flag VALUE`` or ``flag=VALUE`` among the script's arguments."""
    found: list[str] = []
    args = list(argv)
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            found.append(args[i + 1])
        elif arg.startswith(flag + "="):
            found.append(arg.split("=", 1)[1])
    return found


def named_roots(argv: Sequence[str], environ: Mapping[str, str]) -> list[Path]:
    """The roots the operator named: each ``--data-root DIR`` (or ``--data-root=DIR``) of
    the script's arguments, then each folder of ``$CONVATTN_DATA_ROOTS``."""
    found = _flag_values(argv, FLAG) + environ.get(ROOTS_ENV, "").split(os.pathsep)
    return [Path(f).expanduser() for f in found if f.strip()]


def named_model(argv: Sequence[str], environ: Mapping[str, str]) -> Path | None:
    """The model the operator named, a model card (.toml) or a checkpoint: the last
    ``--model FILE`` (or ``--model=FILE``) of the script's arguments, else
    ``$CONVATTN_MODEL``; None when neither names one. Only the operator names a card: it
    runs the card's code, so the browser never can."""
    found = [f for f in _flag_values(argv, MODEL_FLAG) if f.strip()]
    name = found[-1] if found else environ.get(MODEL_ENV, "")
    return Path(name.strip()).expanduser() if name.strip() else None


@dataclass(frozen=True)
class Roots:
    """The allowed roots, real paths, each once, in order; ``named`` says whether the
    operator named any (then the sidebar takes a typed folder)."""

    allowed: tuple[Path, ...]
    named: bool
    downloads: Path  # where the download button writes: $CONVATTN_DATA or the cache's
    # cifar10 (a real path; it may not exist yet)

    @classmethod
    def from_environment(cls, argv: Sequence[str], environ: Mapping[str, str]) -> Roots:
        operator = named_roots(argv, environ)
        data = environ.get(DATA_ENV, "").strip()
        candidates = [sample_path().parent, cache_dir(), *([Path(data)] if data else []),
                      *operator]
        allowed: list[Path] = []
        for c in candidates:
            real = _real(c)
            if real not in allowed:
                allowed.append(real)
        return cls(tuple(allowed), bool(operator), _real(default_data()))

    def check(self, typed: str) -> Path:
        """The real path of ``typed`` when it lies inside an allowed root; Refused, one
        sentence naming nothing but what was typed, otherwise."""
        text = typed.strip()
        if len(text) > MAX_TYPED:
            raise Refused(f"That folder name is too long ({len(text):,} characters).")
        if not text or "\x00" in text:
            raise Refused("That is not a folder name.")
        try:
            real = _real(text)
        except (OSError, RuntimeError, ValueError):  # e.g. ~nobody, or a name too long
            real = None
        if real is None or not any(real == r or r in real.parents for r in self.allowed):
            raise Refused(f"{text} is not in a folder this server shares: the person running "
                          "it can add one with --data-root.")
        return real

    def offered(self) -> list[str]:
        """What the sidebar offers when the operator named no root: the bundled sample
        ("") and the download folder (``$CONVATTN_DATA``, else the cache's cifar10)."""
        return ["", str(self.downloads)]

    def describe(self) -> str:
        return ", ".join(str(r) for r in self.allowed)

"""Command-line flags made from a config dataclass, so each job's options live in one place.

A field's metadata says how its flag reads: ``help``, ``choices`` (listed in ``--help``),
``min`` / ``max`` (checked by ``check_config``, one sentence when out of range) and
``default_help`` (what the help says the default is, where the field's default is only a
placeholder resolved at run time).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .checkpoint import CheckpointError, OutputError
from .data import DataError

T = TypeVar("T")
R = TypeVar("R")


class FlagError(Exception):
    """A flag's value outside what the job accepts; the message is one sentence."""


# What a user can get wrong (a path, a file, a flag's value): one "error:" line, exit 2.
USER_ERRORS = (DataError, CheckpointError, OutputError, FlagError)
# Files that come with the repository (models, their predictions and ablations): a job
# writes over them only when asked to with --overwrite-shipped.
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "checkpoints"


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()
                     ) -> None:
    """One ``--flag`` per dataclass field; help comes from ``field(metadata={"help": ...})``.

    Every flag defaults to None so that ``config_from_args`` can tell which ones the user
    gave and lay them over a preset.
    """
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        help_text = f.metadata.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else None
        default = f.metadata.get("default_help", default)
        kind = f.type if isinstance(f.type, type) else eval_type_name(str(f.type))
        if kind is bool:
            parser.add_argument(flag_name(f.name), action=argparse.BooleanOptionalAction,
                                default=None, help=f"{help_text} (default: {default})")
            continue
        choices = f.metadata.get("choices")
        if choices:
            help_text += f"; one of: {', '.join(choices)}"
        bounds = _bounds_text(f)
        if bounds:
            help_text += f" ({bounds})"
        parser.add_argument(flag_name(f.name), type=kind, default=None,
                            metavar=f.name.upper(), choices=choices,
                            help=f"{help_text} (default: {default})")


def _bounds_text(f: dataclasses.Field) -> str:
    low, high = f.metadata.get("min"), f.metadata.get("max")
    if low is not None and high is not None:
        return f"{low} to {high}"
    if low is not None:
        return f"at least {low}"
    if high is not None:
        return f"at most {high}"
    return ""


def eval_type_name(name: str) -> type:
    """The builtin type named in a ``from __future__ import annotations`` field."""
    builtin = {"int": int, "float": float, "str": str, "bool": bool}
    if name not in builtin:
        raise TypeError(f"config fields must be int, float, str or bool, not {name}")
    return builtin[name]


def check_config(cfg: Any) -> None:
    """Raise FlagError (one sentence naming the flag) for the first numeric field outside
    its ``min`` / ``max`` metadata, or a float that is not a finite number."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise FlagError(f"{flag_name(f.name)} must be a finite number, not {value}.")
        low, high = f.metadata.get("min"), f.metadata.get("max")
        if (low is not None and value < low) or (high is not None and value > high):
            raise FlagError(f"{flag_name(f.name)} must be {_bounds_text(f)}, not {value}.")


def config_from_args(base: T, args: argparse.Namespace) -> T:
    """``base`` with every flag the user gave laid over it; FlagError if a value is out of
    range."""
    given: dict[str, Any] = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(base)  # type: ignore[arg-type]
        if getattr(args, f.name, None) is not None
    }
    cfg = dataclasses.replace(base, **given)  # type: ignore[type-var]
    check_config(cfg)
    return cfg


def is_shipped(path: str | Path) -> bool:
    """Whether ``path`` is in the repository's checkpoints/ folder."""
    return Path(path).resolve().parent == SHIPPED_DIR


def output_path(checkpoint: str | Path, out: str, beside: Path, overwrite_shipped: bool
                ) -> tuple[Path, str]:
    """Where a job on ``checkpoint`` writes its file, and a note for the user ("" if none).

    ``out`` when given, else ``beside`` (the file next to the checkpoint); but a shipped
    file is never replaced without ``overwrite_shipped``: the default for a shipped
    checkpoint is ``runs/<name>`` instead, and an ``out`` naming an existing shipped file
    is refused.
    """
    if overwrite_shipped:
        return Path(out) if out else beside, ""
    if out:
        if is_shipped(out) and Path(out).exists():
            raise OutputError(f"{out} is shipped with the repository: pass "
                              "--overwrite-shipped to replace it, or --out another file.")
        return Path(out), ""
    if is_shipped(checkpoint):
        path = Path("runs") / beside.name
        return path, (f"{checkpoint} is shipped with the repository, so its {beside.name} "
                      f"was left as it is and {path} written instead (--overwrite-shipped "
                      "replaces the shipped file).")
    return beside, ""


def exit_on_user_error(main: Callable[[], object]) -> int:
    """Run a script's ``main``; a user's mistake (a missing dataset, no GPU for --device
    cuda...) is one line on stderr and exit status 2, not a traceback."""
    try:
        main()
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def run_on_checkpoint(argv: list[str] | None, prog: str, description: str | None,
                      config: T, checkpoint_help: str, job: Callable[[str, T], R],
                      report: Callable[[R], str]) -> int:
    """``prog CHECKPOINT --flags``: parse, run ``job``, print ``report`` of its result, or
    one error line for a user's mistake."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help=checkpoint_help)
    add_config_flags(parser, type(config))
    args = parser.parse_args(argv)
    return exit_on_user_error(
        lambda: print(report(job(args.checkpoint, config_from_args(config, args)))))

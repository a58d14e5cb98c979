"""Command-line flags made from a config dataclass, so each job's options live in one place."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from .checkpoint import CheckpointError, OutputError
from .data import DataError

T = TypeVar("T")
R = TypeVar("R")
# What a user can get wrong (a path, a file, a flag's value): one "error:" line, exit 2.
USER_ERRORS = (DataError, CheckpointError, OutputError)


def add_config_flags(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()
                     ) -> None:
    """One ``--flag`` per dataclass field; help comes from ``field(metadata={"help": ...})``.

    Every flag defaults to None so that ``config_from_args`` can tell which ones the user
    gave and lay them over a preset.
    """
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else None
        kind = f.type if isinstance(f.type, type) else eval_type_name(str(f.type))
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                help=f"{help_text} (default: {default})")
        else:
            parser.add_argument(flag, type=kind, default=None, metavar=f.name.upper(),
                                choices=f.metadata.get("choices"),
                                help=f"{help_text} (default: {default})")


def eval_type_name(name: str) -> type:
    """The builtin type named in a ``from __future__ import annotations`` field."""
    builtin = {"int": int, "float": float, "str": str, "bool": bool}
    if name not in builtin:
        raise TypeError(f"config fields must be int, float, str or bool, not {name}")
    return builtin[name]


def config_from_args(base: T, args: argparse.Namespace) -> T:
    """``base`` with every flag the user gave laid over it."""
    given: dict[str, Any] = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(base)  # type: ignore[arg-type]
        if getattr(args, f.name, None) is not None
    }
    return dataclasses.replace(base, **given)  # type: ignore[type-var]


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
    try:
        result = job(args.checkpoint, config_from_args(config, args))
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report(result))
    return 0

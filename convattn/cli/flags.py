"""Command-line flags made from a config dataclass, so each job's options live in one place.

A field's metadata says how its flag reads: ``help``, ``choices`` (listed in ``--help``),
``min`` / ``max`` (checked by ``check_config``, one sentence when out of range) and
``default_help`` (what the help says the default is, where the field's default is only a
placeholder resolved at run time).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from convattn.errors import DataError, FlagError
from convattn.files.checkpoint import CheckpointError, OutputError
from convattn.jobs.options import bounds_text, check_config, flag_name

T = TypeVar("T")
R = TypeVar("R")




# What a user can get wrong (a path, a file, a flag's value): one "error:" line, exit 2.
USER_ERRORS = (DataError, CheckpointError, OutputError, FlagError)




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
        bounds = bounds_text(f)
        if bounds:
            help_text += f" ({bounds})"
        parser.add_argument(flag_name(f.name), type=kind, default=None,
                            metavar=f.name.upper(), choices=choices,
                            help=f"{help_text} (default: {default})")




def eval_type_name(name: str) -> type:
    """The builtin type named in a ``from __future__ import annotations`` field."""
    builtin = {"int": int, "float": float, "str": str, "bool": bool}
    if name not in builtin:
        raise TypeError(f"config fields must be int, float, str or bool, not {name}")
    return builtin[name]




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

"""The options several jobs share, written once: each function returns the dataclass
field of one flag (``convattn.cli.flags`` turns fields into flags, with this help).

A job's config dataclass lists its fields in the order ``--help`` shows them, e.g.
``data: str = data_option()``; what differs between jobs (the file a job writes, its
batch size) is an argument. ``check_config`` holds a config to its fields' ``min`` /
``max``, for the command line and for callers that build a config in code alike.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import field
from typing import Any

from convattn.errors import FlagError
from convattn.files.data import DEFAULT_DATA_HELP, SPLITS

DEVICES = ["auto", "cpu", "cuda"]
DATA_HELP = ("ImageFolder root with train/ and test/, a .npz pack, a torchvision "
             "CIFAR-10 folder, or 'sample': the bundled 2,000 training and 1,000 test "
             "images, no download needed")


def data_option(default_help: str = DEFAULT_DATA_HELP, split_used: str = "") -> Any:
    """--data: the dataset root; ``split_used`` says which split the job reads."""
    return field(default="", metadata={"help": DATA_HELP + split_used,
                                       "default_help": default_help})


def download_option() -> Any:
    return field(default=False, metadata={
        "help": "download CIFAR-10 (torchvision) into --data or the default folder"})


def split_option() -> Any:
    return field(default="test", metadata={"help": "split", "choices": list(SPLITS)})


def device_option(what: str = "where to run") -> Any:
    return field(default="auto", metadata={"help": what, "choices": DEVICES})


def batch_size_option(default: int, what: str = "images per batch") -> Any:
    return field(default=default, metadata={"help": what, "min": 1})


def out_option(what: str) -> Any:
    """--out for a job that writes ``what`` beside its checkpoint."""
    return field(default="", metadata={
        "help": what, "default_help": "beside the checkpoint, or runs/<name> for a shipped "
                                      "one"})


def overwrite_shipped_option(what: str) -> Any:
    return field(default=False, metadata={
        "help": f"write over the {what} shipped with a checkpoint in the shipped "
                "checkpoints' folder"})


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")



def bounds_text(f: dataclasses.Field) -> str:
    low, high = f.metadata.get("min"), f.metadata.get("max")
    if low is not None and high is not None:
        return f"{low} to {high}"
    if low is not None:
        return f"at least {low}"
    if high is not None:
        return f"at most {high}"
    return ""



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
            raise FlagError(f"{flag_name(f.name)} must be {bounds_text(f)}, not {value}.")

"""Which torch device a job runs on; shared by training, evaluation and ablation."""

from __future__ import annotations

import torch
from torch import nn

from convattn.errors import DataError


def model_device(model: nn.Module) -> torch.device:
    """Where a model's weights are, so its inputs can be sent there."""
    return next(model.parameters()).device


def pick_device(choice: str = "auto", index: int = 0) -> torch.device:
    """"auto" is the GPU when there is one, else the CPU; "cuda" without a GPU is a
    DataError (one sentence for the user) rather than a CUDA traceback later."""
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if choice not in ("auto", "cuda"):
        raise DataError(f"unknown device {choice!r}; expected auto, cpu or cuda.")
    if not torch.cuda.is_available():
        raise DataError("--device cuda was asked for, but no CUDA GPU is available.")
    return torch.device("cuda", index)

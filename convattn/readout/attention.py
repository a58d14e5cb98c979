"""Reading attention out of a model without touching it.

Every function here runs the model inside a per-thread capture (see
``convattn.nn.interface``):
no hooks are registered and no attribute of the model changes, so a model shared by
several threads or Streamlit sessions can be inspected by all of them at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import torch
from torch import Tensor, nn

from convattn.nn.interface import (
    AttentionLayer,
    AttentionRecord,
    GatedAttention,
    NotSupported,
    is_attention,
    require,
    start_capture,
    stop_capture,
)
from convattn.readout.foreign import foreign_attention


def attention_modules(model: nn.Module) -> dict[str, AttentionLayer]:
    """The model's attention layers (``convattn.nn.interface.AttentionLayer``) keyed by
    their names in ``named_modules()``."""
    return {n: m for n, m in model.named_modules() if is_attention(m)}


@contextmanager
def capture(with_attention: bool = True) -> Iterator[dict[int, AttentionRecord]]:
    """Record what every attention module reports (``convattn.nn.interface.report``) in
    forward passes run inside the block.

    Yields a dict keyed by ``id(module)``; with ``with_attention`` the modules take their
    explicit path and the records hold the (B, h, Nq, Nk) matrices (a module may still
    report None: ``run_with_records`` then asks it for ``weights``).
    """
    state, token = start_capture(with_attention)
    try:
        yield state.records
    finally:
        stop_capture(token)


def run_with_records(
    model: nn.Module, images: Tensor, with_attention: bool = True
) -> tuple[Tensor, dict[str, AttentionRecord]]:
    """Logits and each attention module's record, keyed by module name.

    With ``with_attention`` every record holds the module's (B, h, Nq, Nk) attention: a
    module that reported none has it computed by its ``weights``. A module that reported
    nothing (one the forward pass did not run, or one that never calls ``report``) is left
    out.

    The model must be in eval mode: in training mode BatchNorm would update its running
    statistics (mutating a possibly shared model) and attention would depend on the batch.
    """
    if model.training:
        raise ValueError("attention is read from a model in eval mode; call model.eval() "
                         "first (on a copy if the model is shared).")
    named = attention_modules(model)
    with torch.no_grad():
        with capture(with_attention) as records:
            logits = model(images)
        out = {n: records[id(m)] for n, m in named.items() if id(m) in records}
        if with_attention:
            for name, rec in out.items():
                if rec.attention is None:
                    out[name] = replace(rec, attention=named[name].weights(rec.x))
    return logits, out


def attention_maps(model: nn.Module, images: Tensor, per_head: bool = False
                   ) -> dict[str, Tensor]:
    """The attention matrix each attention module used on ``images``.

    Row i of a matrix is where query position i (row-major over the module's input H x W)
    looks, over the Nk keys (row-major over the module's ``key_grid``; Nk = Nq unless the
    module's keys lie on a coarser grid). By default each module gives (B, Nq, Nk): its one
    head's matrix, or for a multi-head module the mean of its heads' matrices (still rows
    summing to 1). ``per_head=True`` gives (B, h, Nq, Nk) for every module, one-head
    modules included.

    A model with no ``AttentionLayer`` is read by ``convattn.readout.foreign``: every module
    that computes a softmax attention over spatial positions (SAGAN and non-local blocks,
    ``nn.MultiheadAttention``, ``F.scaled_dot_product_attention``), exactly as it computed it.
    """
    if not attention_modules(model):
        _, maps = foreign_attention(model, images)
        return maps if per_head else {name: a.mean(dim=1) for name, a in maps.items()}
    _, records = run_with_records(model, images, with_attention=True)
    if per_head:
        return {name: rec.attention for name, rec in records.items()}
    return {name: rec.attention.mean(dim=1) for name, rec in records.items()}


def module_inputs(model: nn.Module, images: Tensor) -> dict[str, Tensor]:
    """Each attention module's input feature map (B, C, H, W), via the cheap fused path."""
    _, records = run_with_records(model, images, with_attention=False)
    return {name: rec.x for name, rec in records.items()}


def query_row(model: nn.Module, images: Tensor, module_name: str, query: int,
              head: int | None = None) -> Tensor:
    """One query's attention row (B, Nk) for the named module, without forming all rows:
    head ``head``'s, or by default the mean of the heads' rows (a one-head module's row)."""
    module = attention_modules(model)[module_name]
    rows = module.row(module_inputs(model, images)[module_name], query)  # (B, h, N)
    return rows.mean(dim=1) if head is None else rows[:, head]


def gamma_values(model: nn.Module) -> dict[str, float]:
    """Each gated attention module's learned gamma (modules without a gate are left out)."""
    return {n: m.gate() for n, m in attention_modules(model).items()
            if isinstance(m, GatedAttention)}


def residual_ratios(model: nn.Module, images: Tensor) -> dict[str, Tensor]:
    """Per image, ||gamma * Z|| / ||X|| for each module: how much attention changes the
    features it is added to. Shape (B,) per module."""
    named = attention_modules(model)
    for name, module in named.items():
        require(module, GatedAttention, name, "the residual ratio ||gamma Z|| / ||X||")
    _, records = run_with_records(model, images, with_attention=False)
    out = {}
    for name, rec in records.items():
        if rec.z is None:
            raise NotSupported(f"Module {name} ({type(named[name]).__name__}) does not report "
                               "its attended values Z, which the residual ratio needs.")
        x_seq = rec.x.flatten(2).transpose(1, 2).float()  # (B, N, C)
        gz = named[name].gate() * rec.z.float()
        out[name] = gz.flatten(1).norm(dim=1) / x_seq.flatten(1).norm(dim=1).clamp_min(1e-12)
    return out
